"""Speed and accuracy against the real peers, side by side (issue 15 item 1): one process per method.

Methods (each in a fresh process, one at a time; the peers through ``../shared/peers/run_peer.py`` in the peers'
environment, ``$PEERS_PYTHON`` or ``/work/main/.peers/venv/bin/python``, built as ``../shared/peers/README.md`` says):

* ``default``: scdeepimpute, ``sdi.DeepImpute()`` (default preset), from this environment;
* ``paper``: scdeepimpute, ``sdi.DeepImpute(preset="paper")``: the like-for-like counterpart of DeepImpute 1.2;
* ``deepimpute_orig``: the real DeepImpute 1.2, ``MultiNet()`` defaults with its learning rate 1e-4 honoured;
* ``magic``: MAGIC 3.0 defaults (sqrt of median-library-normalised counts; put back on each cell's library here);
* ``knn``: kNN smoothing (k 15 on 10 PCs, ``../shared/peers/baselines.py``).

Rows (``--rows``): ``synth1k`` / ``synth10k`` / ``synth50k`` (``../shared/peers/make_synth.py``, x 3000 genes, 5
groups, seed 0, ~88% zeros); every public scRNA-seq set of ``../shared/data`` at full gene count (all genes
detected in >= 3 cells; names as in ``benchmarks/accuracy.py``); ``sim10k_15k`` (``sdi.datasets.simulate``,
10000 cells x 15000 genes, seed 0).

Protocol: the driver masks each row once (``sdi.tl.mask``, fitted-curve scheme, 10 non-zeros per gene, seed 0) and
writes the masked counts to an ``.h5ad``; every method imputes that file and is scored on the hidden entries
(masked MSE and Pearson, log1p, ``sdi.tl.masked_metrics``; ours: ``imputed_detected``, the value-if-detected fill,
as DeepImpute 1.2's output is; ``imputed`` in the last column). Timers exclude imports, TensorFlow's start and file
I/O: ours time ``fit`` and ``impute`` (both layers, as ``sdi.pp.deepimpute`` writes them); the peers report
``run_peer.py``'s ``WALL`` (the method alone; fit and predict are not separable there). Peak RSS is the method
process's ``VmHWM`` (ours: data loaded, fit and both layers; peers: the whole ``run_peer.py`` run, its dense copy of
the input and the written output included). Ratios are stated as ``<peer time> /
<our time>``, "vs <implementation>, <like-for-like|defaults>".

Run: ``python benchmarks/speed.py [--rows synth10k,pbmc4k_2100] [--methods default,paper,deepimpute_orig,magic,knn]
[--seeds 0] [--out benchmarks/RESULTS_speed.md]``. ``--quick``: 300 synthetic cells x 600 genes, ours (3 epochs) and
kNN through ``run_peer.py`` (a smoke test for CI: the code paths, not the timings).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PEERS = HERE.parents[1] / "shared" / "peers"
PEERS_PYTHON = Path(os.environ.get("PEERS_PYTHON", "/work/main/.peers/venv/bin/python"))
CACHE = Path(os.environ.get("SDI_BENCH_CACHE", "/tmp/scdeepimpute_bench")) / "peers"
OURS = ("default", "paper")
PEER_METHODS = ("deepimpute_orig", "magic", "knn")
METHODS = (*OURS, *PEER_METHODS)
NAMES = {
    "default": "scdeepimpute default",
    "paper": "scdeepimpute preset='paper'",
    "deepimpute_orig": "DeepImpute 1.2",
    "magic": "MAGIC 3.0",
    "knn": "kNN smoothing",
}
SYNTH = {"synth1k": 1000, "synth10k": 10_000, "synth50k": 50_000, "synth_quick": 300}


# ============================================================================ data (driver)
def prepare(row: str, *, min_cells: int = 3) -> Path:
    """Write (once) ``<cache>/<row>/input.h5ad`` (masked counts) and ``mask.npz``; return the folder."""
    import anndata as ad
    from scipy import sparse

    import scdeepimpute as sdi

    folder = CACHE / row
    if (folder / "input.h5ad").exists() and (folder / "mask.npz").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    if row in SYNTH:
        genes = 600 if row == "synth_quick" else 3000
        raw = folder / "raw.h5ad"
        subprocess.run(
            [
                sys.executable,
                str(PEERS / "make_synth.py"),
                "--cells",
                str(SYNTH[row]),
                "--genes",
                str(genes),
                "--groups",
                "5",
                "--seed",
                "0",
                "--out",
                str(raw),
            ],
            check=True,
        )
        a = ad.read_h5ad(raw)
        raw.unlink()
        what = f"make_synth.py --cells {SYNTH[row]} --genes {genes} --groups 5 --seed 0"
    elif row == "sim10k_15k":
        a = sdi.datasets.simulate(n_obs=10_000, n_vars=15_000, random_state=0)
        what = "sdi.datasets.simulate(n_obs=10000, n_vars=15000, random_state=0)"
    else:
        sys.path.insert(0, str(HERE))
        import _common as C

        a, _ = C.load_dataset(row, min_detection=0.0)
        what = f"{row}, all genes detected in >= {min_cells} cells"
    a.X = sparse.csr_matrix(a.X, dtype=np.float32)
    a = a[:, np.diff(a.X.tocsc().indptr) >= min_cells].copy()
    a = ad.AnnData(a.X)  # peers get bare counts: no labels or annotation to read
    a.obs_names = [f"c{i}" for i in range(a.n_obs)]
    a.var_names = [f"g{j}" for j in range(a.n_vars)]
    sdi.tl.mask(a, random_state=0)
    m = a.uns["masked"]
    np.savez(folder / "mask.npz", obs_idx=m["obs_idx"], var_idx=m["var_idx"], values=m["values"])
    ad.AnnData(sparse.csr_matrix(a.layers["masked"]), obs=a.obs[[]], var=a.var[[]]).write_h5ad(folder / "input.h5ad")
    zeros = 1 - a.X.nnz / (a.n_obs * a.n_vars)
    (folder / "meta.json").write_text(
        json.dumps(
            {"what": what, "cells": a.n_obs, "genes": a.n_vars, "zeros": zeros, "n_masked": int(m["values"].size)}
        )
    )
    return folder


def score(folder: Path, Y) -> dict[str, float]:
    import scdeepimpute as sdi

    z = np.load(folder / "mask.npz")
    vals = np.asarray(Y[z["obs_idx"], z["var_idx"]]).ravel()
    m = sdi.tl.masked_metrics(z["values"], vals)
    return {"mse": m["mse"], "pearson": m["pearson"]}


# ============================================================================ our worker (one process)
def worker(preset: str, folder: Path, seed: int, max_epochs: int | None) -> dict:
    import anndata as ad
    import scanpy  # noqa: F401  (a scanpy session has it imported: not imputation time)
    from scipy import sparse

    import scdeepimpute as sdi
    from scdeepimpute._backend import import_keras

    tf, _ = import_keras()
    tf.zeros(1)  # TensorFlow's start is not imputation time either
    X = sparse.csr_matrix(ad.read_h5ad(folder / "input.h5ad").X, dtype=np.float32)
    model = sdi.DeepImpute(preset=preset, max_epochs=max_epochs, random_state=seed)
    t = time.perf_counter()
    model.fit(X, progress=False)
    fit_s = time.perf_counter() - t
    # both layers where the model has a detection head (as sdi.pp.deepimpute writes them); the paper preset has one
    fills = ("expected", "detected") if model.params.get("detection_head") else ("detected",)
    t = time.perf_counter()
    out = model.impute(X, fills=fills)
    predict_s = time.perf_counter() - t
    peak = vm_hwm_mb()  # before the scoring below
    det = score(folder, out["detected"])
    exp = score(folder, out["expected"]) if "expected" in out else det
    return {
        "fit_s": fit_s,
        "predict_s": predict_s,
        "total_s": fit_s + predict_s,
        "peak_rss_mb": peak,
        "epochs": int(model.history_.stopped_epoch),
        **det,
        "imputed_mse": exp["mse"],
        "imputed_pearson": exp["pearson"],
    }


def vm_hwm_mb() -> float:
    """This process's peak RSS since its ``exec`` (``VmHWM``). ``ru_maxrss`` would not do: after ``exec`` it still
    holds the RSS of the process it was forked from (here the driver, which reads every method's output)."""
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM")) / 1024


#: Runs run_peer.py in the peers' Python and prints its VmHWM at exit (run_peer.py itself cannot be changed).
_PEER_WRAPPER = (
    "import atexit, runpy, sys\n"
    "def _hwm():\n"
    "    with open('/proc/self/status') as f:\n"
    "        print('VMHWM_KB', next(ln.split()[1] for ln in f if ln.startswith('VmHWM')), flush=True)\n"
    "atexit.register(_hwm)\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


# ============================================================================ driver
def run_method(method: str, folder: Path, seed: int, *, max_epochs: int | None, timeout: float | None) -> dict:
    if method in OURS:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", method, str(folder), str(seed)]
        cmd += [] if max_epochs is None else ["--max-epochs", str(max_epochs)]
    else:
        py = PEERS_PYTHON if PEERS_PYTHON.exists() else Path(sys.executable)  # kNN runs in either
        out_path = folder / f"out_{method}_{seed}.h5ad"
        cmd = [
            str(py),
            "-c",
            _PEER_WRAPPER,
            str(PEERS / "run_peer.py"),
            "--method",
            method,
            "--input",
            str(folder / "input.h5ad"),
            "--output",
            str(out_path),
            "--seed",
            str(seed),
        ]
    rc, log, wall = _child(cmd, timeout)
    res = {"method": method, "seed": seed, "rc": rc, "process_s": wall}
    if rc != 0:
        return {**res, "error": "\n".join(log.strip().splitlines()[-4:])}
    if method in OURS:
        line = next(ln for ln in log.splitlines() if ln.startswith("RESULT "))
        return {**res, **json.loads(line[7:])}
    import anndata as ad

    b = ad.read_h5ad(out_path)
    out_path.unlink()
    Y = np.asarray(b.X, dtype=np.float64)
    if method == "magic":  # run_peer writes counts normalised to the median total: back to each cell's library
        lib = np.asarray(ad.read_h5ad(folder / "input.h5ad").X.sum(axis=1), dtype=np.float64).ravel()
        lib[lib == 0] = 1
        Y *= (lib / np.median(lib))[:, None]
    wall_s = float(re.search(r"^WALL \S+ ([\d.]+)", log, re.MULTILINE).group(1))
    peer = dict(b.uns["peer"])
    peak = float(re.search(r"^VMHWM_KB (\d+)", log, re.MULTILINE).group(1)) / 1024
    return {
        **res,
        "fit_s": None,
        "predict_s": None,
        "total_s": wall_s,
        "peak_rss_mb": peak,
        "epochs": peer.get("trained_epochs"),
        "adam_lr": peer.get("adam_lr"),
        **score(folder, Y),
    }


def _child(cmd: list[str], timeout: float | None) -> tuple[int, str, float]:
    """Run ``cmd`` (alone: one method at a time); return (exit code, output, wall s)."""
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as e:
        return -9, f"{e.stdout or ''}\ntimeout after {timeout:.0f} s", time.perf_counter() - t
    return proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - t


def _f(x, spec: str) -> str:
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else format(x, spec)


def tables(rows: list[dict], meta: dict[str, dict]) -> str:
    """Per data row: the defaults table (with ratios) and the like-for-like line, as markdown."""
    header = [
        "method",
        "fit s",
        "predict s",
        "total s",
        "epochs",
        "peak RSS MB",
        "masked MSE",
        "masked Pearson",
        "process s",
        "`imputed` MSE / Pearson",
    ]
    parts = []
    for name, m in meta.items():
        rs = [r for r in rows if r["row"] == name]
        if not rs:
            continue
        lines = [
            f"**{name}**: {m['what']}; {m['cells']} cells x {m['genes']} genes, {m['zeros']:.1%} zeros, "
            f"{m['n_masked']} masked entries.",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
        ]
        for r in rs:
            if "error" in r:
                lines.append(f"| {NAMES[r['method']]} (seed {r['seed']}) | failed: {r['error'][-200:]!r} |")
                continue
            extra = f"{r['imputed_mse']:.3f} / {r['imputed_pearson']:.3f}" if "imputed_mse" in r else ""
            lines.append(
                "| "
                + " | ".join(
                    [
                        f"{NAMES[r['method']]} (seed {r['seed']})",
                        _f(r["fit_s"], ".1f"),
                        _f(r["predict_s"], ".1f"),
                        _f(r["total_s"], ".1f"),
                        _f(r["epochs"], "d"),
                        _f(r["peak_rss_mb"], ".0f"),
                        _f(r["mse"], ".3f"),
                        _f(r["pearson"], ".3f"),
                        _f(r["process_s"], ".0f"),
                        extra,
                    ]
                )
                + " |"
            )
        t = {
            meth: np.mean([r["total_s"] for r in rs if r["method"] == meth and "error" not in r])
            for meth in METHODS
            if any(r["method"] == meth and "error" not in r for r in rs)
        }
        ratios = []
        if "default" in t:
            ratios += [f"{t[p] / t['default']:.2f}x vs {NAMES[p]}, defaults" for p in PEER_METHODS if p in t]
        lines += ["", "scdeepimpute default, time ratio (peer / ours): " + ("; ".join(ratios) or "n/a")]
        if "paper" in t and "deepimpute_orig" in t:
            lines.append(
                f"Like-for-like, scdeepimpute preset='paper' {t['paper']:.1f} s: "
                f"{t['deepimpute_orig'] / t['paper']:.2f}x vs DeepImpute 1.2, like-for-like"
            )
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--rows",
        default="synth1k,synth10k,synth50k,pbmc4k_2100,pbmc3k_ds30,mouse1m_10k,celseq2,"
        "dropseq,celseq2_5cl_p1,zeisel_200,sim10k_15k",
    )
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--max-epochs", type=int, default=None, help="cap on our epochs (default: the preset's)")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per process")
    ap.add_argument("--quick", action="store_true", help="smoke test: see the module docstring")
    ap.add_argument("--out", default=None, help="markdown file to write (section 'peers' replaced)")
    ap.add_argument("--worker", nargs=3, metavar=("PRESET", "FOLDER", "SEED"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        res = worker(args.worker[0], Path(args.worker[1]), int(args.worker[2]), args.max_epochs)
        print("RESULT " + json.dumps(res), flush=True)
        return
    methods = args.methods.split(",")
    if args.quick:
        args.rows, args.max_epochs = "synth_quick", 3 if args.max_epochs is None else args.max_epochs
        # kNN goes through run_peer.py (in the peers' Python when it exists), which covers the peers' code path;
        # DeepImpute 1.2 (~85 epochs, ~50 s even here) and MAGIC (~18 s a process here) would not fit a smoke test
        methods = ["default", "knn"]
    if not PEERS_PYTHON.exists():
        dropped = [m for m in methods if m in ("deepimpute_orig", "magic")]
        methods = [m for m in methods if m not in dropped]
        print(
            f"NOTE: no peers environment at {PEERS_PYTHON} (set $PEERS_PYTHON; ../shared/peers/README.md "
            f"builds it): {', '.join(dropped) or 'no peer'} skipped; kNN runs with this Python.",
            flush=True,
        )
    rows, meta = [], {}
    for name in args.rows.split(","):
        t0 = time.perf_counter()
        folder = prepare(name)
        meta[name] = json.loads((folder / "meta.json").read_text())
        print(f"{name}: {meta[name]} (prepared in {time.perf_counter() - t0:.0f} s)", flush=True)
        for seed in map(int, args.seeds.split(",")):
            for m in methods:
                r = {"row": name, **run_method(m, folder, seed, max_epochs=args.max_epochs, timeout=args.timeout)}
                rows.append(r)
                print(json.dumps(r), flush=True)
    text = tables(rows, meta)
    print("\n" + text)
    with open(CACHE / "results.jsonl", "a") as f:  # raw log of every run
        for r in rows:
            f.write(json.dumps({**r, "time": time.strftime("%Y-%m-%d %H:%M:%S")}) + "\n")
    if args.out:
        sys.path.insert(0, str(HERE))
        import _common as C

        info = C.machine_info()
        cmd = "python benchmarks/speed.py " + " ".join(sys.argv[1:])
        head = (
            f"## Against the real peers (issue 15)\n\n{info['date']}, commit {info['commit']}, {info['cpu']}, "
            f"TF {info['tensorflow']} / Keras {info['keras']}. Command: `{cmd}`. Protocol: the module docstring "
            "of `benchmarks/speed.py`.\n\n"
        )
        C.write_section(Path(args.out), "peers", head + text)
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
