from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse, stats
from sklearn.metrics import mean_squared_error

import scdeepimpute.tl as tl
from scdeepimpute.datasets import simulate


def _counts(n_obs=300, n_vars=80, seed=0):
    rng = np.random.default_rng(seed)
    mu = rng.gamma(0.5, 4.0, size=n_vars)
    return rng.poisson(rng.gamma(2.0, mu / 2.0, size=(n_obs, n_vars))).astype(np.float32)


@pytest.fixture(scope="module")
def sim():
    return simulate(n_obs=300, n_vars=400, group_prob=[0.5, 0.5], dropout_type="experiment", random_state=0)


def test_fit_dropout_curve_recovers_known_logistic():
    """Genes built so that zero fraction = logistic(log mean of positives; x0=1, k=-1.5) exactly."""
    n_cells, x0, k = 4000, 1.0, -1.5
    xs = np.linspace(-2.0, 4.0, 60)
    y = 1 / (1 + np.exp(-k * (xs - x0)))
    X = np.zeros((n_cells, xs.size))
    for j, (x, zero_frac) in enumerate(zip(xs, y, strict=True)):
        X[: int(round((1 - zero_frac) * n_cells)), j] = np.exp(x)
    fx0, fk = tl.fit_dropout_curve(sparse.csr_matrix(X))
    assert fx0 == pytest.approx(x0, abs=0.02)
    assert fk == pytest.approx(k, abs=0.02)


def test_fit_dropout_curve_needs_genes():
    with pytest.raises(ValueError, match="at least 3 genes"):
        tl.fit_dropout_curve(np.zeros((10, 5)))


SCHEMES = ["curve", "uniform"]


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("fmt", ["dense", "csr", "csc"])
@pytest.mark.parametrize("mode", ["gene", "cell"])
def test_mask_counts_properties(fmt, mode, scheme):
    X = _counts(n_obs=120, n_vars=80, seed=1)
    Xin = {"dense": X, "csr": sparse.csr_matrix(X), "csc": sparse.csc_matrix(X)}[fmt]
    res = tl.mask_counts(
        Xin, n_masked=10, mode=mode, scheme=scheme, min_nonzero=None if mode == "gene" else 30, random_state=0
    )
    assert np.isfinite(res.k) == (scheme == "curve")
    Xm = res.X.toarray() if sparse.issparse(res.X) else res.X
    assert sparse.issparse(res.X) == (fmt != "dense")
    # masked entries are exactly non-zeros of the truth, now zero, with the true values kept
    np.testing.assert_array_equal(X[res.obs_idx, res.var_idx], res.values)
    assert np.all(res.values > 0)
    assert np.all(Xm[res.obs_idx, res.var_idx] == 0)
    # nothing else changed
    diff = np.argwhere(X != Xm)
    assert {tuple(d) for d in diff} == set(zip(res.obs_idx.tolist(), res.var_idx.tolist(), strict=True))
    assert len(set(zip(res.obs_idx.tolist(), res.var_idx.tolist(), strict=True))) == res.values.size
    # n per gene (per cell) where possible, none elsewhere
    axis_idx, nnz = (res.var_idx, (X > 0).sum(0)) if mode == "gene" else (res.obs_idx, (X > 0).sum(1))
    per = np.bincount(axis_idx, minlength=nnz.size)
    threshold = 11 if mode == "gene" else 30
    np.testing.assert_array_equal(per, np.where(nnz >= threshold, 10, 0))
    assert res.n_skipped == int((nnz < threshold).sum())


@pytest.mark.parametrize("scheme", SCHEMES)
def test_mask_counts_seeded(scheme):
    X = _counts()
    a, b = tl.mask_counts(X, scheme=scheme, random_state=3), tl.mask_counts(X, scheme=scheme, random_state=3)
    c = tl.mask_counts(X, scheme=scheme, random_state=4)
    np.testing.assert_array_equal(a.obs_idx, b.obs_idx)
    assert not np.array_equal(a.obs_idx, c.obs_idx)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_cell_mode_default_skips_cells_below_50(scheme):
    X = _counts(n_obs=100, n_vars=200, seed=2)
    X[:30, 40:] = 0  # shallow cells: fewer than 50 non-zeros
    nnz = (X > 0).sum(1)
    assert (nnz < 50).any()
    assert (nnz >= 50).any()
    res = tl.mask_counts(X, mode="cell", scheme=scheme, random_state=0)
    np.testing.assert_array_equal(np.bincount(res.obs_idx, minlength=100), np.where(nnz >= 50, 10, 0))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_sampling_follows_logistic_weights(scheme):
    """One draw per gene among 100 entries of value 1 and 100 of value 4: P(value 1) from the fitted curve, 1/2
    under the uniform scheme."""
    rng = np.random.default_rng(0)
    n_cells = 400
    # many genes with varied means so that the curve is identifiable and not set by the test columns
    design = [rng.poisson(lam, n_cells) for lam in np.geomspace(0.02, 30, 600)]
    test_col = np.zeros(n_cells)
    test_col[:100], test_col[100:200] = 1, 4
    X = np.column_stack(design + [test_col] * 300).astype(np.float32)
    res = tl.mask_counts(X, n_masked=1, scheme=scheme, random_state=0)
    test = res.var_idx >= len(design)
    picked_one = int((res.values[test] == 1).sum())
    if scheme == "curve":
        p1 = 1 / (1 + np.exp(-res.k * (np.log(1.0) - res.x0)))
        p4 = 1 / (1 + np.exp(-res.k * (np.log(4.0) - res.x0)))
        expected = p1 / (p1 + p4)
        assert res.k < 0
        assert expected > 0.7  # far enough from 1/2 that the two schemes' tests exclude each other
    else:
        expected = 0.5
    assert stats.binomtest(picked_one, int(test.sum()), expected).pvalue > 1e-3


def test_uniform_picks_every_nonzero_equally():
    """Each of a gene's m non-zeros is masked with probability n / m whatever its value (the curve would favour
    low values); per-entry hit counts over many genes are Binomial(G, n / m), checked at 4 binomial sd."""
    n_cells, m, n, n_genes = 200, 20, 5, 4000
    col = np.zeros(n_cells, dtype=np.float32)
    col[:m] = np.geomspace(1, 500, m).round()  # values from 1 to 500: a dropout curve would weight them unequally
    X = np.tile(col[:, None], (1, n_genes))
    res = tl.mask_counts(X, n_masked=n, scheme="uniform", random_state=0)
    assert res.values.size == n * n_genes
    hits = np.bincount(res.obs_idx, minlength=n_cells)
    p = n / m
    sd = np.sqrt(n_genes * p * (1 - p))
    assert np.all(hits[m:] == 0)
    assert np.abs(hits[:m] - n_genes * p).max() < 4 * sd


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("layer", [None, "counts"])
def test_mask_writes_layer_and_uns(sim, layer, scheme):
    a = sim.copy()
    if layer is not None:
        a.layers["counts"] = a.X.copy()
        a.X = None
    before = (a.X if layer is None else a.layers["counts"]).copy()
    out = tl.mask(a, layer=layer, scheme=scheme, random_state=0, key_added="m")
    assert out is None
    m = a.uns["m"]
    assert m["params"]["scheme"] == scheme
    assert set(m) >= {"obs_idx", "var_idx", "values", "curve", "n_skipped", "params"}
    assert m["params"]["layer"] == ("X" if layer is None else layer)
    assert sparse.issparse(a.layers["m"])
    assert a.layers["m"].dtype == np.float32
    now = a.X if layer is None else a.layers["counts"]
    assert (now != before).nnz == 0  # input untouched
    assert a.layers["m"].nnz == before.nnz - m["values"].size


def test_mask_copy(sim):
    out = tl.mask(sim, copy=True, random_state=0)
    assert "masked" in out.layers
    assert "masked" not in sim.layers
    assert "masked" not in sim.uns


def test_masked_metrics_against_sklearn_and_scipy():
    rng = np.random.default_rng(0)
    t = rng.poisson(5, 500).astype(float) + 1
    y = np.clip(t + rng.normal(0, 2, 500), 0, None)
    obs, var = rng.integers(0, 30, 500), rng.integers(0, 20, 500)
    m = tl.masked_metrics(t, y, obs, var, n_obs=35, n_vars=20)
    assert m["mse"] == pytest.approx(mean_squared_error(np.log1p(t), np.log1p(y)))
    assert m["pearson"] == pytest.approx(np.corrcoef(np.log1p(t), np.log1p(y))[0, 1])
    df = pd.DataFrame({"sq": (np.log1p(t) - np.log1p(y)) ** 2, "obs": obs, "var": var})
    np.testing.assert_allclose(m["mse_per_gene"], df.groupby("var")["sq"].mean().reindex(range(20)).to_numpy())
    per_cell = df.groupby("obs")["sq"].mean().reindex(range(35)).to_numpy()
    np.testing.assert_allclose(m["mse_per_cell"], per_cell)  # NaN where a cell has no masked entry
    assert np.isnan(m["mse_per_cell"][30:]).all()


def test_masked_metrics_hand_example():
    m = tl.masked_metrics(np.array([1.0, 3.0, 7.0]), np.array([1.0, 3.0, -2.0]))  # negatives clip to 0
    assert m["mse"] == pytest.approx(np.log(8) ** 2 / 3)
    assert m["n_masked"] == 3
    assert np.isnan(tl.masked_metrics(np.array([1.0, 2.0]), np.zeros(2))["pearson"])  # constant prediction
    with pytest.raises(ValueError, match="same length"):
        tl.masked_metrics(np.ones(3), np.ones(2))


def test_masked_scores_perfect_and_zero(sim):
    a = sim.copy()
    tl.mask(a, random_state=0)
    a.layers["perfect"] = a.X.copy()  # the unmasked truth
    s = tl.masked_scores(a, layer="perfect")
    assert s["mse"] == 0
    assert s["pearson"] == pytest.approx(1.0)
    z = tl.masked_scores(a, layer="masked")
    assert z["mse"] == pytest.approx(np.mean(np.log1p(a.uns["masked"]["values"].astype(float)) ** 2))
    assert isinstance(z["mse_per_gene"], pd.Series)
    assert z["mse_per_gene"].index.isin(a.var_names).all()
    assert len(z["mse_per_gene"]) == np.unique(a.uns["masked"]["var_idx"]).size
    a.layers["dense"] = a.X.toarray()
    assert tl.masked_scores(a, layer="dense")["mse"] == 0
    with pytest.raises(KeyError, match="no mask"):
        tl.masked_scores(a, mask_key="nope")


def test_mask_survives_h5ad(tmp_path, sim):
    a = sim.copy()
    tl.mask(a, random_state=0)
    a.layers["perfect"] = a.X.copy()
    a.write_h5ad(tmp_path / "m.h5ad")
    b = ad.read_h5ad(tmp_path / "m.h5ad")
    for k in ("obs_idx", "var_idx", "values"):
        np.testing.assert_array_equal(b.uns["masked"][k], a.uns["masked"][k])
    assert tl.masked_scores(b, layer="masked")["mse"] == pytest.approx(tl.masked_scores(a, layer="masked")["mse"])


def test_dropout_mask(sim):
    a = sim.copy()
    tl.dropout_mask(a)
    X, T = a.X.toarray(), a.layers["true_counts"].toarray()
    d = a.uns["dropout"]
    expected = np.argwhere((T > 0) & (X == 0))
    np.testing.assert_array_equal(np.column_stack([d["obs_idx"], d["var_idx"]]), expected)
    np.testing.assert_array_equal(d["values"], T[(T > 0) & (X == 0)])
    a.layers["truth"] = a.layers["true_counts"]
    assert tl.masked_scores(a, layer="truth", mask_key="dropout")["mse"] == 0


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"mode": "row"}, "mode"), ({"n_masked": 0}, "positive"), ({"scheme": "flat"}, "scheme")]
)
def test_mask_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tl.mask_counts(_counts(), **kwargs)
