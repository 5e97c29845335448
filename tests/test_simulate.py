from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse, stats

from scdeepimpute.datasets import simulate, simulate_chunks
from scdeepimpute.datasets._splat import SPLAT_DEFAULTS


@pytest.fixture(scope="module")
def groups_sim():
    return simulate(n_obs=600, n_vars=3000, group_prob=[0.2, 0.3, 0.5], dropout_type="experiment", random_state=1)


@pytest.fixture(scope="module")
def paper_sim():
    return simulate(preset="paper", random_state=0)


def test_structure(groups_sim):
    a = groups_sim
    assert a.shape == (600, 3000)
    assert sparse.isspmatrix_csr(a.X)
    assert a.X.dtype == np.float32
    assert sparse.isspmatrix_csr(a.layers["true_counts"])
    assert a.layers["true_counts"].dtype == np.float32
    assert a.obs["group"].dtype == "category"
    assert a.obs["group"].cat.categories.tolist() == ["Group1", "Group2", "Group3"]
    for g in ["Group1", "Group2", "Group3"]:
        assert a.var[f"is_de_{g}"].dtype == bool
        np.testing.assert_array_equal(a.var[f"is_de_{g}"], a.var[f"de_fac_{g}"] != 1)
    p = a.uns["simulate"]["params"]
    assert p["dropout_type"] == "experiment"
    assert p["preset"] == "none"
    assert p["random_state"] == 1
    np.testing.assert_allclose(p["group_prob"], [0.2, 0.3, 0.5])


def test_counts_are_integers_and_dropout_only_removes(groups_sim):
    X = groups_sim.X.toarray()
    T = groups_sim.layers["true_counts"].toarray()
    np.testing.assert_array_equal(X, np.round(X))
    assert np.all(X <= T)
    nz = X > 0
    np.testing.assert_array_equal(X[nz], T[nz])  # dropout zeroes whole entries, nothing else changes
    assert (X == 0).mean() > (T == 0).mean()


def test_no_dropout_means_observed_equals_truth():
    a = simulate(n_obs=50, n_vars=200, random_state=0)
    assert a.uns["simulate"]["params"]["dropout_type"] == "none"
    assert (a.X != a.layers["true_counts"]).nnz == 0
    assert "is_de_Group1" not in a.var  # one group: Splatter's "single" mode, no DE


def test_defaults_are_splatters():
    a = simulate(n_vars=50, random_state=0)
    assert a.shape == (100, 50)  # splatter: batchCells = 100
    p = a.uns["simulate"]["params"]
    for k in ("mean_shape", "mean_rate", "lib_loc", "lib_scale", "out_prob", "de_prob", "de_down_prob", "bcv_df"):
        assert p[k] == SPLAT_DEFAULTS[k]
    assert (p["mean_shape"], p["mean_rate"], p["de_down_prob"], p["dropout_mid"], p["dropout_shape"]) == (
        0.6,
        0.3,
        0.5,
        0.0,
        -1.0,
    )


@pytest.mark.parametrize("seed", [0, 7])
def test_seeded(seed):
    a = simulate(n_obs=40, n_vars=100, group_prob=[0.5, 0.5], dropout_type="experiment", random_state=seed)
    b = simulate(n_obs=40, n_vars=100, group_prob=[0.5, 0.5], dropout_type="experiment", random_state=seed)
    c = simulate(n_obs=40, n_vars=100, group_prob=[0.5, 0.5], dropout_type="experiment", random_state=seed + 1)
    assert (a.X != b.X).nnz == 0
    np.testing.assert_array_equal(a.var["de_fac_Group1"], b.var["de_fac_Group1"])
    assert (a.X != c.X).nnz > 0


def test_paper_preset(paper_sim):
    a = paper_sim
    assert a.shape == (2000, 4000)
    p = a.uns["simulate"]["params"]
    assert (p["dropout_type"], p["dropout_mid"], p["dropout_shape"], p["preset"]) == ("experiment", 1.0, -0.5, "paper")
    counts = a.obs["group"].value_counts().reindex([f"Group{i}" for i in range(1, 6)]).to_numpy()
    expected = np.array([0.1, 0.1, 0.2, 0.2, 0.4]) * 2000
    assert stats.chisquare(counts, expected).pvalue > 1e-3
    # explicit arguments override the preset
    b = simulate(preset="paper", n_obs=30, n_vars=60, random_state=0)
    assert b.shape == (30, 60)
    assert b.uns["simulate"]["params"]["dropout_shape"] == -0.5


def test_distributions_match_splat(paper_sim):
    """Gene means, outliers, library sizes and DE factors against scipy distributions."""
    v = paper_sim.var
    base = v["base_gene_mean"].to_numpy()
    assert stats.kstest(base, stats.gamma(a=0.6, scale=1 / 0.3).cdf).pvalue > 1e-3
    libs = paper_sim.obs["exp_lib_size"].to_numpy()
    assert stats.kstest(np.log(libs), stats.norm(11, 0.2).cdf).pvalue > 1e-3
    out = v["outlier_factor"].to_numpy() != 1
    assert stats.binomtest(int(out.sum()), out.size, 0.05).pvalue > 1e-3
    # outlier genes: median(base) * LogNormal(4, 0.5)
    ratio = v["gene_mean"].to_numpy()[out] / np.median(base)
    assert stats.kstest(np.log(ratio), stats.norm(4, 0.5).cdf).pvalue > 1e-3
    np.testing.assert_array_equal(v["gene_mean"].to_numpy()[~out], base[~out])
    for g in range(1, 6):
        fac = v[f"de_fac_Group{g}"].to_numpy()
        de = fac != 1
        assert stats.binomtest(int(de.sum()), de.size, 0.1).pvalue > 1e-3
        assert stats.binomtest(int((fac[de] < 1).sum()), int(de.sum()), 0.5).pvalue > 1e-3
        # |log factor| ~ |Normal(0.1, 0.4)| folded: direction flips keep the magnitude distribution
        mag = np.abs(np.log(fac[de]))
        assert stats.kstest(mag, stats.foldnorm(0.1 / 0.4, scale=0.4).cdf).pvalue > 1e-3


def test_bcv_mean_variance_trend():
    """With equal library sizes, Var(Y) = mu + mu^2 BCV^2 and BCV = bcv_common + 1/sqrt(mu) (bcv_df=inf)."""
    a = simulate(n_obs=3000, n_vars=300, lib_scale=1e-9, bcv_df=np.inf, out_prob=0.0, random_state=3)
    T = a.layers["true_counts"].toarray().astype(np.float64)
    mu = T.mean(0)
    ok = mu > 1
    expected = mu + mu**2 * (0.1 + 1 / np.sqrt(mu)) ** 2
    ratio = T.var(0, ddof=1)[ok] / expected[ok]
    assert abs(np.median(ratio) - 1) < 0.05
    # library sizes: expected ~ exp(11) counts per cell
    assert abs(np.log(T.sum(1).mean()) - 11) < 0.05


def test_dropout_rate_increases_with_mid():
    lo = simulate(n_obs=200, n_vars=500, dropout_type="experiment", dropout_mid=0, random_state=0)
    hi = simulate(n_obs=200, n_vars=500, dropout_type="experiment", dropout_mid=3, random_state=0)
    assert (hi.X.toarray() == 0).mean() > (lo.X.toarray() == 0).mean()


def test_group_dropout():
    a = simulate(
        n_obs=400,
        n_vars=300,
        group_prob=[0.5, 0.5],
        dropout_type="group",
        dropout_mid=[-5.0, 5.0],
        dropout_shape=[-1.0, -1.0],
        random_state=0,
    )
    X, T = a.X.toarray(), a.layers["true_counts"].toarray()
    g1 = (a.obs["group"] == "Group1").to_numpy()
    lost = lambda m: ((T[m] > 0) & (X[m] == 0)).sum() / (T[m] > 0).sum()  # noqa: E731
    assert lost(g1) < 0.05 < 0.5 < lost(~g1)


def test_h5ad_roundtrip(tmp_path, groups_sim):
    path = tmp_path / "sim.h5ad"
    groups_sim.write_h5ad(path)
    b = ad.read_h5ad(path)
    assert (b.X != groups_sim.X).nnz == 0
    assert b.uns["simulate"]["params"]["dropout_type"] == "experiment"
    assert b.obs["group"].dtype == "category"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"preset": "nope"}, "unknown preset"),
        ({"dropout_type": "cell"}, "dropout_type"),
        ({"group_prob": [-1, 2]}, "group_prob"),
        ({"group_prob": [0.5, 0.5], "de_prob": [0.1, 0.1, 0.1]}, "de_prob"),
        ({"group_prob": [0.5, 0.5], "dropout_type": "group", "dropout_mid": [1, 2, 3]}, "dropout_mid"),
        ({"dropout_type": "experiment", "dropout_mid": [1, 2]}, "single"),
        ({"n_obs": 0}, "at least one"),
    ],
)
def test_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate(n_vars=20, **kwargs)


# --------------------------------------------------------------------------- chunked mode
CHUNKED = {"n_obs": 230, "n_vars": 400, "group_prob": [0.3, 0.7], "dropout_type": "experiment", "random_state": 4}


@pytest.mark.parametrize("chunk_size", [1, 64, 230, 1000])
def test_chunks_stack_to_the_chunked_simulation(chunk_size):
    whole = simulate(**CHUNKED, chunk_size=chunk_size)
    parts = list(simulate_chunks(chunk_size, **CHUNKED))
    assert [p.n_obs for p in parts] == [min(chunk_size, 230 - s) for s in range(0, 230, chunk_size)]
    stacked = ad.concat(parts, merge="same")
    assert (stacked.X != whole.X).nnz == 0
    assert (stacked.layers["true_counts"] != whole.layers["true_counts"]).nnz == 0
    assert stacked.obs_names.tolist() == whole.obs_names.tolist() == [f"Cell{i + 1}" for i in range(230)]
    pd.testing.assert_frame_equal(stacked.obs, whole.obs)


@pytest.mark.parametrize("chunk_size", [50, 230])
def test_chunked_keeps_genes_groups_and_libraries(chunk_size):
    plain, chunked = simulate(**CHUNKED), simulate(**CHUNKED, chunk_size=chunk_size)
    pd.testing.assert_frame_equal(plain.var, chunked.var)
    pd.testing.assert_frame_equal(plain.obs, chunked.obs)
    assert (plain.X != chunked.X).nnz > 0  # other draws of the counts
    X, T = chunked.X.toarray(), chunked.layers["true_counts"].toarray()
    assert np.all(X <= T)
    assert (X == 0).mean() > (T == 0).mean()


def test_chunked_follows_the_same_model():
    kw = {"n_obs": 3000, "n_vars": 300, "group_prob": [0.5, 0.5], "random_state": 0}
    plain, chunked = simulate(**kw), simulate(**kw, chunk_size=700)
    # per-gene totals of 3000 cells: the two draws agree within sampling noise (same genes, same cells)
    a, b = np.asarray(plain.X.sum(axis=0)).ravel(), np.asarray(chunked.X.sum(axis=0)).ravel()
    expressed = (a + b) > 300
    assert expressed.sum() > 100
    ratio = np.log(b[expressed] / a[expressed])
    assert abs(np.median(ratio)) < 0.05
    assert np.mean(np.abs(ratio) < 0.3) > 0.95
    assert stats.pearsonr(np.log1p(a), np.log1p(b))[0] > 0.99


def test_chunked_is_seeded():
    a, b = simulate(**CHUNKED, chunk_size=64), simulate(**CHUNKED, chunk_size=64)
    c = simulate(**{**CHUNKED, "random_state": 5}, chunk_size=64)
    assert (a.X != b.X).nnz == 0
    assert (a.X != c.X).nnz > 0


@pytest.mark.parametrize("chunk_size", [0, -3])
def test_chunk_size_must_be_positive(chunk_size):
    with pytest.raises(ValueError, match="chunk_size"):
        simulate(n_obs=10, n_vars=10, chunk_size=chunk_size)


def test_simulate_chunks_rejects_unknown_parameters():
    with pytest.raises(TypeError, match="n_cells"):
        next(simulate_chunks(10, n_cells=10))
