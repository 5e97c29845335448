"""Imputation methods with one signature, ``f(adata) -> counts array``, for :func:`compare`.

Each takes an AnnData whose ``X`` holds (masked) counts and returns a dense float32 array of the same
shape on the counts scale. The input is never modified.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
from scipy import sparse

if TYPE_CHECKING:
    from anndata import AnnData


def _counts(adata: AnnData) -> np.ndarray | sparse.csr_matrix:
    X = adata.X
    return sparse.csr_matrix(X, dtype=np.float32) if sparse.issparse(X) else np.asarray(X, dtype=np.float32)


def impute_none(adata: AnnData) -> np.ndarray:
    """No imputation: the counts themselves.

    Examples
    --------
    >>> import numpy as np, anndata as ad
    >>> from scdeepimpute.tl import impute_none
    >>> impute_none(ad.AnnData(np.eye(2, dtype=np.float32))).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    X = _counts(adata)
    return X.toarray() if sparse.issparse(X) else X.copy()


def impute_nzmean(adata: AnnData) -> np.ndarray:
    """Replace every zero by the mean of the gene's non-zero values (0 for all-zero genes).

    Examples
    --------
    >>> import numpy as np, anndata as ad
    >>> from scdeepimpute.tl import impute_nzmean
    >>> impute_nzmean(ad.AnnData(np.array([[0, 2], [4, 0], [2, 0]], dtype=np.float32))).tolist()
    [[3.0, 2.0], [4.0, 2.0], [2.0, 2.0]]
    """
    X = impute_none(adata)
    nnz = np.count_nonzero(X, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        nzmean = np.where(nnz > 0, X.sum(axis=0) / nnz, 0.0).astype(np.float32)
    return np.where(X == 0, nzmean[None, :], X)


def impute_knn(adata: AnnData, *, n_neighbors: int = 15, n_pcs: int = 50, random_state: int = 0) -> np.ndarray:
    """Smooth by k nearest neighbours (kNN): each cell's counts averaged over itself and its neighbours.

    Neighbours come from :func:`scanpy.pp.neighbors` (exact, ``n_neighbors`` including the cell itself) on
    the PCA of ``normalize_total`` + ``log1p`` data; the raw counts of those cells are averaged with equal
    weights. All entries are smoothed, not only zeros.

    Examples
    --------
    >>> import scdeepimpute as sdi
    >>> adata = sdi.datasets.simulate(n_obs=100, n_vars=200, random_state=0)
    >>> sdi.tl.impute_knn(adata, n_neighbors=5).shape
    (100, 200)
    """
    import anndata as ad
    import scanpy as sc

    X = _counts(adata)
    work = ad.AnnData(X.copy())
    sc.pp.normalize_total(work, target_sum=1e4)
    sc.pp.log1p(work)
    n_comps = int(max(2, min(n_pcs, work.n_vars - 1, work.n_obs - 1)))
    sc.pp.pca(work, n_comps=n_comps, svd_solver="arpack", random_state=random_state)
    # only the kNN sets are used; method="gauss" skips UMAP's (numba-compiled) connectivities, same neighbours
    sc.pp.neighbors(work, n_neighbors=n_neighbors, transformer="sklearn", method="gauss", random_state=random_state)
    A = sparse.csr_matrix(work.obsp["distances"], dtype=np.float32, copy=True)
    A.data[:] = 1.0  # the graph's pattern: n_neighbors - 1 neighbours per cell
    A.setdiag(1.0)  # plus the cell itself
    A = sparse.csr_matrix(A.multiply(1.0 / np.asarray(A.sum(axis=1))))
    out = A @ X
    return np.asarray(out.toarray() if sparse.issparse(out) else out, dtype=np.float32)


def impute_magic(adata: AnnData, *, random_state: int = 0, **kwargs) -> np.ndarray:
    """MAGIC :cite:p:`vanDijk2018` through :func:`scanpy.external.pp.magic` (needs ``magic-impute``).

    Counts are scaled to the median library size and square-rooted (MAGIC's recommended input); MAGIC
    runs on all genes (``solver="exact"``); the output is squared and scaled back to each cell's library
    size, so it is on the counts scale. Extra keywords go to ``magic``.

    Examples
    --------
    >>> import scdeepimpute as sdi
    >>> adata = sdi.datasets.simulate(n_obs=100, n_vars=200, random_state=0)
    >>> sdi.tl.impute_magic(adata).shape  # doctest: +SKIP
    (100, 200)
    """
    import anndata as ad
    import scanpy.external as sce

    try:
        import magic  # noqa: F401
    except ImportError as e:
        e.add_note("impute_magic needs the MAGIC package: pip install magic-impute (or scdeepimpute[magic]).")
        raise
    X = impute_none(adata)
    lib = X.sum(axis=1, keepdims=True)
    target = float(np.median(lib[lib > 0])) if np.any(lib > 0) else 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(lib > 0, target / lib, 0.0)
    work = ad.AnnData(np.sqrt(X * scale))
    out = sce.pp.magic(work, name_list="all_genes", random_state=random_state, copy=True, **kwargs)
    Y = np.clip(np.asarray(out.X, dtype=np.float64), 0, None) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        Y = np.where(scale > 0, Y / scale, 0.0)
    return Y.astype(np.float32)


def impute_deepimpute(
    adata: AnnData,
    *,
    output: Literal["imputed", "detected", "both"] = "imputed",
    random_state: int = 0,
    **kwargs,
) -> np.ndarray | dict[str, np.ndarray]:
    """DeepImpute through :func:`scdeepimpute.pp.deepimpute` on a copy; extra keywords go to it.

    ``output="imputed"`` returns ``layers['imputed']`` (zeros filled with the expected value; the layer
    meant for clustering and DE), ``"detected"`` returns ``layers['imputed_detected']`` (zeros filled with
    the value if detected: the paper's semantics, the estimate of a masked count; falls back to
    ``'imputed'`` for models without a detection head) and ``"both"`` a dict of the two from one fit
    (:func:`compare` reports them as ``"<name>_imputed"`` and ``"<name>_detected"``).

    Examples
    --------
    >>> import scdeepimpute as sdi
    >>> adata = sdi.datasets.simulate(n_obs=100, n_vars=200, random_state=0)
    >>> sdi.tl.impute_deepimpute(adata).shape  # doctest: +SKIP
    (100, 200)
    """
    import anndata as ad

    from .. import pp
    from .._fills import default_fills, output_names

    if output not in ("imputed", "detected", "both"):
        msg = f"`output` must be 'imputed', 'detected' or 'both', got {output!r}."
        raise ValueError(msg)
    work = ad.AnnData(_counts(adata))
    work.obs_names = adata.obs_names
    work.var_names = adata.var_names
    pp.deepimpute(work, key_added="imputed", random_state=random_state, **kwargs)
    # "imputed" is pp.deepimpute's first layer; the detected fill has a layer of its own only with two heads
    layer_of = output_names(default_fills(work.uns["imputed"]["params"]["detection_head"]), "imputed")
    layers = {"imputed": "imputed", "detected": layer_of["detected"]}

    def _get(key: str) -> np.ndarray:
        Y = work.layers[layers[key]]
        if hasattr(Y, "compute"):
            Y = Y.compute()
        return np.asarray(Y.toarray() if sparse.issparse(Y) else Y, dtype=np.float32)

    if output == "both":
        return {"imputed": _get("imputed"), "detected": _get("detected")}
    return _get(output)


def _magic_available() -> bool:
    try:
        import magic  # noqa: F401
    except ImportError:
        return False
    return True


#: Built-in methods by name.
METHODS = {
    "none": impute_none,
    "nzmean": impute_nzmean,
    "knn": impute_knn,
    "magic": impute_magic,
    "deepimpute": impute_deepimpute,
}
