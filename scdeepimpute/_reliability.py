"""The per-gene reliability of a fit: each gene's error on its hidden calibration entries, shrunk toward its peers.

Used by :func:`scdeepimpute._neighbors.calibration_report`; ``pp.deepimpute`` writes the result to
``adata.var[f"{key_added}_reliability"]``.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse


def gene_features(X) -> np.ndarray:
    """Per gene of ``X`` (counts): the variance of log1p over its non-zeros and the log of its detection rate.

    What a gene's masked error follows across genes: a gene whose detected values spread widely is harder to
    recover. Genes without a non-zero get 0 and ``log(1 / (2 n_cells))``.
    """
    n = X.shape[0]
    if sparse.issparse(X):
        C = sparse.csc_matrix(X, dtype=np.float64)
        C.eliminate_zeros()
        nnz = np.diff(C.indptr).astype(np.float64)
        L = C.copy()
        L.data = np.log1p(L.data)
        s1 = np.asarray(L.sum(axis=0)).ravel()
        L.data **= 2
        s2 = np.asarray(L.sum(axis=0)).ravel()
    else:  # in row chunks: a float64 log1p copy of a large dense matrix would double its memory
        nnz, s1, s2 = (np.zeros(X.shape[1]) for _ in range(3))
        for start in range(0, n, 4096):
            L = np.log1p(np.clip(np.asarray(X[start : start + 4096], dtype=np.float64), 0, None))
            nnz += (L > 0).sum(axis=0)
            s1 += L.sum(axis=0)
            s2 += (L**2).sum(axis=0)
    safe = np.maximum(nnz, 1.0)
    spread = np.clip(s2 / safe - (s1 / safe) ** 2, 0, None)
    return np.column_stack([spread, np.log(np.maximum(nnz, 0.5) / n)])


def shrunk_gene_mse(cols: np.ndarray, sq: np.ndarray, n_genes: int, *, features: np.ndarray | None = None):
    """Per-gene MSE of the squared errors ``sq`` of entries in genes ``cols``, shrunk toward genes like it.

    A gene has at most 10 calibration entries, too few to rank genes well by their own mean
    (``benchmarks/RESULTS_reliability.md``).
    With ``features`` the mean is an empirical-Bayes estimate on the relative scale: a prior ``p_g`` from the
    least-squares fit of the genes' means on ``features`` (weighted by their entry counts ``n_g``), and
    ``p_g (n_g r_g + k) / (n_g + k)`` with ``r_g`` the gene's mean over ``p_g`` and ``k`` the ratio of the
    within-gene variance of ``sq / p_g`` to the between-gene variance of ``r_g`` left after sampling noise
    (method of moments). Plain means without ``features`` or with too few genes to fit the prior. NaN where a
    gene has no entry.
    """
    cols = np.asarray(cols, dtype=np.int64)
    sq = np.asarray(sq, dtype=np.float64)
    count = np.bincount(cols, minlength=n_genes).astype(np.float64)
    has = count > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(has, np.bincount(cols, weights=sq, minlength=n_genes) / np.maximum(count, 1), np.nan)
    if features is None:
        return mean
    design = np.column_stack([np.ones(n_genes), np.asarray(features, dtype=np.float64)])
    if has.sum() < 5 * design.shape[1] or not np.isfinite(design[has]).all():
        return mean
    w = np.sqrt(count[has])[:, None]
    beta = np.linalg.lstsq(design[has] * w, mean[has] * w[:, 0], rcond=None)[0]
    # a floor, so that the relative scale stays finite where the linear prior runs to zero or below
    prior = np.maximum(design @ beta, 0.05 * np.mean(mean[has]) + 1e-12)
    rel = mean / prior
    rel_sq = sq / prior[cols]
    within_ss = np.bincount(cols, weights=rel_sq**2, minlength=n_genes) - count * np.where(has, rel, 0) ** 2
    dof = np.maximum(count - 1, 0).sum()
    if dof == 0:
        return mean
    within = within_ss[has].sum() / dof
    between = np.var(rel[has]) - np.mean(within / count[has])
    if between <= 0:  # no spread beyond sampling noise: every gene gets its prior
        return np.where(has, prior, np.nan)
    k = within / between
    return np.where(has, prior * (count * rel + k) / (count + k), np.nan)
