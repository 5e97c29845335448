"""The ``scdeepimpute`` command line: ``scdeepimpute impute`` and ``scdeepimpute demo``."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import warnings
from pathlib import Path

from ._cli_io import (
    INPUT_FORMATS,
    OUTPUT_FORMATS,
    InputError,
    describe,
    output_format,
    read_genes,
    read_input,
    write_output,
)

#: Exit codes: 1 for bad input or a library error, 2 for bad usage (argparse), 130 on Ctrl-C.
EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130

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
    p.add_argument(
        "--save-model",
        metavar="DIR",
        help="save the trained model to this folder (a new or empty one: an existing model is never replaced, "
        "checked before training)",
    )
    p.add_argument("--model", metavar="DIR", help="use a model saved with --save-model instead of training one")
    p.add_argument("--genes-file", metavar="FILE", help="impute only these genes (one name per line)")
    p.add_argument("--max-epochs", type=_positive_int, metavar="N", help="cap on training epochs (default: 500)")
    p.add_argument("--hidden-units", type=_positive_int, metavar="N", help="width of each sub-network (default: 256)")
    p.add_argument(
        "--neighbors",
        type=_non_negative_int,
        metavar="N",
        help="cells per neighbourhood blended into the imputation (0: the network alone; default: 30, 'paper': 0); "
        "with --chunk-size, neighbours are searched within each chunk",
    )
    p.add_argument(
        "--batch-key",
        metavar="COL",
        help=".h5ad/.zarr input: obs column naming each cell's batch (sample, plate, technology): batch-aware "
        "training; with --model, the model's own key is read",
    )
    p.add_argument(
        "--batch",
        metavar="NAME",
        help="with batches: impute every cell as if measured in this reference batch (default: each cell's own)",
    )
    p.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (default: 0)")
    p.add_argument(
        "--cell-axis",
        choices=["rows", "columns"],
        default="rows",
        help="CSV/TSV input: are cells the rows (default) or the columns?",
    )
    p.add_argument(
        "--fill",
        choices=["expected", "detected", "lognorm"],
        help="CSV/TSV output: which imputed matrix to write (default: 'expected' with the default preset)",
    )
    p.add_argument(
        "--lognorm",
        action="store_true",
        help="also write the layer 'imputed_lognorm': the expected log1p of counts per 10,000 (already "
        "normalised and log-transformed; needs the default preset's detection head)",
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


def _int_at_least(minimum: int, what: str):
    """Make an argparse ``type``: an integer >= ``minimum``, else a one-line error naming ``what`` it must be."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1, "positive")
_non_negative_int = _int_at_least(0, "non-negative")


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
            return _fail(describe(e))
        except KeyboardInterrupt:
            return _fail("interrupted", code=EXIT_INTERRUPTED)
        finally:
            sc.settings.verbosity = verbosity


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


# --------------------------------------------------------------------------- impute
def run_impute(args) -> int:
    """``scdeepimpute impute``."""
    t0 = time.perf_counter()
    src, out = Path(args.input), Path(args.output)
    out_fmt = output_format(out)
    if args.model is not None:
        training_only = ("preset", "train_size", "genes_file", "max_epochs", "hidden_units", "neighbors", "batch_key")
        clash = [f"--{k.replace('_', '-')}" for k in training_only]
        clash = [c for c in clash if getattr(args, c[2:].replace("-", "_")) is not None]
        clash += ["--seed"] if args.seed != 0 else []
        if clash:
            raise InputError(f"--model uses a trained model; {', '.join(clash)} only apply when training")
        if args.save_model is not None:
            raise InputError("--model and --save-model together would only copy the model; use one of them")
        if not (Path(args.model) / "config.json").is_file():
            raise InputError(f"--model {args.model} is not a saved scdeepimpute model (no config.json)")
    if args.save_model is not None:  # before training, not after it
        _check_save_model(Path(args.save_model))
    if args.fill is not None and out_fmt != "table":
        raise InputError("--fill chooses the matrix of a CSV/TSV output; .h5ad/.zarr outputs get every layer")
    genes = read_genes(args.genes_file) if args.genes_file else None
    if src.resolve() == out.resolve():
        raise InputError("OUTPUT is the INPUT; choose another path so the input is kept")

    adata = read_input(src, cell_axis=args.cell_axis, chunk_size=args.chunk_size)
    lazy = args.chunk_size is not None
    if lazy and args.batch_key is not None:
        raise InputError("--batch-key is not supported with --chunk-size (out of core) yet")
    _say(args, f"read {src}: {adata.n_obs} cells x {adata.n_vars} genes{' (lazily)' if lazy else ''}")
    if lazy and args.train_size is None and args.model is None:
        _say(args, "note: without --train-size every cell is read into memory for training")
    _start_tensorflow(args)

    from . import dask
    from ._fills import default_fills
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
            neighbors=args.neighbors,
            random_state=args.seed,
        )
        _say(args, "training...")
        fit = dask.fit if lazy else DeepImpute.fit
        extra = {} if args.batch_key is None else {"batch_key": args.batch_key}
        fit(model, adata, layer=args.layer, genes=genes, train_size=args.train_size, progress=not args.quiet, **extra)
        h = model.history_
        _say(
            args,
            f"trained {len(model.blocks_)} sub-networks for {model.targets_.size} genes on {model.n_cells_fit_} cells: "
            f"{h.stopped_epoch} epochs, {model.fit_time_:.1f} s",
        )
        if args.save_model is not None:
            model.save(args.save_model)
            _say(args, f"saved the model to {args.save_model}")

    fills = default_fills(model.params["detection_head"])
    if args.lognorm or args.fill == "lognorm":
        if not model.params["detection_head"]:
            raise InputError("--lognorm needs a model with a detection head (not --preset paper)")
        fills = (*fills, "lognorm")
    with warnings.catch_warnings():
        if args.model is None:
            warnings.simplefilter("ignore", UserWarning)  # the fit checked the counts and warned already
        deepimpute(adata, layer=args.layer, model=model, fills=fills, batch=args.batch)
    info = adata.uns["imputed"]
    if args.model is None:  # trained here: record it as such (pp.deepimpute saw a ready model)
        info["params"]["pretrained"] = False
        info["params"]["train_size"] = "all" if args.train_size is None else args.train_size
    _say(args, f"writing {out}...")
    written = write_output(adata, out, out_fmt, fills=fills, fill=args.fill, progress=not args.quiet)
    info["time_s"] = float(time.perf_counter() - t0)
    _say(args, f"wrote {out} ({written}) in {time.perf_counter() - t0:.1f} s")
    return 0


def _check_save_model(path: Path) -> None:
    """``InputError`` unless ``--save-model`` names a new or empty folder (the command never replaces a model)."""
    if not path.exists():
        return
    if not path.is_dir():
        raise InputError(f"--save-model {path} is a file; give a new or empty folder")
    if (path / "config.json").is_file():
        raise InputError(f"--save-model {path} already holds a saved model; remove it or choose another folder")
    if any(path.iterdir()):
        raise InputError(f"--save-model {path} exists and is not empty; choose a new or empty folder")


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
    estimate = info.get("self_estimate")
    if estimate is not None:
        print(
            f"self-estimate from fit ({estimate['n_masked']} non-zeros it hid itself, {estimate['scheme']}; "
            f"neighbourhood weight {estimate['neighbor_weight']:.2f}): MSE {estimate['masked_mse']:.3f}, "
            f"Pearson r {estimate['masked_pearson']:.3f}"
        )
    ok = scores["imputed_detected"]["mse"] < scores["no imputation"]["mse"]
    print(f"self-check: {'passed' if ok else 'FAILED'} (imputation recovers hidden counts better than none)")
    print(f"wall time {time.perf_counter() - t0:.1f} s")
    return 0 if ok else EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
