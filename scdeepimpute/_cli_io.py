"""The command line's files: which formats a path holds, reading counts from them and writing the results."""

from __future__ import annotations

from pathlib import Path

INPUT_FORMATS = ".h5ad, .zarr, 10x .h5, 10x matrix folder (matrix.mtx[.gz]), .csv/.tsv/.txt (optionally .gz)"
OUTPUT_FORMATS = ".h5ad, .zarr, .csv or .tsv"


class InputError(Exception):
    """A problem with the user's files or options: reported as one line, no traceback."""


def describe(e: BaseException) -> str:
    """Return the message of an error, for the one line the command prints."""
    msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
    if isinstance(e, FileNotFoundError) and e.filename:
        msg = f"file not found: {e.filename}"
    return str(msg) or type(e).__name__


# --------------------------------------------------------------------------- input
def _is_10x_mtx_dir(path: Path) -> bool:
    return any((path / name).is_file() for name in ("matrix.mtx.gz", "matrix.mtx"))


def _table_sep(path: Path) -> str | None:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2", ".xz", ".zip"):
        suffixes = suffixes[:-1]
    if not suffixes:
        return None
    return {".csv": ",", ".tsv": "\t", ".txt": "\t"}.get(suffixes[-1])


def input_format(path: Path) -> str:
    """``"h5ad"``, ``"zarr"``, ``"10x_h5"``, ``"10x_mtx"`` or ``"table"``; ``InputError`` otherwise."""
    if not path.exists():
        raise InputError(f"input not found: {path}")
    if path.is_dir():
        if path.suffix.lower() == ".zarr" or (path / "zarr.json").exists() or (path / ".zgroup").exists():
            return "zarr"
        if _is_10x_mtx_dir(path):
            return "10x_mtx"
        raise InputError(f"{path} is a folder but neither a .zarr store nor a 10x matrix folder (matrix.mtx[.gz])")
    name = path.name.lower()
    if name.endswith(".h5ad"):
        return "h5ad"
    if name.endswith(".h5"):
        return "10x_h5"
    if name in ("matrix.mtx", "matrix.mtx.gz"):
        return "10x_mtx"
    if _table_sep(path) is not None:
        return "table"
    raise InputError(f"unknown input format: {path.name} (expected {INPUT_FORMATS})")


def output_format(path: Path) -> str:
    """``"h5ad"``, ``"zarr"`` or ``"table"``; ``InputError`` otherwise."""
    name = path.name.lower()
    if name.endswith(".h5ad"):
        return "h5ad"
    if name.endswith(".zarr"):
        return "zarr"
    if _table_sep(path) in (",", "\t") and not name.endswith(".txt"):
        return "table"
    raise InputError(f"unknown output format: {path.name} (expected {OUTPUT_FORMATS})")


def read_input(path: Path, *, cell_axis: str = "rows", chunk_size: int | None = None):
    """Read counts as an AnnData (cells x genes); with ``chunk_size``, X and layers stay lazy (dask)."""
    fmt = input_format(path)
    if chunk_size is not None and fmt not in ("h5ad", "zarr"):
        raise InputError(f"--chunk-size needs an .h5ad or .zarr input, got {path.name}")
    if cell_axis != "rows" and fmt != "table":
        raise InputError("--cell-axis applies to CSV/TSV input only")
    try:
        if chunk_size is not None:
            from .dask import read_lazy

            return read_lazy(path, chunk_size=chunk_size)
        return _read(path, fmt, cell_axis)
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - any reader failure is a problem with the file
        what = {"10x_h5": "a 10x Genomics .h5 file", "10x_mtx": "a 10x matrix folder", "table": "a table"}
        raise InputError(f"cannot read {path} as {what.get(fmt, 'an ' + fmt + ' file')}: {describe(e)}") from e


def _read(path: Path, fmt: str, cell_axis: str):
    import anndata as ad
    import scanpy as sc

    if fmt == "h5ad":
        return ad.read_h5ad(path)
    if fmt == "zarr":
        return ad.read_zarr(path)
    if fmt == "10x_h5":
        adata = sc.read_10x_h5(path)
    elif fmt == "10x_mtx":
        adata = sc.read_10x_mtx(path if path.is_dir() else path.parent)
    else:
        adata = _read_table(path, cell_axis)
    if not adata.var_names.is_unique:
        adata.var_names_make_unique()
    return adata


def _read_table(path: Path, cell_axis: str):
    import anndata as ad
    import numpy as np
    import pandas as pd

    df = pd.read_csv(path, sep=_table_sep(path), index_col=0)
    if df.shape[0] == 0 or df.shape[1] == 0:
        raise InputError(f"{path} holds no values (expected a header row of names and one name per row)")
    values = df.apply(pd.to_numeric, errors="coerce")
    if values.isna().to_numpy().any() and not df.isna().to_numpy().any():
        bad = df.columns[values.isna().any()].tolist()[:3]
        raise InputError(f"{path} has non-numeric values (in columns {bad}); expected a header row and counts")
    X = values.to_numpy(dtype=np.float32)
    obs, var = df.index.astype(str), df.columns.astype(str)
    if cell_axis == "columns":
        X, obs, var = X.T.copy(), var, obs
    adata = ad.AnnData(X)
    adata.obs_names, adata.var_names = obs, var
    return adata


def read_genes(path: str) -> list[str]:
    """Gene names from a file, one per line (blank lines and ``#`` comments ignored)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        raise InputError(f"cannot read --genes-file {path}: {e.strerror or e}") from e
    genes = [line.split("#", 1)[0].strip() for line in lines]
    genes = [g for g in genes if g]
    if not genes:
        raise InputError(f"--genes-file {path} lists no genes")
    return genes


def write_output(adata, out: Path, fmt: str, *, fills, fill: str | None, progress: bool) -> str:
    """Write what ``pp.deepimpute`` added to ``adata`` (with its default ``key_added``); returns what was written.

    ``fills``: those ``pp.deepimpute`` computed. A table gets one layer (``fill``, default the first fill);
    ``.h5ad``/``.zarr`` get every layer, lazy (dask) ones streamed in one pass.
    """
    from ._fills import output_names
    from ._utils import is_dask

    layer_of = output_names(fills)
    layers = list(layer_of.values())
    if fmt == "table":
        if fill is not None and fill not in layer_of:
            raise InputError(f"--fill {fill}: this model has no detection head, only fill 'detected' exists")
        name = layers[0] if fill is None else layer_of[fill]
        _write_table(adata, adata.layers[name], out)
        return f"layer {name!r}, cells as rows"
    lazy = {k: adata.layers[k] for k in layers if is_dask(adata.layers[k])}
    for k in lazy:  # written below in one pass (the network runs once per chunk for all layers)
        del adata.layers[k]
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "h5ad":
        adata.write_h5ad(out)
    else:
        adata.write_zarr(out)
    if lazy:
        from .dask import store

        if fmt == "h5ad":
            import h5py

            with h5py.File(out, "a") as f:
                store(lazy, f.require_group("layers"), progress=progress)
        else:
            import zarr

            store(lazy, zarr.open_group(str(out), mode="a").require_group("layers"), progress=progress)
    return "layers " + ", ".join(repr(k) for k in layers)


def _write_table(adata, matrix, out: Path) -> None:
    import numpy as np
    import pandas as pd

    from ._utils import is_dask

    sep = _table_sep(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    blocks = matrix.blocks if is_dask(matrix) else [matrix]
    start = 0
    for i, block in enumerate(blocks):
        values = np.asarray(block.compute() if is_dask(block) else block)
        stop = start + values.shape[0]
        df = pd.DataFrame(values, index=adata.obs_names[start:stop], columns=adata.var_names)
        df.to_csv(out, sep=sep, float_format="%.6g", mode="w" if i == 0 else "a", header=i == 0)
        start = stop
