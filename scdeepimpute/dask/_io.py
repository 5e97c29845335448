"""Reading AnnData stores lazily and streaming dask arrays into zarr or HDF5, in bounded memory."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from .. import _logging as logg

if TYPE_CHECKING:
    import dask.array as da
    from anndata import AnnData

#: zarr/h5 chunks of streamed outputs hold about this many values (rows x genes), ~16 MB of float32.
_STORE_CHUNK_VALUES = 4_000_000


# --------------------------------------------------------------------------- reading
def read_lazy(path: str | Path, *, chunk_size: int = 10_000) -> AnnData:
    """Open an ``.h5ad`` or ``.zarr`` AnnData with ``X`` and ``layers`` as dask arrays (``chunk_size`` cells per chunk).

    ``obs``, ``var``, ``uns``, ``obsm``, ``varm``, ``obsp`` and ``varp`` are read into memory; ``X``
    and the layers are read lazily with :func:`anndata.experimental.read_elem_lazy` (sparse stays sparse
    inside each chunk); ``raw`` is not read (a warning says so). The result works with
    :func:`scdeepimpute.pp.deepimpute` and :func:`fit`.

    Examples
    --------
    >>> import scdeepimpute as sdi, scdeepimpute.dask as sdd
    >>> lazy = sdd.read_lazy("counts.h5ad", chunk_size=5000)  # doctest: +SKIP
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
    >>> arrays = sdd.impute(model, lazy)  # doctest: +SKIP
    >>> names = sdd.output_names(arrays)  # {"expected": "imputed", "detected": "imputed_detected"}  # doctest: +SKIP
    >>> sdd.store({names[f]: a for f, a in arrays.items()}, "out.zarr/layers")  # doctest: +SKIP
    """
    import dask.array as da

    if isinstance(group, str | Path):
        group = open_zarr_group(Path(group))
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


def open_zarr_group(path: Path):
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
    """Blosc zstd level 1 with bit shuffling: several times faster than zarr's default zstd on imputed float32.

    The output is about as small.
    """
    if getattr(getattr(group, "metadata", None), "zarr_format", 3) == 2:
        from numcodecs import Blosc

        return [Blosc(cname="zstd", clevel=1, shuffle=Blosc.BITSHUFFLE)]
    from zarr.codecs import BloscCodec

    return [BloscCodec(cname="zstd", clevel=1, shuffle="bitshuffle")]
