from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import scdeepimpute.tl as tl
from scdeepimpute.datasets import simulate
from scdeepimpute.tl import _compare

#: Small, fast DeepImpute hyperparameters (same method, smaller).
FAST = {"hidden_units": 16, "max_epochs": 3, "subset_size": 16, "batch_size": 32}


@pytest.fixture(scope="module")
def masked():
    a = simulate(n_obs=150, n_vars=120, group_prob=[0.5, 0.5], de_fac_loc=0.6, random_state=0)
    tl.mask(a, random_state=0)
    return a


def _inp(a: ad.AnnData, layer="masked") -> ad.AnnData:
    b = ad.AnnData(a.layers[layer].copy())
    b.obs_names, b.var_names = a.obs_names, a.var_names
    return b


@pytest.mark.parametrize("fmt", ["dense", "csr"])
def test_impute_none_and_nzmean(fmt):
    X = np.array([[0, 2, 0], [4, 0, 0], [2, 0, 0]], dtype=np.float32)
    a = ad.AnnData(sparse.csr_matrix(X) if fmt == "csr" else X)
    np.testing.assert_array_equal(tl.impute_none(a), X)
    np.testing.assert_array_equal(tl.impute_nzmean(a), [[3, 2, 0], [4, 2, 0], [2, 2, 0]])
    # input untouched
    np.testing.assert_array_equal(a.X.toarray() if fmt == "csr" else a.X, X)


def test_impute_knn_averages_within_tight_groups():
    """Three tight groups of cells: each smoothed cell is close to its group's mean counts."""
    rng = np.random.default_rng(0)
    centers = rng.gamma(1.0, 20.0, size=(3, 60))
    labels = np.repeat(np.arange(3), 40)
    X = (centers[labels] * rng.uniform(0.95, 1.05, size=(120, 60))).astype(np.float32)
    out = tl.impute_knn(ad.AnnData(X), n_neighbors=10)
    assert out.shape == X.shape
    assert out.dtype == np.float32
    for g in range(3):
        rel = np.abs(out[labels == g] - X[labels == g].mean(0)) / X[labels == g].mean(0)
        assert np.median(rel) < 0.03
    # rows are averages of 10 cells (self + 9 neighbours): totals stay in range
    assert np.all(out.sum(1) <= X.sum(1).max() + 1e-3)
    assert np.all(out.sum(1) >= X.sum(1).min() - 1e-3)


def test_compare_masked_metrics(masked):
    calls = []

    def truth(a):  # a custom method: the unmasked counts (perfect recovery)
        calls.append(a.shape)
        return masked.X.toarray()

    df = tl.compare(masked, methods={"none": "none", "nzmean": "nzmean", "oracle": truth}, mask_key="masked")
    assert list(df.columns) == ["method", "metric", "value"]
    wide = df.pivot(index="method", columns="metric", values="value")
    assert set(wide.columns) == {"mse", "pearson", "time_s"}
    assert (wide["time_s"] >= 0).all()
    assert wide.loc["oracle", "mse"] == 0
    assert wide.loc["oracle", "pearson"] == pytest.approx(1.0)
    assert wide.loc["none", "mse"] == pytest.approx(tl.masked_scores(masked, layer="masked")["mse"])
    m = masked.copy()
    m.layers["nz"] = tl.impute_nzmean(_inp(masked))
    assert wide.loc["nzmean", "mse"] == pytest.approx(tl.masked_scores(m, layer="nz")["mse"])
    assert calls == [masked.shape]


def test_compare_dict_outputs_and_kwargs(masked):
    def two(a, *, scale=1.0):
        X = tl.impute_none(a)
        return {"a": X * scale, "b": X + 1}

    df = tl.compare(masked, methods={"two": two}, mask_key="masked", method_kwargs={"two": {"scale": 2.0}})
    wide = df.pivot(index="method", columns="metric", values="value")
    assert wide.index.tolist() == ["two_a", "two_b"]
    assert wide.loc["two_a", "time_s"] == wide.loc["two_b", "time_s"]  # one run, two outputs
    # output "b" is 1 at every masked entry (masked counts + 1): MSE = mean (log1p(truth) - log 2)^2
    assert wide.loc["two_b", "mse"] == pytest.approx(
        np.mean((np.log1p(masked.uns["masked"]["values"].astype(float)) - np.log(2.0)) ** 2)
    )


def test_compare_errors_and_skips(masked, monkeypatch):
    with pytest.raises(ValueError, match="unknown method"):
        tl.compare(masked, methods=["nope"], mask_key="masked")
    with pytest.raises(KeyError, match="no mask"):
        tl.compare(masked, methods=["none"], mask_key="absent")
    with pytest.raises(ValueError, match="expected"):
        tl.compare(masked, methods={"bad": lambda a: np.zeros((2, 2))}, mask_key="masked")
    df = tl.compare(
        masked, methods={"bad": lambda a: np.zeros((2, 2)), "none": "none"}, mask_key="masked", on_error="warn"
    )
    assert set(df["method"]) == {"none"}
    monkeypatch.setattr(_compare, "_magic_available", lambda: False)
    df = tl.compare(masked, methods=["magic", "none"], mask_key="masked")
    assert set(df["method"]) == {"none"}


def test_impute_magic_needs_package(masked):
    pytest.importorskip("magic")
    out = tl.impute_magic(_inp(masked))
    assert out.shape == masked.shape
    assert np.all(out >= 0)


@pytest.mark.parametrize("output", ["imputed", "detected", "both"])
def test_impute_deepimpute(masked, output):
    inp = _inp(masked)
    before = inp.X.copy()
    out = tl.impute_deepimpute(inp, output=output, random_state=0, **FAST)
    arrays = out.values() if output == "both" else [out]
    for Y in arrays:
        assert Y.shape == masked.shape
        assert Y.dtype == np.float32
        assert np.isfinite(Y).all()
    assert (inp.X != before).nnz == 0
    if output == "both":
        assert set(out) == {"imputed", "detected"}
    with pytest.raises(ValueError, match="output"):
        tl.impute_deepimpute(inp, output="nope")


def test_compare_runs_deepimpute(masked):
    df = tl.compare(
        masked,
        methods=["deepimpute"],
        mask_key="masked",
        method_kwargs={"deepimpute": {"output": "both", **FAST}},
    )
    assert set(df["method"]) == {"deepimpute_imputed", "deepimpute_detected"}
    assert isinstance(df, pd.DataFrame)
    assert df["value"].notna().all()
