"""Target genes, block split and predictor genes against brute-force numpy references."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from scdeepimpute._selection import (
    abs_correlation,
    dispersion,
    select_predictors,
    split_targets,
    top_predictors,
)
from scdeepimpute._utils import gene_stats, mean_var

from .conftest import make_counts


def _reference_metric(X: np.ndarray) -> np.ndarray:
    return X.var(axis=0, ddof=1) / (1 + X.mean(axis=0))


@pytest.mark.parametrize("fmt", ["dense", "csr", "csc"])
def test_mean_var_matches_numpy(fmt):
    X = make_counts(50, 30)
    M = X if fmt == "dense" else getattr(sparse, f"{fmt}_matrix")(X)
    mean, var = mean_var(M)
    np.testing.assert_allclose(mean, X.mean(0), rtol=1e-6)
    np.testing.assert_allclose(var, X.var(0, ddof=1), rtol=1e-5)
    _, _, detected = gene_stats(M)
    np.testing.assert_array_equal(detected, (X > 0).mean(0))


@pytest.mark.parametrize(("min_vmr", "subset_size"), [(0.5, 8), (0.0, 8), (0.5, 100), (2.0, 4)])
def test_split_targets_matches_reference(min_vmr, subset_size):
    X = make_counts(80, 60, seed=1)
    X[:, 3] = 0  # a constant gene is never a target
    mean, var = mean_var(X)
    split = split_targets(mean, var, min_vmr=min_vmr, subset_size=subset_size, rng=np.random.default_rng(0))

    metric = _reference_metric(X)
    np.testing.assert_allclose(dispersion(mean, var), metric, rtol=1e-5)
    expected_selected = np.flatnonzero(metric > min_vmr)
    np.testing.assert_array_equal(split.selected, expected_selected)
    assert 3 not in split.targets

    n = expected_selected.size
    sizes = [b.size for b in split.blocks]
    if n <= subset_size:
        # small sets shrink into exactly two blocks of half the size, never fail
        assert len(split.blocks) == 2
        assert split.filled.size == 0
        assert max(sizes) == -(-n // 2)
    else:
        n_blocks = -(-n // subset_size)
        assert len(split.blocks) == n_blocks
        ranked = np.argsort(-metric, kind="stable")
        ranked = ranked[metric[ranked] > 0]
        others = [g for g in ranked if g not in set(expected_selected)]
        if len(others) >= n_blocks * subset_size - n:
            # the last block is completed with the next-ranked genes, not random ones
            assert all(s == subset_size for s in sizes)
            np.testing.assert_array_equal(np.sort(split.filled), np.sort(others[: n_blocks * subset_size - n]))
        else:
            # too few genes to complete it: no gene added, blocks as even as possible
            assert split.filled.size == 0
            assert max(sizes) - min(sizes) <= 1
    # blocks partition the targets: no gene twice
    targets = split.targets
    assert np.unique(targets).size == targets.size
    assert set(targets) == set(expected_selected) | set(split.filled)


def test_split_targets_is_seeded():
    X = make_counts(60, 50, seed=2)
    mean, var = mean_var(X)
    a = split_targets(mean, var, min_vmr=0, subset_size=8, rng=np.random.default_rng(5))
    b = split_targets(mean, var, min_vmr=0, subset_size=8, rng=np.random.default_rng(5))
    c = split_targets(mean, var, min_vmr=0, subset_size=8, rng=np.random.default_rng(6))
    assert all(np.array_equal(x, y) for x, y in zip(a.blocks, b.blocks, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a.blocks, c.blocks, strict=True))


def test_split_targets_user_genes_and_errors():
    X = make_counts(60, 30, seed=3)
    mean, var = mean_var(X)
    split = split_targets(
        mean, var, min_vmr=0.5, subset_size=512, genes=np.array([1, 2, 5, 7]), rng=np.random.default_rng(0)
    )
    assert set(split.targets) == {1, 2, 5, 7}
    with pytest.raises(ValueError, match="min_vmr"):
        split_targets(mean, var, min_vmr=1e9, subset_size=8, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="at least 2 target genes"):
        split_targets(mean, var, min_vmr=0, subset_size=8, genes=np.array([4]), rng=np.random.default_rng(0))


@pytest.mark.parametrize("fmt", ["dense", "csr"])
@pytest.mark.parametrize(
    ("density_threshold", "atol"),
    # float64 sparse products are exact to rounding; the dense path multiplies centred float32
    # values (7 significant digits; uncentred float32 products are off by up to 0.97 on column 7)
    [(2.0, 1e-10), (0.0, 1e-5)],
    ids=["sparse-float64", "dense-float32"],
)
# few targets: one general product per block; most genes as targets: one symmetric (syrk) product on the dense path
@pytest.mark.parametrize("targets", [np.array([0, 3, 6, 7, 10]), np.arange(15)], ids=["few-targets", "most-genes"])
def test_abs_correlation_matches_corrcoef(fmt, density_threshold, atol, targets, monkeypatch):
    from scdeepimpute import _selection

    monkeypatch.setattr(_selection, "DENSE_PRODUCT_DENSITY", density_threshold)
    X = make_counts(70, 25, seed=4)
    X[:, 6] = 0  # constant: correlation 0 like the original's NaN -> 0
    X[:, 7] += 1000  # large mean, small spread: uncentred float32 products would lose it to cancellation
    M = X if fmt == "dense" else sparse.csr_matrix(X)
    mean, var = mean_var(M)
    got = abs_correlation(M, targets, mean, var)
    with np.errstate(invalid="ignore", divide="ignore"):
        ref = np.abs(np.corrcoef(X.T.astype(np.float64)))[targets]
    ref[~np.isfinite(ref)] = 0
    np.testing.assert_allclose(got, ref, atol=atol)


def test_correlations_grouped_like_one_by_one(monkeypatch):
    from scdeepimpute import _selection

    X = sparse.csr_matrix(make_counts(60, 30, seed=6))
    mean, var = mean_var(X)
    blocks = [np.arange(0, 10), np.arange(10, 20), np.arange(20, 30)]
    one_by_one = [abs_correlation(X, b, mean, var) for b in blocks]
    monkeypatch.setattr(_selection, "CROSS_PRODUCT_BYTES", 8 * 30 * 10 * 2)  # two blocks per pass
    grouped = list(_selection.abs_correlations(X, blocks, mean, var))
    assert len(grouped) == 3
    for a, b in zip(one_by_one, grouped, strict=True):
        # the products are float32 BLAS calls of different widths, whose summation order the BLAS may change
        # with the width: equal to float32 rounding, not bit for bit (seen with numpy 2.4's OpenBLAS)
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_predictors_match_brute_force():
    X = make_counts(90, 40, seed=5)
    mean, var = mean_var(X)
    split = split_targets(mean, var, min_vmr=0, subset_size=12, rng=np.random.default_rng(1))
    preds = select_predictors(sparse.csr_matrix(X), split.blocks, mean, var, n_predictors=5)
    corr = np.abs(np.corrcoef(X.T.astype(np.float64)))
    for block, pred in zip(split.blocks, preds, strict=True):
        expected = set()
        for t in block:
            candidates = [g for g in range(X.shape[1]) if g not in set(block) and var[g] > 0]
            order = sorted(candidates, key=lambda g: (-corr[t, g], g))
            expected.update(order[:5])
        assert set(pred) == expected
        assert not set(pred) & set(block), "a block's own targets are never its inputs"
        assert np.unique(pred).size == pred.size


def test_top_predictors_first_seen_order_and_ties():
    corr = np.array([[0.9, 0.1, 0.5, 0.5], [0.2, 0.8, 0.5, 0.0]])
    got = top_predictors(corr, np.arange(4), 2)
    # row 0: col 0 then the tie 2 vs 3 broken by the lower index; row 1: col 1 then col 2 (already seen)
    np.testing.assert_array_equal(got, [0, 2, 1])


@pytest.mark.parametrize("ties", [False, True])
def test_top_k_columns_is_a_stable_argsort(ties):
    """Property: the partition-based top-k equals the first k columns of a stable argsort, ties included."""
    from scdeepimpute._selection import _top_k_columns

    rng = np.random.default_rng(1)
    for _ in range(100):
        n_rows, n_cols = rng.integers(1, 20), rng.integers(1, 30)
        k = int(rng.integers(1, n_cols + 1))
        values = rng.integers(0, 3, (n_rows, n_cols)) / 2 if ties else rng.random((n_rows, n_cols))
        np.testing.assert_array_equal(_top_k_columns(values, k), np.argsort(-values, axis=1, kind="stable")[:, :k])


@pytest.mark.parametrize("ties", [False, True])
def test_top_predictors_overwrite_matches_copy(ties):
    """Property: masking the excluded columns in place picks the same predictors as the copy of the allowed ones."""
    rng = np.random.default_rng(2)
    for _ in range(100):
        n_rows, n_cols = rng.integers(1, 15), rng.integers(2, 40)
        corr = rng.integers(0, 3, (n_rows, n_cols)) / 2 if ties else rng.random((n_rows, n_cols))
        allowed = np.flatnonzero(rng.random(n_cols) < 0.7)
        if allowed.size == 0:
            continue
        k = int(rng.integers(1, 7))
        expected = top_predictors(corr, allowed, k)
        np.testing.assert_array_equal(top_predictors(corr.copy(), allowed, k, overwrite=True), expected)
