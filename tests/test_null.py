"""tl.null_check / pl.null_check: structure-free nulls, the correlation threshold, flagging invented structure."""

from __future__ import annotations

import importlib

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import sparse, stats

import scdeepimpute as sdi

from .conftest import make_counts

TINY = {"hidden_units": 16, "max_epochs": 2, "subset_size": 16, "batch_size": 64}


def _adata(n_cells: int = 300, n_genes: int = 60, seed: int = 0) -> ad.AnnData:
    return ad.AnnData(sparse.csr_matrix(make_counts(n_cells, n_genes, seed=seed, n_types=3)))


def shared_factor(adata: ad.AnnData) -> np.ndarray:
    """A 'method' that invents structure: every cell is the global mean times one shared random factor."""
    X = np.asarray(adata.X.toarray() if sparse.issparse(adata.X) else adata.X, dtype=np.float64)
    rng = np.random.default_rng(1)
    s = rng.normal(size=(X.shape[0], 1))
    w = rng.normal(size=(1, X.shape[1]))
    return (X.mean(axis=0, keepdims=True) * np.exp(0.5 * s * w)).astype(np.float32)


def _table(df: pd.DataFrame) -> pd.DataFrame:
    return df.pivot_table(index=["kind", "method"], columns="metric", values="value")


@pytest.mark.parametrize("kind", ["permuted", "simulated"])
def test_raw_counts_of_the_null_are_at_the_nominal_level(kind):
    alpha, n_genes = 0.05, 40
    df = sdi.tl.null_check(_adata(), methods=[], kind=kind, n_genes=n_genes, alpha=alpha, n_splits=3)
    raw = _table(df).loc[(kind, "none")]
    n_pairs = n_genes * (n_genes - 1) / 2
    sd = np.sqrt(alpha * (1 - alpha) / n_pairs)  # binomial sd of the fraction over independent pairs
    assert abs(raw["spurious_corr"] - alpha) < 4 * sd
    # BH at 5% under the global null: a call in a split has probability <= 0.05
    assert raw["de_calls_random"] <= 1
    assert df.attrs["params"]["nulls"][kind]["n_corr_genes"] == n_genes


def test_the_unpermuted_counts_are_not_null():
    """The check above could fail: the same counts before permutation have cell types, so genes correlate."""
    a = _adata()
    Z = np.log1p(a.X.toarray() / a.X.toarray().sum(axis=1, keepdims=True) * 1e4)
    keep = Z.std(axis=0) > 0
    R = np.corrcoef(Z[:, keep], rowvar=False)[np.triu_indices(int(keep.sum()), k=1)]
    assert np.mean(np.abs(R) > sdi.tl.corr_threshold(a.n_obs, 0.05)) > 0.2  # 4x the level of 0.05


def test_invented_structure_is_flagged():
    df = sdi.tl.null_check(
        _adata(), methods={"shared": shared_factor}, kind="permuted", n_genes=40, n_splits=2, alpha=0.01
    )
    t = _table(df).loc["permuted"]
    assert t.loc["shared", "spurious_corr"] > 0.5 > 10 * t.loc["none", "spurious_corr"]
    assert t.loc["shared", "de_calls_kmeans"] > 2 * t.loc["none", "de_calls_kmeans"] + 10


def test_deepimpute_reports_both_layers_and_magic_is_skipped_when_missing(monkeypatch):
    # null_check resolves methods through _compare, which asks _magic_available
    monkeypatch.setattr(importlib.import_module("scdeepimpute.tl._compare"), "_magic_available", lambda: False)
    df = sdi.tl.null_check(
        _adata(200, 40),
        methods=("deepimpute", "magic"),
        kind="permuted",
        n_genes=20,
        n_splits=1,
        method_kwargs={"deepimpute": TINY},
    )
    assert set(df["method"]) == {"none", "deepimpute_imputed", "deepimpute_detected"}
    assert df["value"].notna().all()
    assert set(df["metric"]) == {"spurious_corr", "de_calls_random", "de_calls_kmeans", "kmeans_depth_corr"}


def test_deterministic_with_random_state():
    a = _adata(200, 40)
    kw = {"methods": ["nzmean"], "n_genes": 30, "n_splits": 1, "simulate_kwargs": {"n_vars": 60}}
    d1 = sdi.tl.null_check(a, random_state=3, **kw)
    d2 = sdi.tl.null_check(a, random_state=3, **kw)
    pd.testing.assert_frame_equal(d1, d2)
    # one null does not depend on which other kinds were asked for
    d3 = sdi.tl.null_check(a, random_state=3, kind="permuted", **kw)
    pd.testing.assert_frame_equal(d3.reset_index(drop=True), d1[d1["kind"] == "permuted"].reset_index(drop=True))
    d4 = sdi.tl.null_check(a, random_state=4, kind="permuted", **kw)
    assert not np.allclose(d3["value"], d4["value"])


@pytest.mark.parametrize(
    ("kwargs", "err"),
    [
        ({"kind": "shuffled"}, "`kind`"),
        ({"kind": []}, "`kind`"),
        ({"alpha": 0}, "`alpha`"),
        ({"fdr": 1.5}, "`alpha` and `fdr`"),
        ({"n_genes": 1}, "n_genes"),
        ({"layer": "nope"}, "layer 'nope' not found"),
        ({"min_detected": 0.999}, "need >= 2 genes"),
    ],
)
def test_bad_input(kwargs, err):
    with pytest.raises(ValueError, match=err):
        sdi.tl.null_check(_adata(50, 10), methods=[], **{"kind": "permuted", **kwargs})


def test_needs_adata_for_permuted_and_counts():
    with pytest.raises(ValueError, match="permutes the counts"):
        sdi.tl.null_check(None, kind="permuted")
    a = _adata(50, 10)
    a.X = a.X.toarray() - 1
    with pytest.raises(ValueError, match="raw counts"):
        sdi.tl.null_check(a, methods=[], kind="permuted")
    a.X = np.full((50, 10), np.nan, dtype=np.float32)
    with pytest.raises(ValueError, match="raw counts"):
        sdi.tl.null_check(a, methods=[], kind="permuted")
    with pytest.raises(ValueError, match="unknown method"):
        sdi.tl.null_check(_adata(50, 10), methods=["smooth"], kind="permuted")


def test_simulated_null_without_adata():
    df = sdi.tl.null_check(kind="simulated", methods=[], n_genes=20, simulate_kwargs={"n_obs": 120, "n_vars": 80})
    assert df.attrs["params"]["nulls"]["simulated"]["n_obs"] == 120
    assert set(df["kind"]) == {"simulated"}


@pytest.mark.parametrize("fmt", ["dense", "csr", "csc"])
def test_permute_genes_keeps_each_gene_and_breaks_the_links(fmt):
    X = make_counts(200, 15, seed=2)
    inp = X if fmt == "dense" else getattr(sparse, f"{fmt}_matrix")(X)
    Y = sdi.tl.permute_genes(inp, random_state=0)
    Yd = Y.toarray() if sparse.issparse(Y) else Y
    assert sparse.issparse(Y) == (fmt != "dense")
    np.testing.assert_array_equal(np.sort(Yd, axis=0), np.sort(X, axis=0))
    # each gene gets its own permutation: the per-cell zero pattern differs between genes
    assert not np.array_equal(Yd, X)
    again = sdi.tl.permute_genes(inp, random_state=0)
    np.testing.assert_array_equal(Yd, again.toarray() if sparse.issparse(again) else again)


@pytest.mark.parametrize(("n", "alpha"), [(50, 0.05), (300, 0.001), (2000, 1e-4)])
def test_corr_threshold_is_pearsonr_level(n, alpha):
    r = sdi.tl.corr_threshold(n, alpha)
    rng = np.random.default_rng(0)
    x = rng.normal(size=n)
    x = (x - x.mean()) / x.std()
    e = rng.normal(size=n)
    e -= e.mean() + (e @ x) / (x @ x) * x
    e /= e.std()
    y = r * x + np.sqrt(1 - r**2) * e  # sample correlation exactly r
    res = stats.pearsonr(x, y)
    assert res.statistic == pytest.approx(r, rel=1e-9)
    assert res.pvalue == pytest.approx(alpha, rel=1e-6)


def test_plot():
    df = sdi.tl.null_check(_adata(150, 30), methods={"shared": shared_factor}, n_genes=20, n_splits=1)
    fig = sdi.pl.null_check(df)
    axes = [a for a in fig.axes if a.get_visible()]
    assert len(axes) == 3
    assert len(axes[0].patches) == 4  # 2 methods x 2 null kinds
    fig = sdi.pl.null_check(df, metrics=["kmeans_depth_corr"])
    assert len([a for a in fig.axes if a.get_visible()]) == 1
    with pytest.raises(ValueError, match="lacks columns"):
        sdi.pl.null_check(df.drop(columns="kind"))
    with pytest.raises(ValueError, match="not in the table"):
        sdi.pl.null_check(df, metrics=["auc"])


@settings(max_examples=30, deadline=None)
@given(
    X=arrays(np.float32, st.tuples(st.integers(1, 12), st.integers(1, 6)), elements=st.integers(0, 5).map(float)),
    as_sparse=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_permute_genes_keeps_every_column_multiset(X, as_sparse, seed):
    Y = sdi.tl.permute_genes(sparse.csr_matrix(X) if as_sparse else X, random_state=seed)
    Yd = Y.toarray() if sparse.issparse(Y) else Y
    assert Yd.shape == X.shape
    np.testing.assert_array_equal(np.sort(Yd, axis=0), np.sort(X, axis=0))
