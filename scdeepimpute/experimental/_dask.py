"""Out-of-core DeepImpute on dask arrays: train on cells read into memory, impute lazily block by block.

How the work is split (see :mod:`scdeepimpute.experimental`):

* **Training** needs random access to its cells every epoch, so the ``train_size`` training cells
  (all cells when ``train_size=None``) are read into memory: ``X[cells]`` is computed block by block
  (each block is read, subset and dropped), then :meth:`~scdeepimpute.DeepImpute.fit` runs on that in-memory
  subsample. Gene statistics (mean, variance, VMR), the gene-gene correlations behind predictor
  selection, the library-size centring and the overflow guard are all computed on those training
  cells, exactly as the in-memory ``fit(..., train_size=...)`` computes them on its subsample.
* **Prediction** is row-independent: ``map_blocks`` over row chunks calls the fitted model's
  :meth:`~scdeepimpute.DeepImpute.impute` on each block. The model travels in the graph as one
  small object (its saved weights and config as bytes, serialised only when the graph is pickled,
  e.g. for ``dask.distributed``), and each process loads it once and caches it.
"""

from __future__ import annotations

import math
import tempfile
import threading
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .. import _logging as logg
from .._model import DeepImpute, Fill, Policy
from .._utils import as_supported, get_matrix, is_dask, to_memory
from .._utils import check_counts as _check_counts

if TYPE_CHECKING:
    import dask.array as da
    from anndata import AnnData

#: zarr/h5 chunks of streamed outputs hold about this many values (rows x genes), ~16 MB of float32.
_STORE_CHUNK_VALUES = 4_000_000

#: Fitted models loaded in this process, by token (a few at most).
_MODELS: OrderedDict[str, DeepImpute] = OrderedDict()
_MODELS_MAX = 4
_MODELS_LOCK = threading.Lock()


# --------------------------------------------------------------------------- inputs
def _dask_matrix_and_names(data, layer: str | None, var_names) -> tuple[da.Array, pd.Index]:
    """Return the 2-d dask array (chunked along cells only) and its gene names."""
    from anndata import AnnData

    if isinstance(data, AnnData):
        X, names = get_matrix(data, layer), pd.Index(data.var_names.astype(str))
    else:
        X = data
        names = pd.Index(np.arange(X.shape[1]).astype(str)) if var_names is None else pd.Index(var_names).astype(str)
    if not is_dask(X):
        msg = f"expected a dask array, got {type(X).__name__}; in-memory data go to DeepImpute or pp.deepimpute."
        raise TypeError(msg)
    if X.ndim != 2:
        msg = f"expected a 2-d cells x genes array, got {X.ndim} dimensions."
        raise ValueError(msg)
    if len(names) != X.shape[1]:
        msg = f"var_names has {len(names)} entries but the matrix has {X.shape[1]} columns."
        raise ValueError(msg)
    if X.numblocks[1] != 1:
        msg = (
            f"the dask array is chunked along genes ({X.numblocks[1]} column chunks); DeepImpute needs whole rows: "
            "chunk along cells only, e.g. X.rechunk({1: -1}) or read_elem_lazy(..., chunks=(n_cells, n_vars))."
        )
        raise ValueError(msg)
    if X.shape[0] == 0 or X.shape[1] == 0:
        msg = f"input is empty (shape {X.shape}); DeepImpute needs cells x genes raw counts."
        raise ValueError(msg)
    return X, names


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
    >>> import scdeepimpute as sdi, scdeepimpute.experimental as sdx
    >>> lazy = sdx.read_lazy("counts.zarr")  # doctest: +SKIP
    >>> model = sdx.fit(sdi.DeepImpute(), lazy, train_size=20_000)  # doctest: +SKIP
    """
    X, names = _dask_matrix_and_names(data, layer, var_names)
    return model.fit(X, var_names=names, genes=genes, train_size=train_size, check_counts=check_counts, progress=progress)


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
        block = as_supported(block)
        model = self.ref.get()
        if block.shape[0] == 0:
            return np.zeros((0, block.shape[1], len(self.fills)), np.float32)
        with warnings.catch_warnings():
            if not self.strict:
                warnings.simplefilter("ignore", UserWarning)  # non-integer counts: the training cells warned
            _check_counts(block, strict=self.strict, what="a block of the input")
        out = model.impute(block, var_names=self.var_names, policy=self.policy, fills=self.fills)
        if len(self.fills) == 1:
            return out[self.fills[0]][:, :, None]
        return np.stack([out.pop(f) for f in self.fills], axis=-1)


def _impute_block(block, job: _BlockJob) -> np.ndarray:
    return job(block)


def _default_fills(model: DeepImpute) -> tuple[str, ...]:
    return ("expected", "detected") if model.params["detection_head"] else ("detected",)


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

    Each output has the input's row chunks and all genes in one column chunk (float32). Nothing is
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
    >>> arrays = sdx.impute(model, lazy)  # doctest: +SKIP
    >>> arrays["expected"][:100].compute()  # doctest: +SKIP
    """
    import dask
    import dask.array as da

    model._check_fitted()
    X, names = _dask_matrix_and_names(data, layer, var_names)
    fills = _default_fills(model) if fills is None else tuple(fills)
    # validate options and gene alignment now (on zero rows) rather than inside the first task
    model.impute(np.zeros((0, X.shape[1]), np.float32), var_names=names, policy=policy, fills=fills)
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


# --------------------------------------------------------------------------- streaming to disk
def _store_rows(chunks: tuple[int, ...], n_vars: int) -> int:
    """Rows per on-disk chunk: divides every dask row chunk (so writes never share a chunk), ~16 MB."""
    g = math.gcd(*chunks[:-1]) if len(chunks) > 1 else chunks[0]
    target = max(1, _STORE_CHUNK_VALUES // max(n_vars, 1))
    if g <= target:
        return g
    return max(d for d in range(1, target + 1) if g % d == 0)


def store(arrays: Mapping[str, da.Array], group, *, overwrite: bool = False, progress: bool = False) -> None:
    """Compute several lazy arrays in one pass and write them into ``group`` (zarr or h5py), one array each.

    The arrays get anndata's encoding attributes, so ``group`` may be the ``layers`` group of an
    AnnData zarr/h5ad store. Arrays from one :func:`impute` call share their graph: the network runs
    once per block for all of them. Memory stays bounded by a few blocks per worker thread.

    Parameters
    ----------
    arrays
        ``{name: dask array}``, all 2-d.
    group
        A :class:`zarr.Group`, an :class:`h5py.Group`, or a path (opened as a zarr group, created if needed).
    overwrite
        Replace arrays of the same name (otherwise an existing name raises ``ValueError``).
    progress
        Show dask's progress bar (local schedulers only).

    Examples
    --------
    >>> arrays = sdx.impute(model, lazy)  # doctest: +SKIP
    >>> names = sdx.output_names(arrays)  # {"expected": "imputed", "detected": "imputed_detected"}  # doctest: +SKIP
    >>> sdx.store({names[f]: a for f, a in arrays.items()}, "out.zarr/layers")  # doctest: +SKIP
    """
    import dask.array as da

    if isinstance(group, str | Path):
        group = _open_zarr_group(Path(group))
    is_h5 = type(group).__module__.startswith("h5py")
    sources, targets = [], []
    for name, arr in arrays.items():
        if name in group:
            if not overwrite:
                msg = f"{name!r} already exists in {group}; pass overwrite=True to replace it."
                raise ValueError(msg)
            del group[name]
        rows = _store_rows(arr.chunks[0], arr.shape[1])
        chunks = (rows, arr.shape[1])
        if is_h5:
            target = group.create_dataset(name, shape=arr.shape, dtype=arr.dtype, chunks=chunks)
        elif hasattr(group, "create_array"):  # zarr 3
            target = group.create_array(
                name, shape=arr.shape, dtype=arr.dtype, chunks=chunks, compressors=_fast_compressors(group)
            )
        else:  # pragma: no cover - zarr 2
            target = group.create_dataset(name, shape=arr.shape, dtype=arr.dtype, chunks=chunks)
        target.attrs["encoding-type"] = "array"
        target.attrs["encoding-version"] = "0.2.0"
        sources.append(arr)
        targets.append(target)
    if progress:
        from dask.diagnostics import ProgressBar

        with ProgressBar():
            da.store(sources, targets, lock=is_h5, compute=True)
    else:
        da.store(sources, targets, lock=is_h5, compute=True)
    if not is_h5:
        _refresh_consolidated(group)


def _open_zarr_group(path: Path):
    """Open (or create) the zarr group at ``path``, reading its live metadata.

    Not through consolidated metadata: they are a snapshot, blind to the arrays written next.
    """
    import zarr

    return zarr.open_group(str(path), mode="a", use_consolidated=False)


def _refresh_consolidated(group) -> None:
    """Re-consolidate the metadata of the outermost zarr group on disk that holds ``group``.

    anndata reads a zarr AnnData through the consolidated metadata at its root; without this, arrays
    added to its ``layers`` stay invisible. The root is found on disk, so a group opened at a sub-path
    (``"out.zarr/layers"``) refreshes the AnnData's root too; other stores are consolidated as given.
    """
    import zarr

    local_root = getattr(group.store, "root", None)  # zarr.storage.LocalStore: a directory
    if local_root is None:
        zarr.consolidate_metadata(group.store)
        return
    top = (Path(local_root) / group.path).resolve()
    for parent in top.parents:
        if not ((parent / "zarr.json").exists() or (parent / ".zgroup").exists()):
            break
        top = parent
    zarr.consolidate_metadata(str(top))


def _fast_compressors(group):
    """Blosc zstd level 1 with bit shuffling: ~3x faster than zarr's default zstd on imputed float32, as small.

    Measured on 5000 x 3200 imputed-like float32 (``benchmarks/million.py`` development): zarr 3's default
    1.40 s and 1.17x, Blosc(zstd, 1, bitshuffle) 0.49 s and 1.20x, Blosc(lz4, 5, shuffle) 0.63 s and 1.14x.
    """
    if getattr(getattr(group, "metadata", None), "zarr_format", 3) == 2:
        from numcodecs import Blosc

        return [Blosc(cname="zstd", clevel=1, shuffle=Blosc.BITSHUFFLE)]
    from zarr.codecs import BloscCodec

    return [BloscCodec(cname="zstd", clevel=1, shuffle="bitshuffle")]


def output_names(fills: Sequence[str], key_added: str = "imputed") -> dict[str, str]:
    """Layer name of each fill, as :func:`scdeepimpute.pp.deepimpute` names them.

    Examples
    --------
    >>> from scdeepimpute.experimental import output_names
    >>> output_names(("expected", "detected"))
    {'expected': 'imputed', 'detected': 'imputed_detected'}
    """
    fills = tuple(fills)
    return {f: key_added if i == 0 else f"{key_added}_{f}" for i, f in enumerate(fills)}


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
    >>> lazy = sdx.read_lazy("counts.zarr")  # doctest: +SKIP
    >>> sdx.impute_to_zarr(model, lazy, "counts.zarr/layers")  # doctest: +SKIP
    >>> anndata.read_zarr("counts.zarr").layers["imputed"]  # doctest: +SKIP
    """
    import dask.array as da

    lazy = impute(model, data, layer=layer, var_names=var_names, policy=policy, fills=fills, check_counts=check_counts)
    named = {output_names(lazy, key_added)[f]: arr for f, arr in lazy.items()}
    group = _open_zarr_group(Path(store_path)) if isinstance(store_path, str | Path) else store_path
    store(named, group, overwrite=overwrite, progress=progress)
    return {name: da.from_zarr(group[name]) for name in named}


# --------------------------------------------------------------------------- reading
def read_lazy(path: str | Path, *, chunk_size: int = 10_000) -> AnnData:
    """Open an ``.h5ad`` or ``.zarr`` AnnData with ``X`` and ``layers`` as dask arrays (``chunk_size`` cells per chunk).

    ``obs``, ``var``, ``uns``, ``obsm``, ``varm``, ``obsp`` and ``varp`` are read into memory; ``X``
    and the layers are read lazily with :func:`anndata.experimental.read_elem_lazy` (sparse stays sparse
    inside each chunk); ``raw`` is not read (a warning says so). The result works with
    :func:`scdeepimpute.pp.deepimpute` and :func:`fit`.

    Examples
    --------
    >>> import scdeepimpute as sdi, scdeepimpute.experimental as sdx
    >>> lazy = sdx.read_lazy("counts.h5ad", chunk_size=5000)  # doctest: +SKIP
    >>> sdi.pp.deepimpute(lazy, train_size=20_000)  # lazy layers  # doctest: +SKIP
    """
    import anndata as ad

    path = Path(path)
    if chunk_size < 1:
        msg = f"chunk_size must be a positive number of cells, got {chunk_size}."
        raise ValueError(msg)
    if path.suffix == ".zarr" or path.is_dir():
        import zarr

        f = zarr.open_group(str(path), mode="r")
        return _read_lazy_group(f, ad, chunk_size)
    import h5py

    with h5py.File(path, "r") as f:
        return _read_lazy_group(f, ad, chunk_size)


def _read_lazy_group(f, ad, chunk_size: int) -> AnnData:
    from anndata.experimental import read_elem_lazy

    def lazy(elem):
        shape = tuple(elem.attrs.get("shape", getattr(elem, "shape", ())))
        return read_elem_lazy(elem, chunks=(min(chunk_size, shape[0]), shape[1]))

    if "X" not in f:
        msg = f"{f} holds no X; scdeepimpute needs the counts in X or in a layer."
        raise ValueError(msg)
    # anndata >= 0.12 writes an empty ``raw`` element (encoding "null") into every zarr store
    if "raw" in f and f["raw"].attrs.get("encoding-type") != "null":
        logg.warning("the store has a .raw, which read_lazy does not read (only X, layers and the annotations).")
    parts = {k: ad.io.read_elem(f[k]) for k in ("obs", "var", "uns", "obsm", "varm", "obsp", "varp") if k in f}
    layers = {k: lazy(f["layers"][k]) for k in f["layers"]} if "layers" in f else {}
    return ad.AnnData(X=lazy(f["X"]), layers=layers, **parts)
