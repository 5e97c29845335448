"""Out-of-core and distributed DeepImpute with Dask (needs the ``dask`` extra: ``pip install "scdeepimpute[dask]"``).

:func:`scdeepimpute.pp.deepimpute` itself accepts an AnnData whose ``X`` (or ``layer``) is a dask array
chunked along cells, and then writes *lazy* dask layers; this module has the pieces it uses, for finer
control:

* :func:`read_lazy` opens an ``.h5ad``/``.zarr`` with ``X`` and layers as dask arrays;
* :func:`fit` reads only the ``train_size`` training cells into memory and fits a
  :class:`~scdeepimpute.DeepImpute` on them (gene statistics and correlations come from those cells,
  as in the in-memory ``fit(train_size=...)``);
* :func:`impute` returns lazy ``map_blocks`` outputs (the fitted model's ``impute`` on each row chunk);
* :func:`impute_to_zarr` / :func:`store` stream the outputs to disk in one pass, in bounded memory;
* :func:`output_names` names the layer of each fill, :func:`to_memory` computes a dask array.

Memory: the training cells, plus a few row chunks per worker thread (each chunk densified to
``chunk x n_genes`` float32, a few copies). Runs on any dask scheduler, including a
``dask.distributed`` cluster: the model is shipped once as bytes and loaded once per worker process.
Importing this module does not import dask or zarr; its functions do, when called.

Examples
--------
>>> import scdeepimpute as sdi
>>> import scdeepimpute.dask as sdd
>>> adata = sdd.read_lazy("big.zarr", chunk_size=10_000)  # doctest: +SKIP
>>> model = sdd.fit(sdi.DeepImpute(), adata, train_size=50_000)  # doctest: +SKIP
>>> sdd.impute_to_zarr(model, adata, "imputed.zarr")  # doctest: +SKIP
"""

from __future__ import annotations

from .._fills import output_names
from .._utils import to_memory
from ._fit_impute import fit, impute, impute_to_zarr
from ._io import read_lazy, store

__all__ = ["fit", "impute", "impute_to_zarr", "output_names", "read_lazy", "store", "to_memory"]
