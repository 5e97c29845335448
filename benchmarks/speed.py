"""Issue 4: speed, memory and accuracy at the paper's Fig. 6 scale (cells x ~3200 genes).

One run prints (and writes to ``benchmarks/RESULTS_speed.md``) a table with, for each method and number of
cells: fit and predict wall time, epochs, peak RSS, training GFLOP/s, and the masked-value MSE. Every
(method, cells) pair runs in a fresh subprocess (``--worker``), so the peak RSS (``ru_maxrss`` of that
process) and TensorFlow state are its own; the same masked matrix is used by every method. Each worker imports
scanpy (as a scanpy session has) and imports and starts TensorFlow before any timer: scdeepimpute imports both
lazily, in its first fit, where they had been timed (importing TensorFlow takes 3.7 s here, then scanpy 0.8 s)
against the original structure's fit, which imported Keras before its timer.

Data: a Splat-like simulation (see ``_common.SIM_DESCRIPTION``), 50k cells generated once and cached
under ``$SDI_BENCH_CACHE`` (default /tmp/scdeepimpute_bench); n cells = the first n cells. Masking: for
every gene with more than 10 non-zeros, 10 of its non-zero cells (uniformly at random, seed 0) are set
to 0; MSE is on log1p of those entries (imputed vs true), over all masked entries (genes that a method
does not impute keep 0).

Methods:

* ``default``: ``scdeepimpute.DeepImpute(preset="default")``
* ``default-float32``: the same with ``precision="float32"`` (``default`` is ``"auto"``: bfloat16 products where
  the CPU has AVX512-BF16/AMX)
* ``paper``: ``scdeepimpute.DeepImpute(preset="paper")``
* ``original``: the authors' structure, one Keras functional model with a branch per block, ``fit`` with
  batch 64, Adam 1e-4, EarlyStopping(val_loss, patience 5), 95/5 split, ``predict`` with Keras' default
  batch (32); targets/predictors of scdeepimpute's selection with min_vmr 0.5, cut into the authors' block
  sizes (blocks of 512 and a short last block; ``_common.select_blocks(authors_sizes=True)``).
* ``magic``: MAGIC (``magic-impute``) with its defaults on library-size-normalised, sqrt-transformed
  counts, squared and scaled back to each cell's library size; only if ``import magic`` works (set
  ``SDI_MAGIC_PATH`` to a folder to add to ``sys.path``, e.g. one made with ``pip install --target``).

Training GFLOP/s = 3 x forward flops (2 per multiply-add, real unpadded block sizes, detection head
included) x cells trained per epoch (all training cells, or ``epoch_size``) x epochs / fit seconds (fit also
includes gene selection and the validation passes, so this is a lower bound on the training loop's rate).
Matmul GFLOP/s: best of 5 float32 ``tf.matmul`` of 4096 x 4096, measured in this run before and after the table.

Usage (from the repository root)::

    python benchmarks/speed.py                           # 1k, 5k, 10k, 50k cells, all methods
    python benchmarks/speed.py --cells 1000,5000 --quick # 3 epochs at most, quick check
    python benchmarks/speed.py --methods default,paper --cells 10000
    python benchmarks/speed.py --methods default,original --cells 10000 --seeds 0,1,2  # + means over seeds

Every method runs once per ``--seeds`` value (its random state: the cell split, target blocks, initial weights and
shuffling; MAGIC's random state). Early stopping makes the number of epochs, and with it the fit time, vary from
seed to seed (the 10k runs in ``RESULTS_speed.md``), so with several seeds a second table gives per method the mean
fit + predict time and, where the original structure ran, the ratio of the means.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import _common as C  # noqa: E402

RESULTS = Path(__file__).parent / "RESULTS_speed.md"
SECTION = "speed"
N_GENES = 3200
METHODS = ("default", "default-float32", "paper", "original", "magic")
_RSS: dict[str, float] = {}


# ============================================================================ worker (one process per row)
def _load(n_cells: int):
    return C.masked_speed_data(n_cells, N_GENES)  # masked once by the driver: this process holds one copy


def _worker_deepimpute(method: str, Xm, max_epochs: int | None, seed: int):
    import scdeepimpute as sdi

    preset, _, precision = method.partition("-")
    model = sdi.DeepImpute(preset=preset, max_epochs=max_epochs, random_state=seed, precision=precision or None)
    t = time.perf_counter()
    model.fit(Xm, progress=False)
    fit_s = time.perf_counter() - t
    _RSS["after_fit"] = C.peak_rss_mb()
    t = time.perf_counter()
    imputed = model.predict(Xm)
    predict_s = time.perf_counter() - t
    _RSS["after_predict"] = C.peak_rss_mb()  # before the extra scoring below
    if model.params.get("detection_head"):  # also the paper's value-if-detected fill (untimed)
        imputed = {"main": imputed, "detected": model.impute(Xm, fills=("detected",))["detected"]}
    p = model.params
    blocks = C.Blocks(model.blocks_, model.predictors_, model.layout_)
    fwd = blocks.forward_flops_per_cell(p["hidden_units"], p["detection_head"])
    n_train = model.n_cells_fit_ - max(1, round(p["validation_fraction"] * model.n_cells_fit_))
    per_epoch = n_train if p["epoch_size"] is None else min(n_train, p["epoch_size"])  # cells trained per epoch
    epochs = int(model.history_.stopped_epoch)
    return imputed, fit_s, predict_s, epochs, 3.0 * fwd * per_epoch * epochs, len(model.targets_)


def _worker_original(Xm, max_epochs: int | None, seed: int):
    from scdeepimpute._backend import import_keras
    from scdeepimpute._utils import dense_rows

    _, keras = import_keras()
    max_epochs = 500 if max_epochs is None else max_epochs
    t = time.perf_counter()
    blocks = C.select_blocks(Xm, min_vmr=0.5, seed=seed, authors_sizes=True)
    train_rows, val_rows = C.split_cells(Xm.shape[0], seed=seed)
    xs, ys = C.branch_arrays(Xm, train_rows, blocks)
    xv, yv = C.branch_arrays(Xm, val_rows, blocks)
    model = C.build_branches(blocks, seed=seed)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=5)
    hist = model.fit(xs, ys, batch_size=64, epochs=max_epochs, validation_data=(xv, yv), shuffle=True, verbose=0,
                     callbacks=[stop])
    fit_s = time.perf_counter() - t
    _RSS["after_fit"] = C.peak_rss_mb()
    del xs, ys, xv, yv
    t = time.perf_counter()
    all_rows = np.arange(Xm.shape[0])
    inputs = [np.log1p(dense_rows(Xm, all_rows, p)) for p in blocks.predictors]
    preds = model.predict(inputs, verbose=0)  # Keras default batch 32, as the original
    imputed = dense_rows(Xm, all_rows)
    for b, pred in zip(blocks.blocks, preds, strict=True):
        observed = imputed[:, b]
        imputed[:, b] = np.where(observed > 0, observed, np.expm1(pred))
    predict_s = time.perf_counter() - t
    epochs = len(hist.history["loss"])
    fwd = blocks.forward_flops_per_cell(256, False)
    n_targets = int(sum(len(b) for b in blocks.blocks))
    return imputed, fit_s, predict_s, epochs, 3.0 * fwd * train_rows.size * epochs, n_targets


def _worker_magic(Xm, seed: int):
    if os.environ.get("SDI_MAGIC_PATH"):
        sys.path.insert(0, os.environ["SDI_MAGIC_PATH"])
    import magic

    from scdeepimpute._utils import dense_rows

    t = time.perf_counter()
    X = dense_rows(Xm, dtype=np.float64)
    lib = X.sum(axis=1, keepdims=True)
    scale = np.median(lib)
    Y = np.sqrt(X / np.maximum(lib, 1) * scale)
    op = magic.MAGIC(verbose=0, random_state=seed, n_jobs=-1)
    out = op.fit_transform(Y)
    imputed = np.clip(out, 0, None) ** 2 * np.maximum(lib, 1) / scale
    fit_s = time.perf_counter() - t
    return imputed, fit_s, float("nan"), None, None, Xm.shape[1]


def worker(method: str, n_cells: int, max_epochs: int | None, seed: int = 0) -> dict:
    Xm, rows, cols, truth = _load(n_cells)
    # a scanpy session's imports and TensorFlow's start are not imputation: out of every method's timings
    import scanpy  # noqa: F401

    if method != "magic":
        from scdeepimpute._backend import import_keras

        tf, _ = import_keras()
        tf.zeros(1)
    base_rss = C.peak_rss_mb()
    if method in ("default", "default-float32", "paper"):
        out = _worker_deepimpute(method, Xm, max_epochs, seed)
    elif method == "original":
        out = _worker_original(Xm, max_epochs, seed)
    elif method == "magic":
        out = _worker_magic(Xm, seed)
    else:
        raise SystemExit(f"unknown method {method}")
    imputed, fit_s, predict_s, epochs, train_flops, n_targets = out
    detected = None
    if isinstance(imputed, dict):
        imputed, detected = imputed["main"], imputed["detected"]
    mse = C.masked_mse(truth, np.asarray(imputed[rows, cols], dtype=np.float64))
    res = {
        "method": method, "cells": n_cells, "seed": seed, "genes": Xm.shape[1], "targets": n_targets, "fit_s": fit_s,
        "predict_s": predict_s, "epochs": epochs,
        "gflops": None if train_flops is None else train_flops / fit_s / 1e9,
        "peak_rss_mb": _RSS.get("after_predict", C.peak_rss_mb()), "data_rss_mb": base_rss,
        "fit_rss_mb": _RSS.get("after_fit"), "mse": mse, "n_masked": int(truth.size),
        "mse_detected": None if detected is None else C.masked_mse(truth, np.asarray(detected[rows, cols], np.float64)),
    }
    with open(C.CACHE / "speed_results.jsonl", "a") as f:  # raw log of every row ever run
        f.write(json.dumps({**res, "time": time.strftime("%Y-%m-%d %H:%M:%S"), "max_epochs": max_epochs}) + "\n")
    return res


# ============================================================================ driver
def _run_sub(args: list[str], timeout: float | None) -> tuple[dict | None, str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return None, f"timeout after {timeout:.0f} s"
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:]), ""
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
    return None, f"failed (rc {proc.returncode}): {tail}"


def _magic_available() -> bool:
    code = "import os,sys; p=os.environ.get('SDI_MAGIC_PATH'); p and sys.path.insert(0,p); import magic"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, check=False).returncode == 0


def _fmt(x, spec):
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else format(x, spec)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", default="1000,5000,10000,50000")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--quick", action="store_true", 
                    help="cap training at 3 epochs (timings are then not comparable to full runs)")
    ap.add_argument("--max-epochs", type=int, default=None, help="cap on epochs (default: each method's own, 500)")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per (method, cells) run")
    ap.add_argument("--no-write", action="store_true", help=f"do not update {RESULTS.name}")
    ap.add_argument("--section", default=SECTION, help=f"section of {RESULTS.name} to replace (default %(default)s)")
    ap.add_argument("--title", default="Speed and memory, paper Fig. 6 setting (issue 4)")
    ap.add_argument("--seeds", default="0", help="random states, comma-separated: every method runs with each")
    ap.add_argument("--worker", nargs=3, metavar=("METHOD", "CELLS", "SEED"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    max_epochs = 3 if args.quick and args.max_epochs is None else args.max_epochs

    if args.worker:
        res = worker(args.worker[0], int(args.worker[1]), max_epochs, int(args.worker[2]))
        print("RESULT " + json.dumps(res), flush=True)
        return

    sizes = [int(c) for c in args.cells.split(",")]
    methods = args.methods.split(",")
    t0 = time.perf_counter()
    print("preparing data ...", flush=True)
    C.make_speed_data(sizes)
    for n in sizes:
        C.masked_speed_data(n, N_GENES)
    print(f"data ready ({time.perf_counter() - t0:.0f} s)", flush=True)
    if "magic" in methods and not _magic_available():
        print("MAGIC: `import magic` fails; skipping it (pip install magic-impute, or set SDI_MAGIC_PATH)")
        methods.remove("magic")
    gf_before = _matmul_sub()
    print(f"float32 matmul 4096^2: {gf_before:.1f} GFLOP/s", flush=True)
    extra = [] if max_epochs is None else ["--max-epochs", str(max_epochs)]
    rows, failures = [], []
    seeds = [int(x) for x in args.seeds.split(",")]
    for n in sizes:
        for seed in seeds:
            for m in methods:
                t = time.perf_counter()
                res, err = _run_sub(["--worker", m, str(n), str(seed), *extra], args.timeout)
                if res is None:
                    failures.append(f"- {m} at {n} cells, seed {seed}: {err}")
                    print(f"{m:9s} {n:6d} cells seed {seed}: {err}", flush=True)
                    continue
                rows.append(res)
                print(f"{m:9s} {n:6d} cells seed {seed}: fit {res['fit_s']:.1f} s, "
                      f"predict {_fmt(res['predict_s'], '.1f')} s, epochs {res['epochs']}, "
                      f"peak RSS {res['peak_rss_mb']:.0f} MB, MSE {res['mse']:.4f} "
                      f"(wall {time.perf_counter() - t:.0f} s)", flush=True)
    gf_after = _matmul_sub()
    print(f"float32 matmul 4096^2 after: {gf_after:.1f} GFLOP/s")

    header = ["method", "cells", "seed", "genes", "targets", "fit s", "predict s", "epochs",
              "peak RSS MB (after data; after fit)",
              "train GFLOP/s", "% of matmul", "masked MSE (log1p)", "MSE, value-if-detected fill"]
    ref = max(gf_before, gf_after)
    table = C.markdown_table(header, [[
        r["method"], r["cells"], r["seed"], r["genes"], r["targets"], f"{r['fit_s']:.1f}", _fmt(r["predict_s"], ".1f"),
        r["epochs"] if r["epochs"] is not None else "n/a",
        f"{r['peak_rss_mb']:.0f} ({r['data_rss_mb']:.0f}; {_fmt(r.get('fit_rss_mb'), '.0f')})",
        _fmt(r["gflops"], ".1f"), _fmt(None if r["gflops"] is None else 100 * r["gflops"] / ref, ".0f"),
        f"{r['mse']:.4f}", _fmt(r.get("mse_detected"), ".4f") if r.get("mse_detected") is not None else "(one output)"]
        for r in rows])
    means = _means_table(rows, methods, sizes)
    print("\n" + table + "\n" + means)
    for f in failures:
        print(f)
    info = C.machine_info()
    cmd = "python " + " ".join([str(Path(sys.argv[0]))] + sys.argv[1:])
    n_masked = {r["cells"]: r["n_masked"] for r in rows}
    text = (
        f"## {args.title}\n\n"
        f"{info['date']}, commit {info['commit']}, {info['cpu']}, TF {info['tensorflow']} / Keras {info['keras']}, "
        f"Python {info['python']}.\nCommand: `{cmd}`"
        + (f" (epochs capped at {max_epochs})" if max_epochs is not None else "") + "\n\n"
        f"Data: {C.SIM_DESCRIPTION.format(n_genes=N_GENES)}. Masked entries per size: {n_masked}.\n"
        f"float32 tf.matmul 4096x4096: {gf_before:.1f} GFLOP/s before the runs, {gf_after:.1f} after; "
        "'% of matmul' uses the larger.\n"
        "Each row is a fresh process; scanpy is imported and TensorFlow imported and started before the timers "
        "(default, paper, original). Peak RSS is that process's ru_maxrss (in brackets: its peak after "
        "loading the masked data, TensorFlow started, and its peak at the end of fit). Machine shared with other "
        "jobs: compare rows of one run, not across runs.\n\n"
        + table + "\n" + (f"\nMeans over seeds {seeds}:\n\n{means}" if len(seeds) > 1 else "")
        + ("\n" + "\n".join(failures) + "\n" if failures else "")
        + "\nMethods: default/paper = scdeepimpute presets (default-float32: precision='float32'); original = "
        "separate branches of one Keras model (batch 64, Adam 1e-4, EarlyStopping patience 5, targets/predictors "
        "of scdeepimpute's selection with min_vmr 0.5 in the authors' block sizes: 512 and a short last block); "
        "magic = MAGIC "
        "defaults on sqrt library-normalised counts. 'masked MSE' scores each method's standard output "
        "(default preset: fill='expected', P(detected) x value); the last column scores the default preset's "
        "fill='detected' (value if detected, the paper's semantics), from the same fit (an extra, untimed "
        "impute() after the peak RSS was read).\n"
    )
    if not args.no_write:
        C.write_section(RESULTS, args.section, text)
        print(f"\nwritten to {RESULTS}")


def _means_table(rows: list[dict], methods: list[str], sizes: list[int]) -> str:
    """Per method and size: mean fit + predict seconds and epochs over seeds, and the original's mean / this mean."""
    out = []
    for n in sizes:
        runs = {m: [r for r in rows if r["method"] == m and r["cells"] == n] for m in methods}
        seconds = {m: [r["fit_s"] + np.nan_to_num(r["predict_s"]) for r in rs] for m, rs in runs.items() if rs}
        for m, times in seconds.items():
            epochs = [r["epochs"] for r in runs[m] if r["epochs"] is not None]
            ratio = np.mean(seconds["original"]) / np.mean(times) if "original" in seconds else None
            out.append([m, n, len(times), f"{np.mean(times):.1f} ({min(times):.1f}-{max(times):.1f})",
                        _fmt(np.mean(epochs) if epochs else None, ".1f"),
                        f"{np.mean([r['mse'] for r in runs[m]]):.4f}", _fmt(ratio, ".2f")])
    header = ["method", "cells", "seeds", "fit + predict s, mean (range)", "epochs, mean", "masked MSE, mean",
              "original mean / this mean"]
    return C.markdown_table(header, out)


def _matmul_sub() -> float:
    code = ("import sys; sys.path.insert(0, %r); import _common as C; print(C.matmul_gflops())"
            % str(Path(__file__).parent))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
