"""The fitted dropout curve: how a gene's zero fraction falls with its expression, and draws weighted by it."""

from __future__ import annotations

import numpy as np
from scipy import optimize, sparse, special

from .._utils import as_supported


def _logistic(x, x0, k):
    """``1 / (1 + exp(-k (x - x0)))``, Splatter's dropout logistic, in the ``f(x, *params)`` form ``curve_fit`` fits."""
    return special.expit(k * (np.asarray(x, dtype=np.float64) - x0))


def _gene_nnz_sum(X) -> tuple[np.ndarray, np.ndarray]:
    """Per-gene number of non-zeros and sum, for dense or sparse ``X``."""
    if sparse.issparse(X):
        Xc = X.tocsc()
        Xc.eliminate_zeros()
        return np.diff(Xc.indptr), np.asarray(Xc.sum(axis=0), dtype=np.float64).ravel()
    X = np.asarray(X)
    return np.count_nonzero(X, axis=0), X.sum(axis=0, dtype=np.float64)


def fit_dropout_curve(X) -> tuple[float, float]:
    """Fit the logistic relation between a gene's zero fraction and the log mean of its positive values.

    For each gene with at least one positive count, ``x_g = log(mean of the positive values)`` and
    ``y_g = fraction of zeros``; ``y = 1 / (1 + exp(-k (x - x0)))`` is fitted by least squares
    (:func:`scipy.optimize.curve_fit`), as Splatter's ``splatEstDropout`` fits it with ``nls``.

    Parameters
    ----------
    X
        Cells x genes counts (dense or sparse).

    Returns
    -------
    ``(x0, k)``: midpoint and shape; ``k < 0`` when low expression means more zeros.

    Examples
    --------
    >>> import numpy as np
    >>> from scdeepimpute.tl import fit_dropout_curve
    >>> X = np.random.default_rng(0).poisson(np.linspace(0.05, 5, 200), size=(500, 200))
    >>> x0, k = fit_dropout_curve(X)
    >>> k < 0
    True
    """
    X = as_supported(X)
    nnz, total = _gene_nnz_sum(X)
    keep = nnz > 0
    if keep.sum() < 3:
        msg = f"need at least 3 genes with a positive count to fit the dropout curve, found {int(keep.sum())}."
        raise ValueError(msg)
    x = np.log(total[keep] / nnz[keep])
    y = 1.0 - nnz[keep] / X.shape[0]
    try:
        (x0, k), _ = optimize.curve_fit(_logistic, x, y, p0=(float(np.median(x)), -1.0), maxfev=20000)
    except RuntimeError as e:  # pragma: no cover - only on degenerate data
        msg = "could not fit the logistic dropout curve to these data (zero fraction vs log mean of positives)."
        raise ValueError(msg) from e
    return float(x0), float(k)


def _choose_by_curve(rng: np.random.Generator, idx: np.ndarray, vals: np.ndarray, n: int, x0: float, k: float):
    """``n`` of ``idx`` without replacement, with probabilities proportional to the logistic of ``log(vals)``."""
    p = _logistic(np.log(vals), x0, k)
    if np.count_nonzero(p) < n or not np.isfinite(p.sum()):
        p = np.where(np.isfinite(p), p, 0.0) + 1e-12  # underflow guard; keeps the ordering of the weights
    return rng.choice(idx, size=n, replace=False, p=p / p.sum())


def draw_nonzeros(
    M: sparse.csr_matrix | sparse.csc_matrix,
    n: int,
    min_nonzero: int,
    rng: np.random.Generator,
    curve: tuple[float, float] | None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Draw ``n`` stored entries in every compressed row (CSR) or column (CSC) of ``M`` holding ``>= min_nonzero``.

    ``curve=(x0, k)`` weights each entry by the dropout logistic of its log value; ``None`` draws uniformly.
    Returns the positions in ``M.data``, the compressed index each belongs to, and the number of rows
    (columns) skipped for holding fewer than ``min_nonzero`` entries.
    """
    pos, owner, skipped = [], [], 0
    for j in range(M.indptr.size - 1):
        lo, hi = M.indptr[j], M.indptr[j + 1]
        if hi - lo < min_nonzero:
            skipped += 1
            continue
        idx = np.arange(lo, hi)
        if curve is None:
            pos.append(rng.choice(idx, size=n, replace=False))
        else:
            pos.append(_choose_by_curve(rng, idx, M.data[lo:hi], n, *curve))
        owner.append(np.full(n, j, dtype=np.int64))
    if not pos:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), skipped
    return np.concatenate(pos), np.concatenate(owner), skipped
