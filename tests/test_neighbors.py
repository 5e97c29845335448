"""The neighbourhood estimate, the calibration entries and the weight choice (scdeepimpute._neighbors)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import sparse
from scipy.stats import poisson

from scdeepimpute._neighbors import (
    CALIBRATION_PER_GENE,
    WEIGHT_GRID,
    calibration_entries,
    calibration_report,
    choose_weight,
    fit_neighbourhood,
    hide,
    log1p_if_detected,
)


def two_clusters(n_per=20, n_genes=12, seed=0):
    """Cells 0..n_per-1 express genes 0..5 at rate 20, the others genes 6..11; background rate 0.05."""
    rng = np.random.default_rng(seed)
    rate = np.full((2 * n_per, n_genes), 0.05)
    rate[:n_per, : n_genes // 2] = 20
    rate[n_per:, n_genes // 2 :] = 20
    return rng.poisson(rate).astype(np.float32)


@pytest.mark.parametrize("fmt", ["dense", "csr"])
def test_two_clusters(fmt):
    X = two_clusters()
    nb = fit_neighbourhood(X if fmt == "dense" else sparse.csr_matrix(X), n_neighbors=5, n_pcs=3)
    W = nb.weights.toarray()
    assert np.allclose(W.sum(axis=1), 1)
    assert np.all(np.diag(W) == 0)  # a cell is never its own neighbour
    assert W[:20, 20:].sum() == 0  # neighbours stay within the cluster
    assert W[20:, :20].sum() == 0
    est = nb.log1p_if_detected(slice(None))
    assert est.dtype == np.float32
    # a cluster's own genes: near E[log1p X | X > 0] at rate ~20 (log1p(20) = 3.04); the other cluster's: near log 2
    err = np.abs(est[:20, :6] - np.log1p(20))  # sampling noise of 5 neighbours and of the libraries: ~0.1
    assert err.mean() < 0.15
    assert err.max() < 0.5
    assert np.all(est[:20, 6:] < 0.9)
    assert np.all(est[20:, :6] < 0.9)


def test_dense_and_sparse_agree():
    X = two_clusters(seed=1)
    a = fit_neighbourhood(X, n_neighbors=4, random_state=0).rate(np.arange(40))
    b = fit_neighbourhood(sparse.csr_matrix(X), n_neighbors=4, random_state=0).rate(np.arange(40))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)


def test_columns_and_rows():
    X = two_clusters(seed=2)
    full = fit_neighbourhood(X, n_neighbors=5).rate(slice(None))
    cols = np.array([1, 7, 10])
    part = fit_neighbourhood(X, n_neighbors=5, columns=cols).rate(np.array([3, 25]))
    np.testing.assert_allclose(part, full[np.ix_([3, 25], cols)])


def test_own_count_does_not_enter_through_the_rate():
    """With the graph fixed, a cell's estimate reads its neighbours' rates only, scaled by its own library."""
    X = two_clusters(seed=3)
    nb = fit_neighbourhood(X, n_neighbors=5)
    Y = X.copy()
    Y[0, 0] += 50
    changed = fit_neighbourhood(Y, n_neighbors=5)
    changed.weights = nb.weights  # same graph
    # the other cells' rates are unchanged, so cell 0's rate per unit of its own library is too
    np.testing.assert_allclose(changed.rate([0])[0] / changed.library[0], nb.rate([0])[0] / nb.library[0], rtol=1e-12)


def test_deterministic():
    X = sparse.csr_matrix(two_clusters(n_per=40, n_genes=30, seed=4))
    a = fit_neighbourhood(X, n_neighbors=7, n_pcs=5, random_state=3)
    b = fit_neighbourhood(X, n_neighbors=7, n_pcs=5, random_state=3)
    assert (a.weights != b.weights).nnz == 0


def test_neighbours_capped_by_cells():
    X = two_clusters(n_per=2)
    nb = fit_neighbourhood(X, n_neighbors=30, n_pcs=30)
    assert np.all(np.diff(nb.weights.indptr) == 3)


@pytest.mark.parametrize("lam", [1e-4, 0.05, 1.0, 5.0, 13.0, 14.5, 40.0, 300.0])
def test_log1p_if_detected_is_the_poisson_expectation(lam):
    k = np.arange(1, 5000)
    pmf = poisson.pmf(k, lam)
    exact = (pmf * np.log1p(k)).sum() / pmf.sum()
    assert abs(log1p_if_detected(np.array([lam]))[0] - exact) < 2e-3


def test_log1p_if_detected_limits():
    out = log1p_if_detected(np.array([0.0, 1e-9, 1e6]))
    assert abs(out[0] - np.log(2)) < 1e-4  # rate 0: a detected count is a 1
    assert abs(out[1] - np.log(2)) < 1e-4
    assert abs(out[2] - np.log1p(1e6)) < 1e-3
    assert np.all(np.diff(log1p_if_detected(np.geomspace(1e-6, 1e4, 500))) >= -1e-6)  # increasing


@settings(max_examples=30, deadline=None)
@given(
    nnz=st.lists(st.integers(0, 60), min_size=1, max_size=8),
    seed=st.integers(0, 2**16),
    fmt=st.sampled_from(["dense", "csr"]),
)
def test_calibration_entries_rule(nnz, seed, fmt):
    """Per gene: none below 10 non-zeros, else min(10, 10%) distinct non-zeros; hide zeroes exactly those."""
    rng = np.random.default_rng(seed)
    n = 60
    X = np.zeros((n, len(nnz)), dtype=np.float32)
    for g, m in enumerate(nnz):
        X[rng.choice(n, m, replace=False), g] = rng.integers(1, 30, m)
    M = X if fmt == "dense" else sparse.csr_matrix(X)
    e = calibration_entries(M, np.random.default_rng(seed))
    for g, m in enumerate(nnz):
        want = 0 if m < 10 else min(CALIBRATION_PER_GENE, int(0.1 * m))
        assert (e.cols == g).sum() == want
    assert np.all(X[e.rows, e.cols] > 0)
    np.testing.assert_array_equal(e.values, X[e.rows, e.cols])
    assert len({(int(r), int(c)) for r, c in zip(e.rows, e.cols, strict=True)}) == len(e)
    H = hide(M, e)
    H = H.toarray() if sparse.issparse(H) else H
    expect = X.copy()
    expect[e.rows, e.cols] = 0
    np.testing.assert_array_equal(H, expect)
    again = calibration_entries(M, np.random.default_rng(seed))
    np.testing.assert_array_equal(again.rows, e.rows)


def test_calibration_entries_genes():
    X = np.ones((50, 4), dtype=np.float32)
    e = calibration_entries(X, np.random.default_rng(0), genes=np.array([1, 3]))
    assert set(e.cols.tolist()) == {1, 3}
    assert len(e) == 10


def test_choose_weight():
    rng = np.random.default_rng(0)
    truth = rng.normal(2, 1, 500)
    noise = rng.normal(2, 1, 500)
    good = truth + rng.normal(0, 0.1, 500)
    assert choose_weight(truth, good, noise) <= 0.05  # neighbourhood is noise -> network
    assert choose_weight(truth, noise, good) >= 0.95  # network is noise -> neighbourhood
    # two equally informative, independent estimates -> about half each
    other = truth + rng.normal(0, 0.1, 500)
    assert 0.35 <= choose_weight(truth, good, other) <= 0.65
    assert choose_weight(truth, good, good) == 0.0  # a tie goes to the network alone
    assert choose_weight(np.empty(0), np.empty(0), np.empty(0)) == 0.0
    assert set(WEIGHT_GRID) >= {0.0, 0.5, 1.0}


def test_calibration_report():
    X = np.zeros((30, 3), dtype=np.float32)
    X[:, 0] = 5
    X[:, 2] = 2
    e = calibration_entries(X, np.random.default_rng(0), genes=np.array([0, 2]))
    truth = np.log1p(e.values)
    net = truth + 0.5
    knn = truth - 0.5
    r = calibration_report(e, net, knn, 0.5, n_genes=3)
    assert r["n_entries"] == len(e) == 6
    assert r["network_mse"] == pytest.approx(0.25)
    assert r["neighbourhood_mse"] == pytest.approx(0.25)
    assert r["blend_mse"] == pytest.approx(0.0)
    assert np.isnan(r["gene_mse"][1])
    np.testing.assert_allclose(r["gene_mse"][[0, 2]], 0.0, atol=1e-12)
