"""The ``scdeepimpute`` command line: ``scdeepimpute impute`` and ``scdeepimpute demo``."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import warnings
from pathlib import Path

#: Exit codes: 1 for bad input or a library error, 2 for bad usage (argparse), 130 on Ctrl-C.
EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130

INPUT_FORMATS = ".h5ad, .zarr, 10x .h5, 10x matrix folder (matrix.mtx[.gz]), .csv/.tsv/.txt (optionally .gz)"
OUTPUT_FORMATS = ".h5ad, .zarr, .csv or .tsv"

IMPUTE_EXAMPLES = """\
examples:
  scdeepimpute impute counts.h5ad -o imputed.h5ad
  scdeepimpute impute filtered_feature_bc_matrix.h5 -o imputed.h5ad --save-model model/
  scdeepimpute impute filtered_feature_bc_matrix/ -o imputed.zarr --preset paper
  scdeepimpute impute counts.csv -o imputed.csv --cell-axis columns   # genes as rows in the CSV
  scdeepimpute impute new_sample.h5ad -o new_imputed.h5ad --model model/   # reuse a trained model
  scdeepimpute impute big.zarr -o big_imputed.zarr --train-size 50000 --chunk-size 10000   # out of core

.h5ad/.zarr outputs keep X and every input field and add the layers 'imputed' (zeros filled with the
expected count) and, with the default preset, 'imputed_detected' (zeros filled with the count if the
gene were detected); CSV/TSV outputs hold one imputed matrix (--fill), cells as rows.
"""

DEMO_DESCRIPTION = """\
Run DeepImpute on the bundled example (2100 PBMCs x 886 genes, 10x PBMC 4k) and check its accuracy:
10 non-zero counts per gene are hidden (scdeepimpute.tl.mask), the masked counts are imputed, and the
hidden values are compared with the imputed ones (scdeepimpute.tl.masked_scores, log1p counts).
Takes under a minute on two CPU cores.
"""


class InputError(Exception):
    """A problem with the user's files or options: reported as one line, no traceback."""


def _say(args, msg: str) -> None:
    if not getattr(args, "quiet", False):
        print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of the ``scdeepimpute`` command."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("scdeepimpute")
    except PackageNotFoundError:  # pragma: no cover
        ver = "unknown"
    parser = argparse.ArgumentParser(
        prog="scdeepimpute",
        description="DeepImpute (Arisdakessian et al., Genome Biology 2019) for single-cell RNA-seq counts.",
        epilog="run 'scdeepimpute demo' for a one-minute check, 'scdeepimpute impute --help' for the options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {ver}")
    sub = parser.add_subparsers(dest="command", metavar="{impute,demo}")
    sub.required = True

    p = sub.add_parser(
        "impute",
        help="impute a count matrix",
        description=f"Impute dropouts in raw counts.\n\ninput:  {INPUT_FORMATS}\noutput: {OUTPUT_FORMATS}",
        epilog=IMPUTE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", metavar="INPUT", help="raw counts (cells x genes unless --cell-axis columns)")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT", help=f"where to write ({OUTPUT_FORMATS})")
    p.add_argument("--layer", metavar="L", help="layer of an .h5ad/.zarr input holding the raw counts (default: X)")
    p.add_argument("--preset", choices=["default", "paper"], help="hyperparameters (default: 'default')")
    p.add_argument(
        "--train-size",
        type=_train_size,
        metavar="F",
        help="train on a random subset of cells: a fraction in (0, 1] or a number of cells (default: all)",
    )
    p.add_argument("--save-model", metavar="DIR", help="save the trained model to this folder")
    p.add_argument("--model", metavar="DIR", help="use a model saved with --save-model instead of training one")
    p.add_argument("--genes-file", metavar="FILE", help="impute only these genes (one name per line)")
    p.add_argument("--max-epochs", type=_positive_int, metavar="N", help="cap on training epochs (default: 500)")
    p.add_argument("--hidden-units", type=_positive_int, metavar="N", help="width of each sub-network (default: 256)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (default: 0)")
    p.add_argument(
        "--cell-axis",
        choices=["rows", "columns"],
        default="rows",
        help="CSV/TSV input: are cells the rows (default) or the columns?",
    )
    p.add_argument(
        "--fill",
        choices=["expected", "detected"],
        help="CSV/TSV output: which imputed matrix to write (default: 'expected' with the default preset)",
    )
    p.add_argument(
        "--chunk-size",
        type=_positive_int,
        metavar="N",
        help=".h5ad/.zarr input: read it lazily in chunks of N cells and stream the output (out of core; "
        "memory is about the --train-size cells plus a few chunks)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output (errors are still reported)")
    p.set_defaults(func=run_impute)

    d = sub.add_parser("demo", help="one-minute self-check on the bundled example", description=DEMO_DESCRIPTION)
    d.add_argument("--max-epochs", type=_positive_int, metavar="N", help="cap on training epochs (default: 500)")
    d.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (default: 0)")
    d.add_argument("-q", "--quiet", action="store_true", help="print the summary only")
    d.set_defaults(func=run_demo)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _train_size(text: str) -> float | int:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1] or a number of cells, got {text!r}") from None
    if value.is_integer() and value > 1:
        return int(value)
    if 0 < value <= 1:
        return value
    raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1] or a number of cells, got {text!r}")


# --------------------------------------------------------------------------- entry point
def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (``argparse`` usage errors raise ``SystemExit(2)``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    import scanpy as sc

    verbosity = sc.settings.verbosity  # set for the run (quiet or not), restored for in-process callers
    with warnings.catch_warnings():
        _one_line_warnings()
        try:
            return args.func(args)
        except InputError as e:
            return _fail(str(e))
        except (ValueError, FileNotFoundError, KeyError, OSError) as e:
            return _fail(_describe(e))
        except KeyboardInterrupt:
            return _fail("interrupted", code=EXIT_INTERRUPTED)
        finally:
            sc.settings.verbosity = verbosity


def _describe(e: BaseException) -> str:
    msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
    if isinstance(e, FileNotFoundError) and e.filename:
        msg = f"file not found: {e.filename}"
    return str(msg) or type(e).__name__


def _fail(msg: str, code: int = EXIT_ERROR) -> int:
    print(f"scdeepimpute: error: {' '.join(str(msg).split())}", file=sys.stderr, flush=True)
    return code


def _one_line_warnings() -> None:
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"scdeepimpute: warning: {' '.join(str(message).split())}", file=sys.stderr, flush=True)

    warnings.showwarning = show
    warnings.simplefilter("default", UserWarning)
    for noisy in (DeprecationWarning, FutureWarning, PendingDeprecationWarning):
        warnings.simplefilter("ignore", noisy)
    warnings.filterwarnings("ignore", message="Writing zarr v2 data", category=UserWarning)  # anndata's notice


def _start_tensorflow(args) -> None:
    """Import TensorFlow with its C++ start-up chatter (printed to fd 2 before any setting applies) hidden."""
    import scanpy as sc

    sc.settings.verbosity = 0 if args.quiet else 1  # 1: warnings and the training progress bar
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from ._backend import import_keras

    with _stderr_to_devnull():
        tf, _ = import_keras()
    tf.get_logger().setLevel("ERROR")


@contextlib.contextmanager
def _stderr_to_devnull():
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (e.g. captured): nothing to hide
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), fd)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, fd)
        os.close(saved)


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
            from .experimental import read_lazy

            return read_lazy(path, chunk_size=chunk_size)
        return _read(path, fmt, cell_axis)
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - any reader failure is a problem with the file
        what = {"10x_h5": "a 10x Genomics .h5 file", "10x_mtx": "a 10x matrix folder", "table": "a table"}
        raise InputError(f"cannot read {path} as {what.get(fmt, 'an ' + fmt + ' file')}: {_describe(e)}") from e


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


# --------------------------------------------------------------------------- impute
def run_impute(args) -> int:
    """``scdeepimpute impute``."""
    t0 = time.perf_counter()
    src, out = Path(args.input), Path(args.output)
    out_fmt = output_format(out)
    if args.model is not None:
        clash = [
            f"--{k.replace('_', '-')}" for k in ("preset", "train_size", "genes_file", "max_epochs", "hidden_units")
        ]
        clash = [c for c in clash if getattr(args, c[2:].replace("-", "_")) is not None]
        if clash:
            raise InputError(f"--model uses a trained model; {', '.join(clash)} only apply when training")
        if args.save_model is not None:
            raise InputError("--model and --save-model together would only copy the model; use one of them")
        if not (Path(args.model) / "config.json").is_file():
            raise InputError(f"--model {args.model} is not a saved scdeepimpute model (no config.json)")
    if args.fill is not None and out_fmt != "table":
        raise InputError("--fill chooses the matrix of a CSV/TSV output; .h5ad/.zarr outputs get every layer")
    genes = read_genes(args.genes_file) if args.genes_file else None
    if src.resolve() == out.resolve():
        raise InputError("OUTPUT is the INPUT; choose another path so the input is kept")

    adata = read_input(src, cell_axis=args.cell_axis, chunk_size=args.chunk_size)
    lazy = args.chunk_size is not None
    _say(args, f"read {src}: {adata.n_obs} cells x {adata.n_vars} genes{' (lazily)' if lazy else ''}")
    if lazy and args.train_size is None and args.model is None:
        _say(args, "note: without --train-size every cell is read into memory for training")
    _start_tensorflow(args)

    from . import experimental
    from ._impute import deepimpute
    from ._model import DeepImpute

    if args.model is not None:
        model = DeepImpute.load(args.model)
        _say(args, f"loaded the model in {args.model}: {model.targets_.size} genes, {len(model.blocks_)} sub-networks")
    else:
        model = DeepImpute(
            preset=args.preset or "default",
            max_epochs=args.max_epochs,
            hidden_units=args.hidden_units,
            random_state=args.seed,
        )
        _say(args, "training...")
        fit = experimental.fit if lazy else DeepImpute.fit
        fit(model, adata, layer=args.layer, genes=genes, train_size=args.train_size, progress=not args.quiet)
        h = model.history_
        _say(
            args,
            f"trained {len(model.blocks_)} sub-networks for {model.targets_.size} genes on {model.n_cells_fit_} cells: "
            f"{h.stopped_epoch} epochs, {model.fit_time_:.1f} s",
        )
        if args.save_model is not None:
            model.save(args.save_model)
            _say(args, f"saved the model to {args.save_model}")

    with warnings.catch_warnings():
        if args.model is None:
            warnings.simplefilter("ignore", UserWarning)  # the fit checked the counts and warned already
        deepimpute(adata, layer=args.layer, model=model)
    info = adata.uns["imputed"]
    if args.model is None:  # trained here: record it as such (pp.deepimpute saw a ready model)
        info["params"]["pretrained"] = False
        info["params"]["train_size"] = "all" if args.train_size is None else args.train_size
    _say(args, f"writing {out}...")
    written = _write(adata, out, out_fmt, args, info["layers"])
    info["time_s"] = float(time.perf_counter() - t0)
    _say(args, f"wrote {out} ({written}) in {time.perf_counter() - t0:.1f} s")
    return 0


def _write(adata, out: Path, fmt: str, args, layers: list[str]) -> str:
    from ._utils import is_dask

    if fmt == "table":
        fills = {"expected": "imputed", "detected": "imputed_detected"}
        name = layers[0] if args.fill is None else fills[args.fill]
        if name not in layers:
            raise InputError(f"--fill {args.fill}: this model has no detection head, only fill 'detected' exists")
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
        from .experimental import store

        if fmt == "h5ad":
            import h5py

            with h5py.File(out, "a") as f:
                store(lazy, f.require_group("layers"), progress=not args.quiet)
        else:
            import zarr

            store(lazy, zarr.open_group(str(out), mode="a").require_group("layers"), progress=not args.quiet)
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


# --------------------------------------------------------------------------- demo
def run_demo(args) -> int:
    """``scdeepimpute demo``."""
    t0 = time.perf_counter()
    from .datasets import example

    adata = example()
    _say(args, f"bundled example: {adata.n_obs} PBMCs x {adata.n_vars} genes (10x PBMC 4k slice)")
    _start_tensorflow(args)
    from . import tl
    from ._impute import deepimpute

    tl.mask(adata, n_masked=10, random_state=args.seed)
    n_masked = adata.uns["masked"]["values"].size
    _say(args, f"hid {n_masked} non-zero counts (10 per gene); training on the masked counts...")
    t1 = time.perf_counter()
    deepimpute(adata, layer="masked", max_epochs=args.max_epochs, random_state=args.seed)
    fit_s = time.perf_counter() - t1
    info = adata.uns["imputed"]
    rows = [("imputed_detected", "imputed_detected"), ("imputed", "imputed"), ("no imputation", "masked")]
    scores = {label: tl.masked_scores(adata, layer=layer) for label, layer in rows}
    print(
        f"scdeepimpute demo: {info['n_targets']} of {adata.n_vars} genes imputed ({info['n_blocks']} sub-networks), "
        f"{info['epochs']} epochs, {fit_s:.1f} s to train and impute {adata.n_obs} cells"
    )
    print(f"accuracy on the {n_masked} hidden counts (log1p scale):")
    print(f"  {'layer':<18}{'MSE':>8}{'Pearson r':>12}")
    for label, _ in rows:
        s = scores[label]
        r = "n/a" if s["pearson"] != s["pearson"] else f"{s['pearson']:.3f}"
        print(f"  {label:<18}{s['mse']:>8.3f}{r:>12}")
    ok = scores["imputed_detected"]["mse"] < scores["no imputation"]["mse"]
    print(f"self-check: {'passed' if ok else 'FAILED'} (imputation recovers hidden counts better than none)")
    print(f"wall time {time.perf_counter() - t0:.1f} s")
    return 0 if ok else EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
