"""Array helpers shared by the model and the evaluation tools: input checks and chunked statistics."""

from __future__ import annotations

import os
import sys
import warnings
from typing import TYPE_CHECKING

import numpy as np
from scipy import sparse

if TYPE_CHECKING:
    from anndata import AnnData

#: Rows per chunk when a dense matrix is scanned; keeps float64 temporaries near 100 MB.
_ROW_CHUNK = 4096


def get_matrix(adata: AnnData, layer: str | None):
    """Return ``adata.X`` or ``adata.layers[layer]`` without copying; ``ValueError`` on an unknown layer."""
    if layer is None:
        X = adata.X
        if X is None:
            msg = "adata.X is empty (None); pass the layer holding raw counts with `layer=`."
            raise ValueError(msg)
        return X
    if layer not in adata.layers:
        available = ", ".join(map(repr, adata.layers.keys())) or "none"
        msg = f"layer {layer!r} not found in adata.layers (available: {available}); pass `layer=None` to use adata.X."
        raise ValueError(msg)
    return adata.layers[layer]


def is_dask(X) -> bool:
    """Whether ``X`` is a dask array (without importing dask)."""
    return type(X).__module__.startswith("dask.")


def as_supported(X):
    """Return a numpy array or a CSR/CSC matrix view of ``X``; raise on anything else."""
    if sparse.issparse(X):
        if X.format not in ("csr", "csc"):
            X = X.tocsr()
        return X
    if isinstance(X, np.ndarray):
        return X
    if hasattr(X, "to_memory"):  # anndata backed sparse datasets
        return X.to_memory()
    if is_dask(X):
        return X
    return np.asarray(X)


def to_memory(X):
    """Compute a dask array and return it as numpy or CSR/CSC (what the in-memory code accepts).

    Examples
    --------
    >>> import dask.array as da
    >>> from scdeepimpute.dask import to_memory
    >>> to_memory(da.ones((4, 3), chunks=2)).shape
    (4, 3)
    """
    value = X.compute() if is_dask(X) else X
    if hasattr(value, "get"):  # cupy
        value = value.get()
    if hasattr(value, "to_scipy_sparse"):  # pydata/sparse
        value = value.to_scipy_sparse()
    return as_supported(value)


def _values(X) -> np.ndarray:
    """Return the stored values of ``X``: ``.data`` for sparse input, the whole array otherwise."""
    return X.data if sparse.issparse(X) else X


def check_counts(X, *, strict: bool = False, what: str = "input") -> bool:
    """Check that ``X`` holds raw counts.

    Raises ``ValueError`` for an empty matrix, negative values, NaN or infinity. Non-integer values
    (for example log-normalised data passed as counts) give a warning, or a ``ValueError`` when
    ``strict``. Returns whether all values are integers.
    """
    if X.shape[0] == 0 or X.shape[1] == 0:
        msg = f"{what} is empty (shape {X.shape}); DeepImpute needs cells x genes raw counts."
        raise ValueError(msg)
    if is_dask(X):
        return True  # checked blockwise where it is read
    all_integer = True
    n = X.shape[0]
    for start in range(0, n, _ROW_CHUNK):
        block = X[start : start + _ROW_CHUNK]
        vals = _values(block)
        if vals.size == 0:
            continue
        if not np.all(np.isfinite(vals)):
            msg = (
                f"{what} contains NaN or infinite values; impute needs finite raw counts (remove or fix those entries)."
            )
            raise ValueError(msg)
        if np.any(vals < 0):
            msg = (
                f"{what} contains negative values (min {vals.min():g}); DeepImpute needs raw, non-negative counts. "
                "Scaled or centred data cannot be imputed: pass the layer with raw counts via `layer=`."
            )
            raise ValueError(msg)
        if all_integer and not np.issubdtype(vals.dtype, np.integer) and np.any(np.mod(vals, 1) != 0):
            all_integer = False
    if not all_integer:
        vmax = float(_values(X).max()) if _values(X).size else 0.0
        hint = " The largest value is small, so this looks log-transformed." if vmax < 20 else ""
        msg = (
            f"{what} contains non-integer values.{hint} DeepImpute expects raw counts (it applies log1p itself); "
            "pass the layer with raw counts via `layer=` (ambient-corrected, non-integer counts are fine: "
            "ignore this warning; `check_counts=True` turns it into an error)."
        )
        if strict:
            raise ValueError(msg)
        warnings.warn(msg, UserWarning, stacklevel=_caller_outside_package())
    return all_integer


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _caller_outside_package() -> int:
    """``stacklevel`` for a warning raised in the caller: the first frame outside this package (the user's call)."""
    frame, level = sys._getframe(2), 2  # 1 is the function that warns, 2 its caller
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    return level


def gene_stats(X, *, ddof: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-column mean, variance and fraction of non-zero entries (float64), dense or sparse, in one pass."""
    n = X.shape[0]
    s = np.zeros(X.shape[1], dtype=np.float64)
    ss = np.zeros(X.shape[1], dtype=np.float64)
    nonzero = np.zeros(X.shape[1], dtype=np.float64)
    for start in range(0, n, _ROW_CHUNK):
        block = X[start : start + _ROW_CHUNK]
        if sparse.issparse(block):
            block = block.tocsr().astype(np.float64)
            s += np.asarray(block.sum(axis=0)).ravel()
            ss += np.asarray(block.multiply(block).sum(axis=0)).ravel()
        else:
            block = np.asarray(block, dtype=np.float64)
            s += block.sum(axis=0)
            ss += np.einsum("ij,ij->j", block, block)
        nonzero += np.asarray((block != 0).sum(axis=0), dtype=np.float64).ravel()
    mean = s / n
    var = (ss - n * mean**2) / max(n - ddof, 1)
    return mean, np.maximum(var, 0.0), nonzero / max(n, 1)


def mean_var(X, *, ddof: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and variance (float64), for dense or sparse ``X``, in row chunks."""
    mean, var, _ = gene_stats(X, ddof=ddof)
    return mean, var


def dense_rows(X, rows=None, cols=None, dtype=np.float32) -> np.ndarray:
    """Dense ``X[rows][:, cols]`` as ``dtype``; only the requested part is densified."""
    sub = X if rows is None else X[rows]
    if cols is not None:
        sub = sub[:, cols]
    if sparse.issparse(sub):
        return sub.toarray().astype(dtype, copy=False)
    return np.asarray(sub, dtype=dtype)


def check_random_state(random_state) -> np.random.Generator:
    """Return a numpy ``Generator`` from an int seed, a ``Generator`` or ``None``."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(2**31 - 1))
    return np.random.default_rng(random_state)


def max_value(X) -> float:
    """Largest value of a dense or sparse matrix (0 when empty)."""
    if sparse.issparse(X):
        return float(X.max()) if X.nnz else 0.0
    return float(np.max(X)) if X.size else 0.0


def training_cells(n: int, train_size, rng: np.random.Generator) -> np.ndarray:
    """Choose the training cells: all ``n``, or ``train_size`` of them (a fraction or number), without replacement."""
    if train_size is None:
        return np.arange(n)
    if isinstance(train_size, float | np.floating) and 0 < train_size <= 1:
        k = round(train_size * n)
    elif isinstance(train_size, int | np.integer) and train_size >= 1:
        k = min(int(train_size), n)
    else:
        msg = f"train_size must be a fraction in (0, 1] or a number of cells, got {train_size!r}."
        raise ValueError(msg)
    return np.sort(rng.choice(n, size=k, replace=False))
