"""The small real dataset shipped inside the package (no download needed)."""

from __future__ import annotations

from importlib.resources import files
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from anndata import AnnData


def example() -> AnnData:
    """2100 PBMCs x 886 genes of raw 10x UMI counts with 8 cell-type labels.

    A slice of the 10x Genomics PBMC 4k dataset (the 2100-cell selection of scDeepCluster/scAL),
    keeping genes detected in at least 5% of cells. Counts are in ``X`` (CSR), labels in
    ``obs['cell_type']``. Provenance and licence: ``scdeepimpute/datasets/data/PROVENANCE.md``.

    Returns
    -------
    A new :class:`~anndata.AnnData` on every call.

    Examples
    --------
    >>> import scdeepimpute as sdi
    >>> adata = sdi.datasets.example()
    >>> adata.shape
    (2100, 886)
    """
    import anndata as ad

    with files("scdeepimpute.datasets").joinpath("data/pbmc4k_example.h5ad").open("rb") as fh:
        adata = ad.read_h5ad(fh)
    adata.X = adata.X.astype("float32")
    return adata
