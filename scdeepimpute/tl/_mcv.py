"""Molecular cross-validation: split each count's molecules, impute one part, score against the other."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy import sparse

from .._fills import LOG_TARGET_SUM
from .._utils import as_supported, check_random_state, get_matrix, is_dask

if TYPE_CHECKING:
    from anndata import AnnData

#: ``normalize_total`` target of the log-space MSE (Open Problems' denoising ``mse`` metric), the one the
#: ``"lognorm"`` fill normalises to.
TARGET_SUM = LOG_TARGET_SUM
#: Added inside the logarithm of the Poisson loss (as in ``molecular_cross_validation.mcv_sweep.poisson_nll_loss``).
POISSON_EPS = 1e-6
#: Rows per chunk when scoring; bounds the float64 temporaries.
_ROW_CHUNK = 2048


def _check_count_values(vals: np.ndarray, what: str) -> None:
    if vals.size == 0:
        return
    if not np.all(np.isfinite(vals)):
        msg = f"{what} contains NaN or infinite values; molecular cross-validation needs raw integer counts."
        raise ValueError(msg)
    if np.any(vals < 0):
        msg = f"{what} contains negative values (min {vals.min():g}); molecular cross-validation needs raw counts."
        raise ValueError(msg)
    if not np.issubdtype(vals.dtype, np.integer) and np.any(np.mod(vals, 1) != 0):
        msg = (
            f"{what} contains non-integer values; molecules can only be split from raw integer counts "
            "(pass the layer with raw counts via `layer=`)."
        )
        raise ValueError(msg)


def molecular_split(
    adata: AnnData,
    *,
    layer: str | None = None,
    train_fraction: float = 0.9,
    random_state: int | np.random.Generator | None = 0,
) -> tuple[AnnData, AnnData]:
    """Split every count's molecules into a train and a test part :cite:p:`Batson2019`.

    Each count ``x`` is split as ``train ~ Binomial(x, train_fraction)``, ``test = x - train``, independently
    for every entry, so ``train + test`` is the input exactly and, for Poisson counts, the two parts are
    independent Poisson draws of the same expression. This is the split of the Open Problems denoising
    benchmark :cite:p:`Luecken2025` (``train_frac=0.9``, no overlap correction). Unlike that benchmark, genes
    without train molecules are kept, so both parts keep the input's genes and order.

    Impute ``train`` with any method and score the result against ``test`` with :func:`mcv_scores`.

    Parameters
    ----------
    adata
        Annotated data with raw counts (a view is fine; it is not modified).
    layer
        Layer holding the counts; default ``X``.
    train_fraction
        Expected fraction of each count's molecules put in the train part, in (0, 1).
    random_state
        Seed or :class:`numpy.random.Generator`.

    Returns
    -------
    ``(train, test)``: two AnnData objects with the parts in ``X`` (sparse input gives CSR, dense stays dense;
    the input's dtype is kept), copies of ``adata.obs`` and ``adata.var``, and in ``uns['mcv']`` the
    ``train_fraction`` and the train part's total count ``train_total`` (which :func:`mcv_scores` reads).

    Raises
    ------
    ValueError
        If the counts are negative, not finite or not integers, or ``train_fraction`` is outside (0, 1).

    Examples
    --------
    >>> import scdeepimpute as sdi
    >>> adata = sdi.datasets.simulate(n_obs=100, n_vars=50, random_state=0)
    >>> train, test = sdi.tl.molecular_split(adata, random_state=0)
    >>> bool(((train.X + test.X) != adata.X).nnz == 0)
    True
    >>> round(float(test.X.sum() / adata.X.sum()), 2)
    0.1
    """
    import anndata as ad

    if not 0.0 < float(train_fraction) < 1.0:
        msg = f"`train_fraction` must be in (0, 1), got {train_fraction!r}."
        raise ValueError(msg)
    X = get_matrix(adata, layer)
    if is_dask(X):
        X = X.compute()
    X = as_supported(X)
    what = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    rng = check_random_state(random_state)
    if sparse.issparse(X):
        X = sparse.csr_matrix(X)  # a CSR view (or a copy of CSC/COO); never modified below
        vals = np.asarray(X.data)
        _check_count_values(vals, what)
        train_vals = rng.binomial(vals.astype(np.int64), train_fraction).astype(vals.dtype)
        test_vals = (vals - train_vals).astype(vals.dtype)
        train = sparse.csr_matrix((train_vals, X.indices.copy(), X.indptr.copy()), shape=X.shape)
        test = sparse.csr_matrix((test_vals, X.indices.copy(), X.indptr.copy()), shape=X.shape)
        train.eliminate_zeros()
        test.eliminate_zeros()
    else:
        X = np.asarray(X)
        _check_count_values(X, what)
        train = rng.binomial(X.astype(np.int64), train_fraction).astype(X.dtype)
        test = (X - train).astype(X.dtype)
    info = {"train_fraction": float(train_fraction), "train_total": float(train.sum(dtype=np.float64))}
    parts = []
    for part in (train, test):
        out = ad.AnnData(part, obs=adata.obs.copy(), var=adata.var.copy())
        out.uns["mcv"] = dict(info)
        parts.append(out)
    return parts[0], parts[1]


def _matrix(M, name: str):
    """``X`` of an AnnData, or the array itself; dense numpy or CSR."""
    if hasattr(M, "obs_names") and hasattr(M, "X"):
        M = M.X
    if is_dask(M):
        M = M.compute()
    M = as_supported(M)
    if sparse.issparse(M):
        return sparse.csr_matrix(M)
    M = np.asarray(M)
    if M.ndim != 2:
        msg = f"`{name}` must be a cells x genes matrix, got shape {M.shape}."
        raise ValueError(msg)
    return M


def _dense_rows(M, lo: int, hi: int) -> np.ndarray:
    block = M[lo:hi]
    return np.asarray(block.toarray() if sparse.issparse(block) else block, dtype=np.float64)


def _log_normalized(block: np.ndarray) -> np.ndarray:
    """``log1p`` of each row scaled to ``TARGET_SUM`` (all-zero rows stay zero, as in ``normalize_total``)."""
    totals = block.sum(axis=1, keepdims=True)
    scale = np.divide(TARGET_SUM, totals, out=np.zeros_like(totals), where=totals > 0)
    return np.log1p(block * scale)


def mcv_scores(imputed, test, *, train=None) -> dict[str, float]:
    """Score an imputation of the train part against the held-out test part :cite:p:`Batson2019`.

    Both metrics follow the Open Problems denoising benchmark :cite:p:`Luecken2025` and are averaged over
    every entry of the matrix, zeros included:

    * ``mse``: mean squared difference after ``normalize_total(target_sum=1e4)`` and ``log1p`` of the
      imputed matrix and of the test counts, each cell scaled on its own (cells with no test molecules
      stay all-zero, as :func:`scanpy.pp.normalize_total` leaves them);
    * ``poisson``: Poisson negative log-likelihood of the test counts ``y`` given
      ``mu = imputed * sum(test) / sum(train)`` (one global scale, the ratio of the two parts' totals),
      ``mean(mu - y * log(mu + 1e-6))``; the ``log(y!)`` term, which does not depend on the imputation,
      is left out, as in the benchmark.

    Lower is better for both. They answer different questions: the Poisson loss is lowest for the true
    expected counts, whereas the log-space MSE against a sparse test part also rewards predictions that
    stay near zero where the test part mostly is, so a good count model can score worse there than
    no imputation. A log-normalised layer (``imputed_lognorm`` of :func:`scdeepimpute.pp.deepimpute` with
    ``fills=(..., "lognorm")``) is scored as ``numpy.expm1`` of it: counts per ``1e4``, normalised again here
    like any other method's output.

    Parameters
    ----------
    imputed
        The imputation of the train part, **on the train part's counts scale** (what every
        ``sdi.tl.impute_*`` method and the layers of :func:`scdeepimpute.pp.deepimpute` return; not
        log-transformed or normalised): array, sparse matrix or AnnData (its ``X``), non-negative.
    test
        The test part from :func:`molecular_split` (AnnData or matrix), same shape.
    train
        The train part (AnnData or matrix) or its total count, for the Poisson scale; default
        ``test.uns['mcv']['train_total']`` (written by :func:`molecular_split`).

    Returns
    -------
    ``{"mse": ..., "poisson": ...}``.

    Examples
    --------
    >>> import scdeepimpute as sdi
    >>> adata = sdi.datasets.simulate(n_obs=100, n_vars=50, random_state=0)
    >>> train, test = sdi.tl.molecular_split(adata, random_state=0)
    >>> scores = sdi.tl.mcv_scores(sdi.tl.impute_knn(train), test)
    >>> sorted(scores)
    ['mse', 'poisson']
    """
    if train is None:
        try:
            train = float(test.uns["mcv"]["train_total"])
        except (AttributeError, KeyError, TypeError):
            msg = "pass `train=` (the train part or its total): `test` carries no uns['mcv']['train_total']."
            raise ValueError(msg) from None
    Y = _matrix(imputed, "imputed")
    T = _matrix(test, "test")
    if Y.shape != T.shape:
        msg = f"`imputed` has shape {Y.shape} but `test` has shape {T.shape}."
        raise ValueError(msg)
    y_vals = Y.data if sparse.issparse(Y) else Y
    if y_vals.size and (not np.all(np.isfinite(y_vals)) or np.any(y_vals < 0)):
        msg = "`imputed` must be finite and non-negative (counts scale); got negative, NaN or infinite values."
        raise ValueError(msg)
    if isinstance(train, (int, float, np.integer, np.floating)):
        train_total = float(train)
    else:
        train_total = float(_matrix(train, "train").sum(dtype=np.float64))
    test_total = float(T.sum(dtype=np.float64))
    if train_total <= 0:
        msg = f"the train part's total must be positive, got {train_total:g}."
        raise ValueError(msg)
    ratio = test_total / train_total
    sq = nll = 0.0
    for lo in range(0, T.shape[0], _ROW_CHUNK):
        hi = min(lo + _ROW_CHUNK, T.shape[0])
        y_hat, t = _dense_rows(Y, lo, hi), _dense_rows(T, lo, hi)
        sq += float(np.sum((_log_normalized(y_hat) - _log_normalized(t)) ** 2))
        mu = y_hat * ratio
        # (prediction, observed) as in task_denoising's metric; Open Problems v1 passed the two swapped
        nll += float(np.sum(mu - t * np.log(mu + POISSON_EPS)))
    n = T.shape[0] * T.shape[1]
    return {"mse": sq / n, "poisson": nll / n}
