"""The paper's masking benchmark: hide observed non-zeros, impute, score the hidden values."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from scipy import optimize, sparse, stats

from .. import _logging as logg
from .._utils import as_supported, check_random_state, get_matrix, is_dask

if TYPE_CHECKING:
    from anndata import AnnData


def _logistic(x, x0, k):
    """``1 / (1 + exp(-k (x - x0)))``, Splatter's dropout logistic."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-k * (np.asarray(x, dtype=np.float64) - x0)))


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


@dataclass
class MaskResult:
    """Output of :func:`mask_counts`.

    Attributes
    ----------
    X
        The masked counts (same format as the input: dense stays dense, sparse becomes CSR).
    obs_idx, var_idx
        Row and column of every masked entry (sorted by row, then column).
    values
        The true (pre-masking) values at those entries.
    x0, k
        The fitted dropout logistic (see :func:`fit_dropout_curve`).
    n_skipped
        Genes (``mode="gene"``) or cells (``mode="cell"``) left unmasked for having too few non-zeros.

    Examples
    --------
    The true values go back in with ``X[obs_idx, var_idx] = values``:

    >>> import numpy as np
    >>> from scdeepimpute.tl import mask_counts
    >>> X = np.random.default_rng(0).poisson(2.0, size=(100, 20)).astype(np.float32)
    >>> res = mask_counts(X, n_masked=10)
    >>> restored = res.X.copy()
    >>> restored[res.obs_idx, res.var_idx] = res.values
    >>> bool(np.array_equal(restored, X))
    True
    """

    X: np.ndarray | sparse.csr_matrix
    obs_idx: np.ndarray
    var_idx: np.ndarray
    values: np.ndarray
    x0: float
    k: float
    n_skipped: int


def _choose(rng: np.random.Generator, idx: np.ndarray, vals: np.ndarray, n: int, x0: float, k: float) -> np.ndarray:
    """``n`` of ``idx`` without replacement, with probabilities proportional to the logistic of ``log(vals)``."""
    p = _logistic(np.log(vals), x0, k)
    if np.count_nonzero(p) < n or not np.isfinite(p.sum()):
        p = np.where(np.isfinite(p), p, 0.0) + 1e-12  # underflow guard; keeps the ordering of the weights
    return rng.choice(idx, size=n, replace=False, p=p / p.sum())


def mask_counts(
    X,
    *,
    n_masked: int = 10,
    mode: Literal["gene", "cell"] = "gene",
    min_nonzero: int | None = None,
    random_state: int | np.random.Generator | None = 0,
) -> MaskResult:
    """Mask observed non-zero counts as the DeepImpute paper does (array version of :func:`mask`).

    ``mode="gene"`` (paper, Methods "Accuracy comparison"): the dropout logistic is fitted
    (:func:`fit_dropout_curve`); each non-zero entry of gene ``g`` in cell ``c`` gets
    ``p_cg = logistic(log x_cg)`` and ``n_masked`` of the gene's non-zero cells are drawn without
    replacement with probabilities ``q = p / sum(p)`` and set to zero. Genes with fewer than
    ``min_nonzero`` non-zeros (default ``n_masked + 1``, so every masked gene keeps one) are skipped.

    ``mode="cell"`` (the authors' ``accuracy/data_masking.py``): the same draw per *cell*, ``n_masked``
    of its non-zero genes; cells with fewer than ``min_nonzero`` non-zeros (default 50, as in the script)
    are skipped. The script fits the curve with ``scipy.stats.logistic.fit`` and weights by its density;
    here both modes use the fitted curve from the Methods text.

    Parameters
    ----------
    X
        Cells x genes counts.
    n_masked
        Entries masked per gene (``"gene"``) or per cell (``"cell"``).
    mode
        ``"gene"`` or ``"cell"``.
    min_nonzero
        Skip genes/cells with fewer non-zeros than this.
    random_state
        Seed or generator.

    Returns
    -------
    A :class:`MaskResult`.

    Examples
    --------
    >>> import numpy as np
    >>> from scdeepimpute.tl import mask_counts
    >>> X = np.random.default_rng(0).poisson(2.0, size=(100, 20)).astype(np.float32)
    >>> res = mask_counts(X, n_masked=10, random_state=0)
    >>> res.values.size, bool(np.all(res.X[res.obs_idx, res.var_idx] == 0))
    (200, True)
    """
    if mode not in ("gene", "cell"):
        msg = f"`mode` must be 'gene' or 'cell', got {mode!r}."
        raise ValueError(msg)
    if n_masked < 1:
        msg = f"`n_masked` must be a positive integer, got {n_masked}."
        raise ValueError(msg)
    X = as_supported(X)
    if is_dask(X):
        X = X.compute()
    if min_nonzero is None:
        min_nonzero = n_masked + 1 if mode == "gene" else 50
    min_nonzero = max(int(min_nonzero), n_masked)
    rng = check_random_state(random_state)
    x0, k = fit_dropout_curve(X)

    was_sparse = sparse.issparse(X)
    # compressed along the axis we draw within: CSC for genes, CSR for cells
    M = sparse.csc_matrix(X) if mode == "gene" else sparse.csr_matrix(X)
    M = M.astype(np.float32)
    M.eliminate_zeros()
    rows, cols, vals = [], [], []
    skipped = 0
    for j in range(M.shape[1] if mode == "gene" else M.shape[0]):
        lo, hi = M.indptr[j], M.indptr[j + 1]
        if hi - lo < min_nonzero:
            skipped += 1
            continue
        pos = _choose(rng, np.arange(lo, hi), M.data[lo:hi], n_masked, x0, k)
        inner = M.indices[pos]
        if mode == "gene":
            rows.append(inner)
            cols.append(np.full(n_masked, j))
        else:
            rows.append(np.full(n_masked, j))
            cols.append(inner)
        vals.append(M.data[pos].copy())
        M.data[pos] = 0
    if rows:
        obs_idx, var_idx, values = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    else:
        obs_idx = var_idx = np.zeros(0, dtype=np.int64)
        values = np.zeros(0, dtype=np.float32)
    order = np.lexsort((var_idx, obs_idx))
    obs_idx, var_idx, values = obs_idx[order].astype(np.int64), var_idx[order].astype(np.int64), values[order]
    M.eliminate_zeros()
    X_masked = M.tocsr() if was_sparse else M.toarray()
    return MaskResult(X_masked, obs_idx, var_idx, values.astype(np.float32), x0, k, skipped)


def mask(  # noqa: PLR0913
    adata: AnnData,
    *,
    layer: str | None = None,
    n_masked: int = 10,
    mode: Literal["gene", "cell"] = "gene",
    min_nonzero: int | None = None,
    random_state: int | np.random.Generator | None = 0,
    key_added: str = "masked",
    copy: bool = False,
) -> AnnData | None:
    """Hide observed counts for the paper's accuracy benchmark :cite:p:`Arisdakessian2019`.

    Non-zero counts are set to zero with probabilities from a logistic dropout curve fitted to the data
    (see :func:`mask_counts` for the two modes). Impute ``layers[key_added]`` with any method, then
    score the hidden values with :func:`masked_scores`. The input matrix is not changed.

    Parameters
    ----------
    adata
        Annotated data with raw counts.
    layer
        Layer holding the counts; ``None`` uses ``X``.
    n_masked
        Entries masked per gene (``mode="gene"``, paper) or per cell (``mode="cell"``, authors' script).
    mode
        ``"gene"`` or ``"cell"``.
    min_nonzero
        Genes (cells) with fewer non-zeros are not masked; default ``n_masked + 1`` (``"gene"``) or 50
        (``"cell"``).
    random_state
        Seed or generator.
    key_added
        Name of the masked layer and of the ``uns`` entry.
    copy
        Return a copy instead of writing to ``adata``.

    Returns
    -------
    Returns ``None`` if ``copy=False``, else returns an ``AnnData`` object. Sets the following fields:

    ``adata.layers[key_added]`` : ndarray or csr_matrix, float32
        The masked counts.
    ``adata.uns[key_added]`` : dict
        ``obs_idx``, ``var_idx`` (int arrays) and ``values`` (true counts) of the masked entries,
        ``curve`` (``x0``, ``k``), ``n_skipped`` and ``params``. Plain arrays, so it survives h5ad/zarr.

    Examples
    --------
    >>> import scdeepimpute as sdi
    >>> adata = sdi.datasets.simulate(n_obs=200, n_vars=300, random_state=0)
    >>> sdi.tl.mask(adata, random_state=0)
    >>> adata.layers["masked"].nnz < adata.X.nnz
    True
    """
    adata = adata.copy() if copy else adata
    start = logg.info(f"masking {n_masked} non-zeros per {mode}")
    res = mask_counts(
        get_matrix(adata, layer), n_masked=n_masked, mode=mode, min_nonzero=min_nonzero, random_state=random_state
    )
    adata.layers[key_added] = res.X
    params = {"layer": "X" if layer is None else layer, "n_masked": n_masked, "mode": mode}
    params["min_nonzero"] = (n_masked + 1 if mode == "gene" else 50) if min_nonzero is None else int(min_nonzero)
    if isinstance(random_state, (int, np.integer)):
        params["random_state"] = int(random_state)
    adata.uns[key_added] = {
        "obs_idx": res.obs_idx,
        "var_idx": res.var_idx,
        "values": res.values,
        "curve": {"x0": res.x0, "k": res.k},
        "n_skipped": int(res.n_skipped),
        "params": params,
    }
    logg.info(
        f"    finished: {res.values.size} entries masked, {res.n_skipped} {mode}s skipped",
        time=start,
        deep=f"added\n    {key_added!r}, masked counts (adata.layers)\n    {key_added!r}, mask and truth (adata.uns)",
    )
    return adata if copy else None


def dropout_mask(
    adata: AnnData,
    *,
    truth_layer: str = "true_counts",
    layer: str | None = None,
    key_added: str = "dropout",
    copy: bool = False,
) -> AnnData | None:
    """Record the entries that a simulation dropped, in the format of :func:`mask`.

    For :func:`scdeepimpute.datasets.simulate` output: entries with ``truth > 0`` and ``observed == 0``.
    :func:`masked_scores` with ``mask_key=key_added`` then scores how well a method recovers them.

    Parameters
    ----------
    adata
        Annotated data with observed and true counts.
    truth_layer
        Layer with the counts before dropout.
    layer
        Layer with the observed counts; ``None`` uses ``X``.
    key_added
        ``uns`` key to write.
    copy
        Return a copy instead of writing to ``adata``.

    Returns
    -------
    Returns ``None`` if ``copy=False``, else returns an ``AnnData`` object. Sets
    ``adata.uns[key_added]`` : dict with ``obs_idx``, ``var_idx``, ``values`` and ``params``.

    Examples
    --------
    >>> import scdeepimpute as sdi
    >>> adata = sdi.datasets.simulate(n_obs=100, n_vars=200, dropout_type="experiment", random_state=0)
    >>> sdi.tl.dropout_mask(adata)
    >>> int(adata.uns["dropout"]["values"].min()) >= 1
    True
    """
    adata = adata.copy() if copy else adata
    truth = sparse.csr_matrix(get_matrix(adata, truth_layer))
    obs = sparse.csr_matrix(get_matrix(adata, layer))
    dropped = sparse.csr_matrix(truth - truth.multiply(obs != 0))
    dropped.eliminate_zeros()
    dropped = dropped.tocoo()
    order = np.lexsort((dropped.col, dropped.row))
    adata.uns[key_added] = {
        "obs_idx": dropped.row[order].astype(np.int64),
        "var_idx": dropped.col[order].astype(np.int64),
        "values": np.asarray(dropped.data[order], dtype=np.float32),
        "params": {"truth_layer": truth_layer, "layer": "X" if layer is None else layer},
    }
    return adata if copy else None


def values_at(X, obs_idx: np.ndarray, var_idx: np.ndarray) -> np.ndarray:
    """``X[obs_idx[i], var_idx[i]]`` for dense, sparse or dask ``X``, as float64."""
    if is_dask(X):
        return np.asarray(X.vindex[obs_idx, var_idx].compute(), dtype=np.float64)
    if sparse.issparse(X):
        X = sparse.csr_matrix(X)
        return np.asarray(X[obs_idx, var_idx], dtype=np.float64).ravel()
    return np.asarray(np.asarray(X)[obs_idx, var_idx], dtype=np.float64)


def masked_metrics(
    true_values: np.ndarray,
    imputed_values: np.ndarray,
    obs_idx: np.ndarray | None = None,
    var_idx: np.ndarray | None = None,
    *,
    n_obs: int | None = None,
    n_vars: int | None = None,
) -> dict[str, object]:
    """Accuracy on masked entries in ``log1p`` space (array version of :func:`masked_scores`).

    Both inputs are on the counts scale; imputed values below zero are clipped to zero before ``log1p``.

    Parameters
    ----------
    true_values, imputed_values
        Values at the masked entries, same length.
    obs_idx, var_idx
        Cell and gene of each entry; needed for the per-cell and per-gene MSE.
    n_obs, n_vars
        Lengths of the per-cell and per-gene arrays (default: largest index + 1).

    Returns
    -------
    dict with ``mse`` (mean squared error), ``pearson`` (Pearson's r), ``n_masked``, and, when indices
    are given, ``mse_per_cell`` and ``mse_per_gene`` (arrays, NaN where nothing was masked).

    Examples
    --------
    >>> import numpy as np
    >>> from scdeepimpute.tl import masked_metrics
    >>> m = masked_metrics(np.array([1.0, 3.0, 7.0]), np.array([1.0, 3.0, 3.0]))
    >>> round(m["mse"], 4)  # (log 8 - log 4)^2 / 3
    0.1602
    """
    t = np.log1p(np.asarray(true_values, dtype=np.float64))
    y = np.log1p(np.clip(np.asarray(imputed_values, dtype=np.float64), 0, None))
    if t.shape != y.shape or t.ndim != 1:
        msg = f"true and imputed values must be 1-d of the same length, got {t.shape} and {y.shape}."
        raise ValueError(msg)
    sq = (t - y) ** 2
    out: dict[str, object] = {"mse": float(sq.mean()) if sq.size else float("nan"), "n_masked": int(sq.size)}
    if sq.size >= 2 and np.ptp(t) > 0 and np.ptp(y) > 0:
        out["pearson"] = float(stats.pearsonr(t, y).statistic)
    else:
        out["pearson"] = float("nan")
    for name, idx, n in (("cell", obs_idx, n_obs), ("gene", var_idx, n_vars)):
        if idx is None:
            continue
        idx = np.asarray(idx, dtype=np.int64)
        n = int(idx.max()) + 1 if n is None else int(n)
        counts = np.bincount(idx, minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"mse_per_{name}"] = np.bincount(idx, weights=sq, minlength=n) / counts
    return out


def masked_scores(
    adata: AnnData,
    *,
    layer: str = "imputed",
    mask_key: str = "masked",
) -> dict[str, object]:
    """Score an imputation on the entries hidden by :func:`mask` (paper Fig. 2).

    Metrics on ``log1p`` counts of the masked entries: overall mean squared error and Pearson's r, and
    the MSE per gene and per cell (over that gene's/cell's masked entries).

    Parameters
    ----------
    adata
        Annotated data after :func:`mask` and an imputation.
    layer
        Layer with the imputed counts (counts scale); ``"X"`` or ``None`` uses ``X``.
    mask_key
        ``uns`` key written by :func:`mask` (or :func:`dropout_mask`).

    Returns
    -------
    dict with ``mse``, ``pearson``, ``n_masked`` (floats/int), ``mse_per_gene`` and ``mse_per_cell``
    (:class:`pandas.Series` indexed by ``var_names``/``obs_names``, only genes/cells with masked entries).

    Examples
    --------
    >>> import scdeepimpute as sdi
    >>> adata = sdi.datasets.simulate(n_obs=200, n_vars=300, random_state=0)
    >>> sdi.tl.mask(adata, random_state=0)
    >>> scores = sdi.tl.masked_scores(adata, layer="masked")  # "no imputation": every hidden value is 0
    >>> sorted(k for k in scores if not k.startswith("mse_per"))
    ['mse', 'n_masked', 'pearson']
    """
    if mask_key not in adata.uns or "obs_idx" not in adata.uns[mask_key]:
        msg = f"adata.uns[{mask_key!r}] holds no mask; run scdeepimpute.tl.mask(adata, key_added={mask_key!r}) first."
        raise KeyError(msg)
    m = adata.uns[mask_key]
    obs_idx, var_idx = np.asarray(m["obs_idx"]), np.asarray(m["var_idx"])
    X = get_matrix(adata, None if layer in (None, "X") else layer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sparse.SparseEfficiencyWarning)
        imputed = values_at(X, obs_idx, var_idx)
    out = masked_metrics(m["values"], imputed, obs_idx, var_idx, n_obs=adata.n_obs, n_vars=adata.n_vars)
    out["mse_per_gene"] = pd.Series(out["mse_per_gene"], index=adata.var_names, name="mse").dropna()
    out["mse_per_cell"] = pd.Series(out["mse_per_cell"], index=adata.obs_names, name="mse").dropna()
    return out
