"""The paper's clustering benchmark: Seurat-like scanpy pipeline, Leiden, ARI/AMI/FMI/silhouette."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from sklearn import metrics

from .. import _logging as logg
from .._utils import get_matrix, is_dask

if TYPE_CHECKING:
    from collections.abc import Sequence

    from anndata import AnnData

#: Fewer highly variable genes than this under Seurat's cut-offs triggers the top-2000 fallback.
_MIN_HVG = 50


def _name(layer: str | None, key_added: str | None) -> str:
    if key_added is not None:
        return key_added
    return "X" if layer is None else layer


def _work_copy(adata: AnnData, layer: str | None) -> AnnData:
    """Make a bare AnnData holding a float32 copy of ``layer`` (dense or CSR), with the same obs names."""
    import anndata as ad
    from scipy import sparse

    X = get_matrix(adata, layer)
    if is_dask(X):
        X = X.compute()
    X = sparse.csr_matrix(X, dtype=np.float32) if sparse.issparse(X) else np.array(X, dtype=np.float32)
    if np.any((X.data if sparse.issparse(X) else X) < 0):
        X = X.maximum(0) if sparse.issparse(X) else np.clip(X, 0, None)
    work = ad.AnnData(X)
    work.obs_names = adata.obs_names
    work.var_names = adata.var_names
    return work


def _seurat_embedding(
    work: AnnData, *, n_top_genes: int | None, n_pcs: int, n_neighbors: int, random_state: int
) -> dict[str, object]:
    """``normalize_total`` → ``log1p`` → HVG → ``scale`` → PCA → neighbours → UMAP, in place on ``work``."""
    import scanpy as sc
    from scipy import sparse

    sc.pp.normalize_total(work, target_sum=1e4)
    sc.pp.log1p(work)
    flavor_used = "seurat cut-offs"
    if n_top_genes is None:
        sc.pp.highly_variable_genes(work, min_mean=0.0125, max_mean=3, min_disp=0.5)
        if work.var["highly_variable"].sum() < _MIN_HVG:
            flavor_used = "top 2000 by dispersion (fallback)"
            sc.pp.highly_variable_genes(work, n_top_genes=min(2000, work.n_vars))
    else:
        flavor_used = f"top {n_top_genes} by dispersion"
        sc.pp.highly_variable_genes(work, n_top_genes=min(n_top_genes, work.n_vars))
    n_hvg = int(work.var["highly_variable"].sum())
    work._inplace_subset_var(work.var["highly_variable"].to_numpy())
    if sparse.issparse(work.X):
        work.X = work.X.toarray()  # scaling centres the data, which densifies it anyway
    sc.pp.scale(work, max_value=10)
    n_comps = int(max(2, min(n_pcs, work.n_vars - 1, work.n_obs - 1)))
    sc.pp.pca(work, n_comps=n_comps, svd_solver="arpack", random_state=random_state)
    sc.pp.neighbors(work, n_neighbors=n_neighbors, transformer="sklearn", random_state=random_state)
    sc.tl.umap(work, random_state=random_state)
    return {"n_hvg": n_hvg, "hvg": flavor_used, "n_pcs": n_comps}


def _leiden_n_clusters(
    work: AnnData, target: int, *, random_state: int, max_iter: int = 30
) -> tuple[float, np.ndarray, list[tuple[float, int]]]:
    """Bisect the Leiden resolution until the number of clusters equals ``target``.

    Starts at 1, doubles while there are too few clusters, then bisects. Returns the resolution, the
    labels and the trace; without an exact match, the closest count (smaller resolution on ties).
    """
    trace: list[tuple[float, int]] = []
    labels_at: dict[float, np.ndarray] = {}
    lo, hi, res = 0.0, None, 1.0
    for _ in range(max_iter):
        labels = _leiden(work, res, random_state)
        n = int(np.unique(labels).size)
        trace.append((res, n))
        labels_at[res] = labels
        if n == target:
            break
        if n < target:
            lo = res
            res = res * 2 if hi is None else (lo + hi) / 2
        else:
            hi = res
            res = (lo + hi) / 2
        if hi is not None and hi - lo < 1e-4:
            break
    best = min(trace, key=lambda t: (abs(t[1] - target), t[0]))
    return best[0], labels_at[best[0]], trace


def _leiden(work: AnnData, resolution: float, random_state: int) -> np.ndarray:
    import scanpy as sc

    sc.tl.leiden(
        work,
        resolution=resolution,
        random_state=random_state,
        flavor="igraph",
        n_iterations=2,
        directed=False,
        key_added="_leiden",
    )
    return work.obs["_leiden"].to_numpy()


def cluster(  # noqa: PLR0913
    adata: AnnData,
    *,
    layer: str | None = None,
    labels_key: str | None = None,
    n_clusters: int | None = None,
    resolution: float | None = None,
    n_top_genes: int | None = None,
    n_pcs: int = 50,
    n_neighbors: int = 15,
    random_state: int = 0,
    key_added: str | None = None,
    copy: bool = False,
) -> AnnData | None:
    """Cluster one layer with the Seurat-like scanpy pipeline of the paper (Figs. 4-5).

    On a copy of ``layer`` (counts scale; negatives clipped to 0): :func:`scanpy.pp.normalize_total`
    (1e4) → :func:`~scanpy.pp.log1p` → :func:`~scanpy.pp.highly_variable_genes` (Seurat cut-offs
    ``min_mean=0.0125, max_mean=3, min_disp=0.5``; if fewer than 50 genes pass, the top 2000 by
    dispersion) → :func:`~scanpy.pp.scale` (``max_value=10``) → :func:`~scanpy.pp.pca` →
    :func:`~scanpy.pp.neighbors` (exact kNN, ``transformer="sklearn"``) → :func:`~scanpy.tl.umap` →
    :func:`~scanpy.tl.leiden` (igraph flavour, 2 iterations).

    The Leiden resolution: ``resolution`` if given; otherwise bisected so that the number of clusters
    equals ``n_clusters`` (default: the number of categories in ``obs[labels_key]``). The search starts
    at 1, doubles while there are too few clusters, then bisects (at most 30 runs); without an exact
    match the closest count is kept. With neither, the resolution is 1.

    Parameters
    ----------
    adata
        Annotated data.
    layer
        Layer to cluster (counts scale); ``None`` uses ``X``.
    labels_key
        ``obs`` column with known labels; sets the target number of clusters.
    n_clusters
        Target number of clusters (overrides ``labels_key``).
    resolution
        Fixed Leiden resolution (no search).
    n_top_genes
        Use this many highly variable genes instead of Seurat's cut-offs.
    n_pcs
        Principal components (capped by the number of genes and cells).
    n_neighbors
        Neighbours for the kNN graph.
    random_state
        Seed for PCA, neighbours, UMAP and Leiden.
    key_added
        Suffix of the written keys; default the layer name (``"X"`` for ``X``).
    copy
        Return a copy instead of writing to ``adata``.

    Returns
    -------
    Returns ``None`` if ``copy=False``, else returns an ``AnnData`` object. Sets the following fields
    (``name`` = ``key_added`` or the layer name):

    ``adata.obs[f'leiden_{name}']`` : categorical
        Leiden clusters.
    ``adata.obsm[f'X_umap_{name}']``, ``adata.obsm[f'X_pca_{name}']`` : ndarray
        UMAP and PCA of that layer.
    ``adata.uns[f'cluster_{name}']`` : dict
        ``resolution``, ``n_clusters``, ``n_hvg``, the bisection ``trace`` and ``params``.

    Examples
    --------
    >>> import scdeepimpute as sdi
    >>> adata = sdi.datasets.simulate(n_obs=300, n_vars=1000, group_prob=[0.5, 0.5], random_state=0)
    >>> sdi.tl.cluster(adata, labels_key="group")
    >>> adata.obs["leiden_X"].nunique()
    2
    """
    import pandas as pd

    adata = adata.copy() if copy else adata
    name = _name(layer, key_added)
    start = logg.info(f"clustering {name!r} (Seurat-like pipeline + Leiden)")
    work = _work_copy(adata, layer)
    info = _seurat_embedding(
        work, n_top_genes=n_top_genes, n_pcs=n_pcs, n_neighbors=n_neighbors, random_state=random_state
    )
    target = n_clusters
    if target is None and labels_key is not None:
        target = int(pd.Series(adata.obs[labels_key]).nunique())
    trace: list[tuple[float, int]] = []
    if resolution is not None:
        res = float(resolution)
        labels = _leiden(work, res, random_state)
    elif target is not None:
        res, labels, trace = _leiden_n_clusters(work, int(target), random_state=random_state)
    else:
        res = 1.0
        labels = _leiden(work, res, random_state)
    cats = sorted(np.unique(labels), key=int)
    adata.obs[f"leiden_{name}"] = pd.Categorical(labels, categories=cats)
    adata.obsm[f"X_umap_{name}"] = work.obsm["X_umap"]
    adata.obsm[f"X_pca_{name}"] = work.obsm["X_pca"]
    params = {
        "layer": "X" if layer is None else layer,
        "n_pcs": info["n_pcs"],
        "n_neighbors": n_neighbors,
        "hvg": info["hvg"],
        "random_state": random_state,
    }
    if labels_key is not None:
        params["labels_key"] = labels_key
    if target is not None:
        params["n_clusters_target"] = int(target)
    adata.uns[f"cluster_{name}"] = {
        "resolution": res,
        "n_clusters": len(cats),
        "n_hvg": info["n_hvg"],
        "trace": np.asarray(trace, dtype=np.float64).reshape(-1, 2),
        "params": params,
    }
    logg.info(
        f"    finished: {len(cats)} clusters at resolution {res:.4g}",
        time=start,
        deep=f"added\n    'leiden_{name}' (adata.obs)\n    'X_umap_{name}', 'X_pca_{name}' (adata.obsm)",
    )
    return adata if copy else None


def clustering_metrics(labels: Sequence, clusters: Sequence, embedding: np.ndarray | None = None) -> dict[str, float]:
    """ARI, AMI, FMI of ``clusters`` against ``labels``, and silhouette of ``embedding`` by ``labels``.

    Thin wrappers of :func:`sklearn.metrics.adjusted_rand_score`,
    :func:`~sklearn.metrics.adjusted_mutual_info_score`, :func:`~sklearn.metrics.fowlkes_mallows_score`
    and :func:`~sklearn.metrics.silhouette_score` (Euclidean), as in the paper's scripts.

    Examples
    --------
    >>> from scdeepimpute.tl import clustering_metrics
    >>> clustering_metrics(["a", "a", "b", "b"], [1, 1, 0, 0])["ari"]
    1.0
    """
    labels = np.asarray(labels)
    clusters = np.asarray(clusters)
    out = {
        "ari": float(metrics.adjusted_rand_score(labels, clusters)),
        "ami": float(metrics.adjusted_mutual_info_score(labels, clusters)),
        "fmi": float(metrics.fowlkes_mallows_score(labels, clusters)),
    }
    if embedding is not None:
        out["silhouette"] = _silhouette(embedding, labels)
    return out


def _silhouette(embedding, labels: np.ndarray) -> float:
    """Euclidean silhouette of ``embedding`` by ``labels``; NaN where it is undefined (< 2 or n labels)."""
    n_labels = np.unique(labels).size
    ok = 2 <= n_labels <= len(labels) - 1
    return float(metrics.silhouette_score(np.asarray(embedding), labels)) if ok else float("nan")


def clustering_scores(
    adata: AnnData,
    *,
    labels_key: str,
    layer: str | None = None,
    key: str | None = None,
) -> dict[str, float]:
    """Score the clusters and UMAP written by :func:`cluster` against known labels.

    Parameters
    ----------
    adata
        Annotated data after :func:`cluster`.
    labels_key
        ``obs`` column with the known labels.
    layer, key
        Which run to score: ``key`` (its ``key_added``) or the layer name (``None`` = ``X``).

    Returns
    -------
    dict with ``ari``, ``ami``, ``fmi`` (Leiden vs labels), ``silhouette`` (UMAP by labels, the paper's)
    and ``silhouette_pca`` (PCA space by labels). A UMAP layout moves with the pipeline's seed: on the
    CellBench sets the UMAP silhouette of one dataset spreads by sd 0.03 over five seeds while the PCA
    one does not move (``benchmarks/RESULTS_accuracy.md``), so compare UMAP silhouettes
    over several seeds.

    Examples
    --------
    >>> import scdeepimpute as sdi
    >>> adata = sdi.datasets.simulate(n_obs=300, n_vars=1000, group_prob=[0.5, 0.5], random_state=0)
    >>> sdi.tl.cluster(adata, labels_key="group")
    >>> sorted(sdi.tl.clustering_scores(adata, labels_key="group"))
    ['ami', 'ari', 'fmi', 'silhouette', 'silhouette_pca']
    """
    name = _name(layer, key)
    ckey, ekey, pkey = f"leiden_{name}", f"X_umap_{name}", f"X_pca_{name}"
    if ckey not in adata.obs or ekey not in adata.obsm or pkey not in adata.obsm:
        msg = (
            f"no clustering named {name!r} (missing obs[{ckey!r}], obsm[{ekey!r}] or obsm[{pkey!r}]); "
            "run scdeepimpute.tl.cluster first."
        )
        raise KeyError(msg)
    labels = adata.obs[labels_key].to_numpy()
    out = clustering_metrics(labels, adata.obs[ckey].to_numpy(), adata.obsm[ekey])
    out["silhouette_pca"] = _silhouette(adata.obsm[pkey], labels)
    return out
