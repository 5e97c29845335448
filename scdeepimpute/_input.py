"""The one path every entry point takes from user data to a checked counts matrix and its gene names.

:meth:`DeepImpute.fit <scdeepimpute.DeepImpute.fit>`, ``predict`` and ``impute``, :func:`scdeepimpute.pp.deepimpute`,
the out-of-core functions of :mod:`scdeepimpute.dask` and the command line (through them) all call
:func:`counts_and_names`, so every entry point accepts and rejects the same values, and checks them once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import sparse

from ._utils import as_supported, check_counts, get_matrix, is_dask


def counts_and_names(
    data,
    *,
    layer: str | None = None,
    var_names=None,
    lazy: bool = False,
    strict: bool = False,
    what: str = "input",
) -> tuple[object, pd.Index]:
    """Return the counts matrix of ``data`` and its gene names (as strings), its values checked.

    Parameters
    ----------
    data
        An AnnData (its ``X`` or ``layer``) or a matrix (numpy, scipy sparse or dask), cells x genes.
    layer
        Layer of an AnnData to read; ``None`` reads ``X``.
    var_names
        Gene names of a matrix; ``None`` numbers the columns ``"0"``, ``"1"``, ... (ignored for an AnnData).
    lazy
        ``False``: a numpy array or a CSR matrix (CSC and other sparse formats become CSR, once: every consumer
        slices rows; a dask array passes through, for the fit to read its training cells). ``True``: the data
        must be a 2-d, non-empty dask array chunked along cells only (``TypeError`` / ``ValueError`` otherwise),
        kept lazy.
    strict
        The values of an in-memory matrix are checked (:func:`~scdeepimpute._utils.check_counts`): ``ValueError``
        when empty, negative, NaN or infinite, a warning for non-integer values, or a ``ValueError`` with
        ``strict`` (the entry points' ``check_counts``). Dask values are checked where they are read (the
        training cells, each block).
    what
        How the messages name the data.
    """
    from anndata import AnnData

    X = get_matrix(data, layer) if isinstance(data, AnnData) else data
    if lazy:
        _check_lazy(X)
    else:
        X = as_supported(X)
        if sparse.issparse(X) and X.format == "csc":
            X = X.tocsr()  # a copy of the non-zeros, freed with X: CSC rows would be gathered on every slice
    if isinstance(data, AnnData):
        names = pd.Index(data.var_names.astype(str))
    else:
        names = pd.Index(np.arange(X.shape[1]).astype(str)) if var_names is None else pd.Index(var_names).astype(str)
    if len(names) != X.shape[1]:
        msg = f"var_names has {len(names)} entries but the matrix has {X.shape[1]} columns."
        raise ValueError(msg)
    if lazy and (X.shape[0] == 0 or X.shape[1] == 0):
        msg = f"input is empty (shape {X.shape}); DeepImpute needs cells x genes raw counts."
        raise ValueError(msg)
    if not lazy:
        check_counts(X, strict=strict, what=what)
    return X, names


def _check_lazy(X) -> None:
    if not is_dask(X):
        msg = f"expected a dask array, got {type(X).__name__}; in-memory data go to DeepImpute or pp.deepimpute."
        raise TypeError(msg)
    if X.ndim != 2:
        msg = f"expected a 2-d cells x genes array, got {X.ndim} dimensions."
        raise ValueError(msg)
    if X.numblocks[1] != 1:
        msg = (
            f"the dask array is chunked along genes ({X.numblocks[1]} column chunks); DeepImpute needs whole rows: "
            "chunk along cells only, e.g. X.rechunk({1: -1}) or read_elem_lazy(..., chunks=(n_cells, n_vars))."
        )
        raise ValueError(msg)


def gene_indices(names: pd.Index, genes: Sequence[str]) -> np.ndarray:
    """Column of each of ``genes`` (names, duplicates dropped) in ``names``; ``ValueError`` for unknown names."""
    genes = pd.Index(np.asarray(genes).astype(str))
    missing = genes[~genes.isin(names)]
    if len(missing):
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        msg = f"{len(missing)} of the genes in `genes=` are not in var_names: {shown}."
        raise ValueError(msg)
    if not names.is_unique:
        msg = "var_names are not unique; call adata.var_names_make_unique() before selecting genes by name."
        raise ValueError(msg)
    return names.get_indexer(genes.unique())
