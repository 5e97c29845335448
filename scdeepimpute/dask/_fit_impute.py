"""Out-of-core DeepImpute on dask arrays: train on cells read into memory, impute lazily block by block.

How the work is split (see :mod:`scdeepimpute.dask`):

* **Training** needs random access to its cells every epoch, so the ``train_size`` training cells
  (all cells when ``train_size=None``) are read into memory: ``X[cells]`` is computed block by block
  (each block is read, subset and dropped), then :meth:`~scdeepimpute.DeepImpute.fit` runs on that in-memory
  subsample. Gene statistics (mean, variance, VMR), the gene-gene correlations behind predictor
  selection, the library-size centring and the overflow guard are all computed on those training
  cells, exactly as the in-memory ``fit(..., train_size=...)`` computes them on its subsample.
* **Prediction** works block by block: ``map_blocks`` over row chunks calls the fitted model's
  :meth:`~scdeepimpute.DeepImpute.impute` on each block. The network is row-independent; a model with a
  neighbourhood (``neighbors > 0`` and a non-zero ``neighbor_weight_``) searches each cell's neighbours
  *within its row chunk* (PCA and kNN of that block), so results depend on the chunking and equal the
  in-memory run only for one chunk; chunks of a few thousand cells keep neighbourhoods meaningful. The model
  travels in the graph as one small object (its saved weights and config as bytes, serialised only when the
  graph is pickled, e.g. for ``dask.distributed``), and each process loads it once and caches it.
"""

from __future__ import annotations

import tempfile
import threading
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .._fills import Fill, Policy, default_fills, output_names
from .._input import counts_and_names
from .._model import DeepImpute
from ._io import open_zarr_group, store

if TYPE_CHECKING:
    import dask.array as da
    from anndata import AnnData
#: Fitted models loaded in this process, by token (a few at most).
_MODELS: OrderedDict[str, DeepImpute] = OrderedDict()
_MODELS_MAX = 4
_MODELS_LOCK = threading.Lock()


# --------------------------------------------------------------------------- fit
def fit(
    model: DeepImpute,
    data: AnnData | da.Array,
    *,
    layer: str | None = None,
    var_names: Sequence[str] | None = None,
    genes: Sequence[str] | None = None,
    train_size: float | int | None = None,
    check_counts: bool = False,
    progress: bool | None = None,
) -> DeepImpute:
    """Fit ``model`` on dask-backed counts by reading its training cells into memory.

    :meth:`~scdeepimpute.DeepImpute.fit` draws the ``train_size`` cells, reads only those into memory and fits on
    them; everything the fit computes (gene statistics, correlations, library sizes) comes from those
    cells, and the result is identical to ``model.fit`` on the same data in memory.

    Parameters
    ----------
    model
        An unfitted (or to be refitted) :class:`~scdeepimpute.DeepImpute`.
    data
        An AnnData whose ``X``/``layer`` is a dask array, or a dask array; cells x genes, chunked
        along cells only.
    layer, var_names, genes, check_counts, progress
        As in :meth:`~scdeepimpute.DeepImpute.fit`; ``check_counts`` checks the training cells.
    train_size
        Cells to train on (fraction or number); they must fit in memory. ``None``: all cells.

    Returns
    -------
    The fitted ``model``.

    Examples
    --------
    >>> import scdeepimpute as sdi, scdeepimpute.dask as sdd
    >>> lazy = sdd.read_lazy("counts.zarr")  # doctest: +SKIP
    >>> model = sdd.fit(sdi.DeepImpute(), lazy, train_size=20_000)  # doctest: +SKIP
    """
    X, names = counts_and_names(data, layer=layer, var_names=var_names, lazy=True)
    return model.fit(
        X, var_names=names, genes=genes, train_size=train_size, check_counts=check_counts, progress=progress
    )


# --------------------------------------------------------------------------- predict
class _ModelRef:
    """A picklable reference to a fitted model, loaded once per process.

    In the process that made it, it holds the live model. Pickled (e.g. by ``dask.distributed``),
    it carries the saved weights and config as bytes; :meth:`get` then loads them once per process
    and caches the model by token.
    """

    def __init__(self, model: DeepImpute):
        self.token = uuid.uuid4().hex
        self._model: DeepImpute | None = model
        self._payload: dict[str, bytes] | None = None
        with _MODELS_LOCK:
            _remember(self.token, model)

    def payload(self) -> dict[str, bytes]:
        if self._payload is None:
            with tempfile.TemporaryDirectory(prefix="scdeepimpute-") as tmp:
                self._model.save(tmp)
                self._payload = {p.name: p.read_bytes() for p in Path(tmp).iterdir()}
        return self._payload

    def __getstate__(self):
        return {"token": self.token, "payload": self.payload()}

    def __setstate__(self, state):
        self.token, self._payload, self._model = state["token"], state["payload"], None

    def __dask_tokenize__(self):
        return self.token

    def get(self) -> DeepImpute:
        if self._model is not None:
            return self._model
        with _MODELS_LOCK:
            model = _MODELS.get(self.token)
            if model is None:
                with tempfile.TemporaryDirectory(prefix="scdeepimpute-") as tmp:
                    for name, content in self._payload.items():
                        (Path(tmp) / name).write_bytes(content)
                    model = DeepImpute.load(tmp)
                _remember(self.token, model)
        return model


def _remember(token: str, model: DeepImpute) -> None:
    """Cache ``model`` under ``token`` (call with ``_MODELS_LOCK`` held); keeps the latest few."""
    _MODELS[token] = model
    _MODELS.move_to_end(token)
    while len(_MODELS) > _MODELS_MAX:
        _MODELS.popitem(last=False)


class _BlockJob:
    """Everything a block needs besides its rows: the model, the genes and the options (one graph node)."""

    def __init__(self, ref: _ModelRef, var_names: pd.Index, policy: str, fills: tuple[str, ...], strict: bool):
        self.ref, self.var_names, self.policy, self.fills, self.strict = ref, var_names, policy, fills, strict

    def __dask_tokenize__(self):
        return (self.ref.token, self.policy, self.fills, self.strict, len(self.var_names))

    def __call__(self, block) -> np.ndarray:
        model = self.ref.get()
        if block.shape[0] == 0:
            return np.zeros((0, block.shape[1], len(self.fills)), np.float32)
        with warnings.catch_warnings():
            if not self.strict:
                warnings.simplefilter("ignore", UserWarning)  # non-integer counts: the training cells warned
            block, _ = counts_and_names(
                block, var_names=self.var_names, strict=self.strict, what="a block of the input"
            )
        out = model._impute_matrix(block, self.var_names, policy=self.policy, fills=self.fills)
        if len(self.fills) == 1:
            return out[self.fills[0]][:, :, None]
        return np.stack([out.pop(f) for f in self.fills], axis=-1)


def _impute_block(block, job: _BlockJob) -> np.ndarray:
    return job(block)


def impute(
    model: DeepImpute,
    data: AnnData | da.Array,
    *,
    layer: str | None = None,
    var_names: Sequence[str] | None = None,
    policy: Policy = "restore",
    fills: Sequence[Fill] | None = None,
    check_counts: bool = False,
) -> dict[str, da.Array]:
    """Lazy imputation of dask-backed counts: ``{fill: dask array}``, one ``map_blocks`` over row chunks.

    Each output has the input's row chunks and all genes in one column chunk (float32); a neighbourhood is
    searched within each row chunk (see the module notes). Nothing is
    computed here; ``.compute()``, ``dask.compute(*result.values())`` or :func:`store` run it. All
    fills come from one graph: compute or store them *together* to run the network once per block.

    Parameters
    ----------
    model
        A fitted :class:`~scdeepimpute.DeepImpute`; genes are aligned by name, as in its ``impute``.
    data
        An AnnData whose ``X``/``layer`` is a dask array, or a dask array; chunked along cells only.
    layer, var_names, policy
        As in :meth:`~scdeepimpute.DeepImpute.impute`.
    fills
        Fills to compute; ``None``: both with a detection head (``("expected", "detected")``), else ``("detected",)``.
    check_counts
        Raise (instead of ignoring) non-integer values found while imputing; negative, NaN or infinite
        values always raise when their block is computed.

    Returns
    -------
    ``{fill: lazy float32 array}`` with the input's shape.

    Examples
    --------
    >>> arrays = sdd.impute(model, lazy)  # doctest: +SKIP
    >>> arrays["expected"][:100].compute()  # doctest: +SKIP
    """
    import dask
    import dask.array as da

    model._check_fitted()
    X, names = counts_and_names(data, layer=layer, var_names=var_names, lazy=True)
    fills = default_fills(model.params["detection_head"]) if fills is None else tuple(fills)
    # validate options and gene alignment now (on zero rows: no values to check) rather than inside the first task
    model._impute_matrix(np.zeros((0, X.shape[1]), np.float32), names, policy=policy, fills=fills)
    if names.equals(model.var_names_):
        names = model.var_names_
    ref = _ModelRef(model)
    job = _BlockJob(ref, names, policy, fills, check_counts)
    job_node = dask.delayed(job, name=f"deepimpute-model-{ref.token}", pure=True)
    stacked = da.map_blocks(
        _impute_block,
        X,
        job_node,
        dtype=np.float32,
        chunks=(X.chunks[0], (X.shape[1],), (len(fills),)),
        new_axis=2,
        meta=np.empty((0, 0, 0), dtype=np.float32),
        name=f"deepimpute-{ref.token}",
    )
    return {f: stacked[:, :, i] for i, f in enumerate(fills)}


def impute_to_zarr(
    model: DeepImpute,
    data: AnnData | da.Array,
    store_path,
    *,
    layer: str | None = None,
    var_names: Sequence[str] | None = None,
    key_added: str = "imputed",
    policy: Policy = "restore",
    fills: Sequence[Fill] | None = None,
    check_counts: bool = False,
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, da.Array]:
    """Impute dask-backed counts and stream the result into a zarr store, never holding it in memory.

    Writes one float32 array per fill into ``store_path`` (a path or a :class:`zarr.Group`), named like
    :func:`scdeepimpute.pp.deepimpute`'s layers: ``key_added`` (the model's default fill) and, with a
    detection head, ``f"{key_added}_detected"``. Both are computed in one pass.

    Parameters
    ----------
    model
        A fitted :class:`~scdeepimpute.DeepImpute` (e.g. from :func:`fit`).
    data
        An AnnData whose ``X``/``layer`` is a dask array, or a dask array; chunked along cells only.
    store_path
        Zarr group (path or group) to write into; use ``"out.zarr/layers"`` of an AnnData zarr store
        to add the results as layers.
    layer, var_names, policy, fills, check_counts
        As in :func:`impute`.
    key_added
        Name of the first array; the second gets ``_detected`` appended.
    overwrite
        Replace existing arrays of the same names.
    progress
        Show dask's progress bar.

    Returns
    -------
    ``{name: dask array}`` reading the written arrays back lazily.

    Examples
    --------
    >>> lazy = sdd.read_lazy("counts.zarr")  # doctest: +SKIP
    >>> sdd.impute_to_zarr(model, lazy, "counts.zarr/layers")  # doctest: +SKIP
    >>> anndata.read_zarr("counts.zarr").layers["imputed"]  # doctest: +SKIP
    """
    import dask.array as da

    lazy = impute(model, data, layer=layer, var_names=var_names, policy=policy, fills=fills, check_counts=check_counts)
    named = {output_names(lazy, key_added)[f]: arr for f, arr in lazy.items()}
    group = open_zarr_group(Path(store_path)) if isinstance(store_path, str | Path) else store_path
    store(named, group, overwrite=overwrite, progress=progress)
    return {name: da.from_zarr(group[name]) for name in named}
