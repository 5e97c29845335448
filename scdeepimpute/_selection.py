"""Which genes each sub-network predicts (targets) and which genes it reads (predictors).

Follows DeepImpute's Methods and the authors' code (``multinet.py``) with its known bugs fixed:
the last block is filled with the next-ranked genes instead of an extra block of random genes
drawn with replacement, small gene sets shrink the blocks instead of failing, and the correlation
step never builds a dense genes x genes matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

from ._utils import _ROW_CHUNK


def dispersion(mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """DeepImpute's gene metric ``var / (1 + mean)`` (called "VMR" in the paper and code)."""
    return var / (1.0 + mean)


def rank_genes(mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """Return gene indices with non-zero variance, by decreasing ``var / (1 + mean)`` (ties: lower index first)."""
    metric = dispersion(mean, var)
    eligible = np.flatnonzero(metric > 0)
    order = np.argsort(-metric[eligible], kind="stable")
    return eligible[order]


@dataclass(frozen=True)
class TargetBlocks:
    """Target genes split into sub-network blocks (gene indices into the input's columns)."""

    blocks: list[np.ndarray]
    selected: np.ndarray  # genes chosen by the filter or by the user
    filled: np.ndarray  # next-ranked genes added to complete the last block

    @property
    def targets(self) -> np.ndarray:
        return np.concatenate(self.blocks)


def split_targets(
    mean: np.ndarray,
    var: np.ndarray,
    *,
    min_vmr: float,
    subset_size: int,
    genes: np.ndarray | None = None,
    rng: np.random.Generator,
) -> TargetBlocks:
    """Choose target genes and split them at random into blocks.

    Targets are the genes with ``var / (1 + mean) > min_vmr`` (or the given ``genes``). With more
    than ``subset_size`` targets, blocks hold ``subset_size`` genes and the last one is completed
    with the next-ranked genes, as in the paper; where too few other genes with non-zero variance remain
    to complete it (always when every gene is a target), nothing is added and the targets are spread over
    ``ceil(targets / subset_size)`` blocks whose sizes differ by at most one. With at most
    ``subset_size`` targets, they are split into two blocks of half the size: a single block would
    leave its network with no input gene that is not also one of its targets.
    """
    ranked = rank_genes(mean, var)
    metric = dispersion(mean, var)
    if genes is None:
        selected = ranked[metric[ranked] > min_vmr]
        if selected.size == 0:
            msg = (
                f"no gene has var/(1+mean) > min_vmr={min_vmr:g} (largest: {metric.max(initial=0):.3g}); "
                "lower `min_vmr` or pass target genes with `genes=`."
            )
            raise ValueError(msg)
    else:
        genes = np.asarray(genes, dtype=np.int64)
        selected = genes[metric[genes] > 0]
        if selected.size < genes.size:
            from . import _logging as logg

            logg.warning(f"{genes.size - selected.size} of the requested genes are constant and cannot be imputed.")
    if selected.size < 2:
        msg = f"at least 2 target genes with non-zero variance are needed, found {selected.size}."
        raise ValueError(msg)

    n = selected.size
    n_blocks = 2 if n <= subset_size else -(-n // subset_size)
    pool = ranked[~np.isin(ranked, selected)]
    missing = n_blocks * subset_size - n
    filled = pool[:missing] if n > subset_size and pool.size >= missing else np.empty(0, dtype=np.int64)
    targets = rng.permutation(np.concatenate([selected, filled]))
    # blocks as even as possible: a short last block would leave most of its network's outputs as padding,
    # computed for nothing in the fused network (``benchmarks/RESULTS_speed.md``)
    blocks = [np.sort(b) for b in np.array_split(targets, n_blocks)]
    return TargetBlocks(blocks=blocks, selected=np.sort(selected), filled=np.sort(filled))


#: Matrices with more non-zeros than this fraction are multiplied as dense float32 chunks: a
#: multi-threaded BLAS product beats scipy's single-threaded sparse one from there on.
DENSE_PRODUCT_DENSITY = 0.1

#: Bytes of cross products accumulated at once; blocks are grouped to fit, so one pass over the
#: rows serves a whole group and memory stays O(budget) rather than O(genes^2).
CROSS_PRODUCT_BYTES = 2**28

#: Largest genes x genes product (float64 bytes) computed as one symmetric product (BLAS syrk, half the
#: arithmetic of the general products) when a group's targets are at least half of the genes: faster, same
#: predictors. 0 turns it off.
GRAM_BYTES = 2**28


def _cross_products(
    X, groups: list[np.ndarray], mean: np.ndarray, codes: np.ndarray | None = None
) -> tuple[list[np.ndarray], bool]:
    """``X.T @ X[:, cols]`` for each ``cols`` in ``groups`` (genes x len(cols), float64), over row chunks.

    Dense-enough data are centred first (``X - mean``) and multiplied in float32: centring keeps the
    float32 products accurate (no cancellation in ``E[xy] - E[x]E[y]``). With batch ``codes``, ``mean`` is
    batches x genes and every row is centred on its own batch's mean (always, whatever the density).
    Returns the products and whether they are centred.
    """
    n, n_genes = X.shape
    density = X.nnz / max(n * n_genes, 1) if sparse.issparse(X) else 1.0
    centred = density >= DENSE_PRODUCT_DENSITY or codes is not None
    # where the group's columns are most genes, one symmetric product serves every block of the group
    symmetric = centred and 8 * n_genes**2 <= GRAM_BYTES and 2 * sum(c.size for c in groups) >= n_genes
    if symmetric:
        from scipy.linalg import blas

        gram = np.zeros((n_genes, n_genes), dtype=np.float64)
    else:
        # filled by the first row chunk's products as they are (exactly 0 + product), float64 from a second on
        out = [None] * len(groups)
    # chunk rows so that a dense copy of a chunk stays near 64 MB whatever the gene count
    chunk = int(np.clip(2**24 // max(n_genes, 1), 64, _ROW_CHUNK))
    mean32 = mean.astype(np.float32)
    for start in range(0, n, chunk):
        rows = X[start : start + chunk]
        if centred:
            rows = rows.toarray() if sparse.issparse(rows) else np.asarray(rows)
            rows = rows.astype(np.float32) - (mean32 if codes is None else mean32[codes[start : start + chunk]])
            if symmetric:
                gram += blas.ssyrk(1.0, rows, trans=1)  # upper triangle of rows.T @ rows; the rest is 0
                continue
            for i, cols in enumerate(groups):
                out[i] = _accumulate(out[i], rows.T @ rows[:, cols])
        else:
            rows = sparse.csr_matrix(rows, dtype=np.float64)
            for i, cols in enumerate(groups):
                out[i] = _accumulate(out[i], rows.T @ rows[:, cols].toarray())
    if symmetric:
        gram += np.triu(gram, 1).T
        out = [gram[:, cols] for cols in groups]
    return out, centred


def _accumulate(acc: np.ndarray | None, product: np.ndarray) -> np.ndarray:
    """``acc + product`` in float64; the first product is kept as it is (no genes x targets float64 copy)."""
    if acc is None:
        return product
    if acc.dtype != np.float64:
        acc = acc.astype(np.float64)
    acc += product
    return acc


def within_batch_stats(X, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-batch gene means (batches x genes) and the pooled within-batch variance, ``SS_within / n`` (genes)."""
    from ._utils import gene_stats

    n_batches = int(codes.max()) + 1
    means = np.zeros((n_batches, X.shape[1]), dtype=np.float64)
    ss = np.zeros(X.shape[1], dtype=np.float64)
    for b in range(n_batches):
        rows = np.flatnonzero(codes == b)
        means[b], var, _ = gene_stats(X[rows])
        ss += var * (rows.size - 1)
    return means, ss / X.shape[0]


def abs_correlations(X, blocks: list[np.ndarray], mean: np.ndarray, var: np.ndarray, *, codes=None):
    """|Pearson r| between each block's targets and every gene: yields one targets x genes array per block.

    Computed from cross products in row chunks, a group of blocks per pass over the rows, so memory
    is O(targets x genes) per block; constant genes get 0 (as the original's ``NaN -> 0``).

    With batch ``codes`` (one integer per row), r is the pooled within-batch correlation: each batch is
    centred on its own means and the pooled within-batch covariance is divided by the pooled within-batch
    standard deviations, so genes that merely differ between batches in the same direction are not related.
    """
    n, n_genes = X.shape
    per_group = max(1, CROSS_PRODUCT_BYTES // (8 * n_genes * max(max(b.size for b in blocks), 1)))
    if codes is None:
        sd = np.sqrt(var * (n - 1) / n)  # population sd to match the population covariance
    else:
        mean, pooled_var = within_batch_stats(X, np.asarray(codes))
        sd = np.sqrt(pooled_var)
    for first in range(0, len(blocks), per_group):
        group = blocks[first : first + per_group]
        crosses, centred = _cross_products(X, group, mean, codes)
        for targets, cross in zip(group, crosses, strict=True):
            yield _abs_pearson(cross, targets, n, mean, sd, centred)


def _abs_pearson(cross, targets, n, mean, sd, centred) -> np.ndarray:
    """|r| of ``targets`` x genes from their cross products, in place on one C-ordered array.

    The same arithmetic as ``abs((cross.T / n - E[x]E[y]) / (sd_t sd_g))`` written out; row-major, so that the
    per-row top-k reads contiguous memory (the transposed view made it several times slower at 20k genes).
    """
    r = np.empty((cross.shape[1], cross.shape[0]), dtype=np.float64)
    step = 16  # rows at a time: each chunk's passes stay in cache
    for start in range(0, r.shape[0], step):
        rows, t = r[start : start + step], targets[start : start + step]
        rows[...] = cross[:, start : start + step].T  # float32 products widen exactly, then divide in float64
        rows /= n
        if not centred:
            rows -= np.outer(mean[t], mean)
        with np.errstate(divide="ignore", invalid="ignore"):
            np.divide(rows, np.outer(sd[t], sd), out=rows)
        np.abs(rows, out=rows)
        rows[~np.isfinite(rows)] = 0.0
        np.minimum(rows, 1.0, out=rows)
    return r


def abs_correlation(X, targets: np.ndarray, mean: np.ndarray, var: np.ndarray, *, codes=None) -> np.ndarray:
    """|Pearson r| between ``targets`` and every gene, on counts: a targets x genes array (pooled within ``codes``)."""
    return next(abs_correlations(X, [targets], mean, var, codes=codes))


def top_predictors(corr: np.ndarray, allowed: np.ndarray, n_predictors: int, *, overwrite: bool = False) -> np.ndarray:
    """Union, in first-seen order, of each row's ``n_predictors`` columns of highest ``corr`` among ``allowed``.

    Ties are broken by the lower column index, so the result is deterministic. ``overwrite=True`` (``corr``
    in [0, 1], ``allowed`` sorted) sets the other columns of ``corr`` to -1 in place instead of copying the
    allowed ones: the same result without a copy of a targets x genes array.
    """
    allowed = np.asarray(allowed)
    k = min(n_predictors, allowed.size)
    if k == 0:
        msg = "no candidate predictor genes outside the block's own targets."
        raise ValueError(msg)
    if overwrite and np.all(np.diff(allowed) > 0):
        excluded = np.ones(corr.shape[1], dtype=bool)
        excluded[allowed] = False
        corr[:, excluded] = -1.0  # below every |r|: never among the top k while k <= allowed.size
        flat = _top_k_columns(corr, k).ravel()
    else:
        flat = allowed[_top_k_columns(corr[:, allowed], k).ravel()]
    _, first = np.unique(flat, return_index=True)
    return flat[np.sort(first)]


def _top_k_columns(values: np.ndarray, k: int) -> np.ndarray:
    """Per row, the columns of the ``k`` largest values, largest first, lower column first among equal values.

    The first ``k`` columns of a stable ``argsort(-values)``: a partition finds each row's k-th largest value,
    and only the columns at or above it (k of them, more where values tie) are sorted.
    """
    n_rows, n_cols = values.shape
    kth = np.partition(values, n_cols - k, axis=1)[:, n_cols - k : n_cols - k + 1]
    rows, cols = np.nonzero(values >= kth)
    order = np.lexsort((cols, -values[rows, cols], rows))  # by row, then decreasing value, then column
    rows, cols = rows[order], cols[order]
    rank = np.arange(rows.size) - np.searchsorted(rows, rows)  # position within the row
    return cols[rank < k].reshape(n_rows, k)


def select_predictors(
    X, blocks: list[np.ndarray], mean: np.ndarray, var: np.ndarray, *, n_predictors: int, codes=None
) -> list[np.ndarray]:
    """Input genes of every block: each target's top ``n_predictors`` |r| genes, never a target of the same block.

    With batch ``codes``, r is pooled within batches (:func:`abs_correlations`).
    """
    candidates = np.flatnonzero(var > 0)
    predictors = []
    for block, corr in zip(blocks, abs_correlations(X, blocks, mean, var, codes=codes), strict=True):
        allowed = candidates[~np.isin(candidates, block)]
        predictors.append(top_predictors(corr, allowed, n_predictors, overwrite=True))
    return predictors
