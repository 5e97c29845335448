"""Issue 5: DeepImpute on a million cells out of core (train on a subsample, stream the prediction to zarr).

Steps, for each size (``--cells``, default 50,000, 200,000 and 1,000,000):

1. **Simulate** a cells x 3200 genes sparse count matrix straight to an AnnData zarr store, in chunks of
   5,000 cells (never the whole matrix in memory): 6 latent cell types (Dirichlet(3) proportions), gene
   base means Gamma(shape 0.3, scale 0.3), 25% of genes per type scaled by a LogNormal(0, 1) factor,
   cell size factors LogNormal(0, 0.4), negative-binomial counts (Gamma-Poisson) with dispersion
   0.1 + 0.9 / (1 + 10 x mean); 8.2% of entries are non-zero (the exact fraction is reported).
   Cells are i.i.d., so a contiguous block of cells is a random sample of cells.
2. **Mask** a held-aside block of 10,000 cells (in the middle of the file) before writing it: 10
   non-zeros per gene among those cells are set to 0 with ``scdeepimpute.tl.mask_counts`` (the paper's
   logistic dropout weighting; genes with fewer than 11 non-zeros there are skipped). The true values
   and positions are kept aside.
3. **Impute** in a fresh subprocess (so its peak RSS is its own): ``scdeepimpute.experimental.read_lazy``
   (chunks of ``--chunk-size`` cells) -> ``experimental.fit(DeepImpute(), train_size=...)`` (only the
   training cells are read into memory) -> ``experimental.impute_to_zarr`` (both layers, ``imputed`` and
   ``imputed_detected``, streamed to a zarr store in one pass).
4. **Score** the masked entries of the held-aside cells (read back from the output store): MSE and
   Pearson r on log1p counts for ``imputed_detected``, ``imputed`` and no imputation (zeros).

Peak RSS = ``ru_maxrss`` of the imputation subprocess (includes TensorFlow, ~1 GB by itself); it is
also sampled every 0.5 s to give the peak of the fit and of the prediction separately.

Usage (from the repository root)::

    python benchmarks/million.py                         # 50k, 200k, 1M cells, 20k training cells -> RESULTS_million.md
    python benchmarks/million.py --cells 200000          # another size
    python benchmarks/million.py --cells 50000 --no-write  # print only

Data and outputs go to ``$SDI_BENCH_CACHE`` (default /tmp/scdeepimpute_bench/million); the input stores
are kept for reruns (1M cells: 0.4 GB), the imputed stores (1M cells: 21 GiB) are deleted after scoring
unless ``--keep-output``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import threading
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("SDI_BENCH_CACHE", "/tmp/scdeepimpute_bench")) / "million"
RESULTS = ROOT / "benchmarks" / "RESULTS_million.md"

N_GENES = 3200
GEN_CHUNK = 5000
N_HELD = 10_000
SEED = 0

SIM_DESCRIPTION = (
    "6 latent cell types (Dirichlet(3) proportions), gene base means Gamma(shape 0.3, scale 0.3), 25% of genes "
    "per type scaled by LogNormal(0, 1), cell size factors LogNormal(0, 0.4), negative-binomial (Gamma-Poisson) "
    "counts with dispersion 0.1 + 0.9 / (1 + 10 x mean); cells i.i.d., generated and written in chunks of "
    f"{GEN_CHUNK} cells"
)


# --------------------------------------------------------------------------- simulation
def sim_params(seed: int = SEED):
    rng = np.random.default_rng([seed, 1])
    n_types = 6
    probs = rng.dirichlet(np.full(n_types, 3.0))
    base = rng.gamma(0.3, 0.3, N_GENES)
    fold = np.ones((n_types, N_GENES))
    de = rng.random((n_types, N_GENES)) < 0.25
    fold[de] = rng.lognormal(0.0, 1.0, de.sum())
    dispersion = 0.1 + 0.9 / (1 + 10 * base)
    return probs, base[None, :] * fold, 1.0 / dispersion


def sim_chunk(start: int, stop: int, seed: int = SEED):
    """CSR counts (float32) of cells ``start:stop`` and their types; depends only on (seed, start, stop)."""
    from scipy import sparse

    probs, means, size = sim_params(seed)
    rng = np.random.default_rng([seed, 2, start])
    n = stop - start
    types = rng.choice(probs.size, n, p=probs)
    mu = (means[types] * rng.lognormal(0.0, 0.4, n)[:, None]).astype(np.float32)
    lam = rng.standard_gamma(np.broadcast_to(size.astype(np.float32), mu.shape), dtype=np.float32)
    lam *= mu / size.astype(np.float32)
    counts = rng.poisson(lam).astype(np.float32)
    return sparse.csr_matrix(counts), types


def _sim_unit(args):
    return args, *sim_chunk(*args)


def simulate_to_zarr(path: Path, n_cells: int, held: tuple[int, int], seed: int = SEED) -> dict:
    """Write the simulated counts (held-aside block masked) as an AnnData zarr store; return a summary."""
    from multiprocessing import get_context

    import anndata as ad
    import pandas as pd
    import zarr

    from scdeepimpute.tl import mask_counts

    t0 = time.perf_counter()
    tmp = path.with_suffix(".partial.zarr")
    shutil.rmtree(tmp, ignore_errors=True)
    g = zarr.open_group(str(tmp), mode="w", zarr_format=3)
    g.attrs.update({"encoding-type": "anndata", "encoding-version": "0.1.0"})
    X = g.create_group("X")
    X.attrs.update({"encoding-type": "csr_matrix", "encoding-version": "0.1.0", "shape": [n_cells, N_GENES]})
    data = X.create_array("data", shape=(0,), chunks=(1 << 20,), dtype="float32")
    indices = X.create_array("indices", shape=(0,), chunks=(1 << 20,), dtype="int32")
    indptr = X.create_array("indptr", shape=(n_cells + 1,), chunks=(1 << 18,), dtype="int64")
    indptr[0:1] = np.zeros(1, np.int64)

    # write units: chunks of GEN_CHUNK cells, the held-aside block as one unit (masked as a whole)
    units, start = [], 0
    while start < n_cells:
        stop = held[1] if start == held[0] else min(start + GEN_CHUNK, held[0] if start < held[0] else n_cells)
        units.append((start, stop, seed))
        start = stop
    types = np.empty(n_cells, np.int16)
    nnz = 0
    mask = None
    with get_context("spawn").Pool(2) as pool:
        for (start, stop, _), csr, t in pool.imap(_sim_unit, units):
            if (start, stop) == held:
                res = mask_counts(csr, n_masked=10, mode="gene", random_state=seed)
                mask = {"obs_idx": res.obs_idx + start, "var_idx": res.var_idx, "values": res.values}
                mask["n_skipped_genes"] = int(res.n_skipped)
                csr = res.X
            data.append(csr.data.astype(np.float32))
            indices.append(csr.indices.astype(np.int32))
            indptr[start + 1 : stop + 1] = csr.indptr[1:].astype(np.int64) + nnz
            nnz += csr.nnz
            types[start:stop] = t
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical(types.astype(str))}, index=pd.Index([f"c{i:07d}" for i in range(n_cells)])
    )
    obs["held_aside"] = False
    obs.iloc[held[0] : held[1], 1] = True
    ad.io.write_elem(g, "obs", obs)
    ad.io.write_elem(g, "var", pd.DataFrame(index=[f"g{j:04d}" for j in range(N_GENES)]))
    zarr.consolidate_metadata(str(tmp))
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    np.savez(path.with_suffix(".mask.npz"), **{k: v for k, v in mask.items() if k != "n_skipped_genes"})
    summary = {
        "n_cells": n_cells,
        "n_genes": N_GENES,
        "nnz": int(nnz),
        "density": nnz / (n_cells * N_GENES),
        "held": list(held),
        "n_masked": int(mask["values"].size),
        "n_skipped_genes": mask["n_skipped_genes"],
        "sim_s": time.perf_counter() - t0,
        "disk_bytes": _du(path),
    }
    path.with_suffix(".json").write_text(json.dumps(summary, indent=1))
    return summary


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# --------------------------------------------------------------------------- imputation (subprocess)
def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


class _RssSampler:
    """Samples the current RSS (from /proc) every ``dt`` seconds; ``peak()`` since the last ``reset()``."""

    def __init__(self, dt: float = 0.5):
        self.dt, self._peak, self._stop = dt, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def current() -> float:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def _run(self):
        while not self._stop.is_set():
            self._peak = max(self._peak, self.current())
            time.sleep(self.dt)

    def reset(self) -> None:
        self._peak = self.current()

    def peak(self) -> float:
        return max(self._peak, self.current())

    def stop(self) -> None:
        self._stop.set()


def worker(args) -> None:
    """Fit on a subsample and stream the imputation to zarr; print one JSON line of measurements."""
    import warnings

    warnings.simplefilter("ignore")
    sampler = _RssSampler()
    import scanpy as sc

    import scdeepimpute as sdi
    from scdeepimpute import dask as sdx
    from scdeepimpute._backend import import_keras

    sc.settings.verbosity = 0
    import_keras()
    out: dict = {"rss_after_imports_mb": sampler.current()}
    t0 = time.perf_counter()
    adata = sdx.read_lazy(args.input, chunk_size=args.chunk_size)
    out["read_lazy_s"] = time.perf_counter() - t0
    out["read_lazy_rss_mb"] = sampler.current() - out["rss_after_imports_mb"]  # obs/var in memory

    sampler.reset()
    t0 = time.perf_counter()
    model = sdx.fit(sdi.DeepImpute(random_state=SEED), adata, train_size=args.train_size)
    out["fit_s"] = time.perf_counter() - t0
    out["fit_inner_s"] = model.fit_time_  # DeepImpute.fit alone (without reading the training cells)
    out["fit_peak_rss_mb"] = sampler.peak()
    out["epochs"] = int(model.history_.stopped_epoch)
    out["n_targets"] = int(model.targets_.size)
    out["n_blocks"] = len(model.blocks_)
    out["n_train"] = int(model.n_cells_fit_)

    sampler.reset()
    t0 = time.perf_counter()
    shutil.rmtree(args.output, ignore_errors=True)
    arrays = sdx.impute_to_zarr(model, adata, args.output)
    out["predict_s"] = time.perf_counter() - t0
    out["predict_peak_rss_mb"] = sampler.peak()
    out["output_disk_bytes"] = _du(Path(args.output))
    out["output_chunks"] = [list(map(int, arrays["imputed"].chunksize))]

    # score the masked entries of the held-aside block (contiguous rows: a few chunks of the output)
    from scdeepimpute.tl import masked_metrics

    mask = np.load(args.mask)
    lo, hi = int(mask["obs_idx"].min()), int(mask["obs_idx"].max()) + 1
    rows, cols, truth = mask["obs_idx"] - lo, mask["var_idx"], mask["values"]
    scores = {}
    for name in ("imputed_detected", "imputed"):
        block = arrays[name][lo:hi].compute()
        scores[name] = masked_metrics(truth, block[rows, cols])
    scores["none"] = masked_metrics(truth, np.zeros_like(truth))
    out["scores"] = {k: {"mse": v["mse"], "pearson": v["pearson"], "n": v["n_masked"]} for k, v in scores.items()}
    out["peak_rss_mb"] = _rss_mb()
    sampler.stop()
    print("RESULT " + json.dumps(out), flush=True)


# --------------------------------------------------------------------------- driver
def run_size(n_cells: int, args) -> dict:
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"sim_{n_cells}.zarr"
    held = (n_cells // 2 // GEN_CHUNK * GEN_CHUNK, n_cells // 2 // GEN_CHUNK * GEN_CHUNK + N_HELD)
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists() and json.loads(meta.read_text())["held"] == list(held):
        sim = json.loads(meta.read_text())
        print(f"[{n_cells}] reusing {path} (simulated in {sim['sim_s']:.0f} s)", flush=True)
    else:
        print(f"[{n_cells}] simulating to {path} ...", flush=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # zarr/anndata format notices
            sim = simulate_to_zarr(path, n_cells, held)
        print(f"[{n_cells}] simulated in {sim['sim_s']:.0f} s, density {sim['density']:.4f}", flush=True)
    out = CACHE / f"imputed_{n_cells}.zarr"
    train_size = min(args.train_size, n_cells)
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        "--input",
        str(path),
        "--output",
        str(out),
        "--mask",
        str(path.with_suffix(".mask.npz")),
        "--train-size",
        str(train_size),
        "--chunk-size",
        str(args.chunk_size),
    ]
    print(f"[{n_cells}] imputing (train_size={train_size}, chunk_size={args.chunk_size}) ...", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stderr[-5000:])
        msg = f"worker failed for {n_cells} cells (exit {proc.returncode})"
        raise RuntimeError(msg)
    res = json.loads(lines[-1][len("RESULT ") :])
    res["worker_wall_s"] = wall
    res["sim"] = sim
    res["train_size"] = train_size
    res["chunk_size"] = args.chunk_size
    if not args.keep_output:
        shutil.rmtree(out, ignore_errors=True)
    print(f"[{n_cells}] {json.dumps(res)}", flush=True)
    return res


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} logical cores"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical cores"


def _commit() -> str:
    def git(*a):
        return subprocess.run(["git", *a], capture_output=True, text=True, cwd=ROOT).stdout.strip()

    dirty = git("status", "--porcelain", "--", "scdeepimpute")
    return git("rev-parse", "--short", "HEAD") + (" (scdeepimpute/ modified)" if dirty else "")


def _ram_gib() -> int:
    return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)


def report(results: list[dict], command: str, commit: str, started: str, total_s: float) -> str:
    from importlib.metadata import version

    from scdeepimpute._params import PRESETS

    lines = [
        "# DeepImpute on a million cells, out of core (issue 5)",
        "",
        f"{started}, commit {commit}, {_cpu()}, {_ram_gib()} GiB RAM (shared with other jobs), "
        f"TF {version('tensorflow')} / Keras {version('keras')} / dask "
        f"{version('dask')} / zarr {version('zarr')}.",
        f"Command: `{command}` (total {total_s / 60:.1f} min including simulation).",
        "",
        f"Data: simulated ({SIM_DESCRIPTION}); written to an AnnData zarr store (CSR) chunk by chunk. "
        f"Masking: in a held-aside block of {N_HELD} cells (middle of the file), 10 non-zeros per gene set to 0 with "
        "`scdeepimpute.tl.mask_counts` (paper's logistic weighting) before writing; MSE / Pearson r on log1p counts "
        "of those entries. Model: `DeepImpute()` (default preset: every gene with non-zero variance imputed, "
        f"early stopping, patience {PRESETS['default']['patience']}), fitted with "
        "`scdeepimpute.experimental.fit(train_size=...)`, prediction "
        "streamed with `experimental.impute_to_zarr` (layers `imputed` and `imputed_detected`, float32, "
        "Blosc zstd-1 bitshuffle) by dask's threaded scheduler.",
        "",
        "| cells | non-zero | training cells | epochs | fit s | predict + write s | predict ms / 1k cells | "
        "peak RSS fit | peak RSS predict | peak RSS overall | output on disk | masked entries | "
        "MSE imputed_detected | r | MSE imputed | r | MSE no imputation |",
        "|" + "---|" * 17,
    ]
    for r in results:
        s = r["scores"]
        n = r["sim"]["n_cells"]
        lines.append(
            f"| {n:,} | {r['sim']['density']:.2%} | {r['n_train']:,} | {r['epochs']} | {r['fit_s']:.0f} | "
            f"{r['predict_s']:.0f} | {1000 * r['predict_s'] / n * 1000:.0f} | {r['fit_peak_rss_mb'] / 1024:.2f} GiB | "
            f"{r['predict_peak_rss_mb'] / 1024:.2f} GiB | {r['peak_rss_mb'] / 1024:.2f} GiB | "
            f"{r['output_disk_bytes'] / 2**30:.1f} GiB | {s['none']['n']:,} | {s['imputed_detected']['mse']:.3f} | "
            f"{s['imputed_detected']['pearson']:.3f} | {s['imputed']['mse']:.3f} | {s['imputed']['pearson']:.3f} | "
            f"{s['none']['mse']:.3f} |"
        )
    lines += [
        "",
        "- fit s: reading the training cells from the store plus `DeepImpute.fit` (gene statistics, correlations, "
        "training); predict + write s: the whole `impute_to_zarr` (read, densify, network, both fills, "
        "compression, write).",
        "- Peak RSS: the imputation subprocess (TensorFlow alone is ~1 GB); 'fit' and 'predict' are sampled every "
        "0.5 s, 'overall' is `ru_maxrss`.",
    ]
    for r in results:
        sim = r["sim"]
        lines.append(
            f"- {sim['n_cells']:,} cells: simulated in {sim['sim_s']:.0f} s ({sim['disk_bytes'] / 2**30:.2f} GiB on "
            f"disk, {sim['nnz']:,} non-zeros); {r['n_targets']} genes imputed in {r['n_blocks']} blocks; "
            f"{sim['n_skipped_genes']} genes had < 11 non-zeros in the held-aside cells (not masked); "
            f"DeepImpute.fit alone {r['fit_inner_s']:.0f} s; chunks of {r['chunk_size']} cells; "
            f"worker wall time {r['worker_wall_s']:.0f} s."
        )
    lines += _extrapolation(results)
    return "\n".join(lines) + "\n"


def _extrapolation(results: list[dict], target: int = 1_000_000) -> list[str]:
    """A linear extrapolation from the largest run to ``target`` cells, labelled as such (empty if it was run)."""
    big = max(results, key=lambda r: r["sim"]["n_cells"])
    n = big["sim"]["n_cells"]
    if n >= target:
        return []
    k = target / n
    read_train = big["fit_s"] - big["fit_inner_s"]
    lines = [
        "",
        f"## {target:,} cells: EXTRAPOLATED, not measured",
        "",
        f"The {target:,}-cell run did not fit the ~30 min wall-time budget on this shared 2-core machine, so these "
        f"numbers are a linear extrapolation from the measured {n:,}-cell run (x{k:g}), not measurements:",
        "",
        f"- prediction + write: {big['predict_s']:.0f} s x {k:g} = **~{big['predict_s'] * k / 60:.0f} min** "
        "(it is a pass over every cell; the per-cell cost was measured at two sizes above);",
        f"- fit: DeepImpute.fit on the same {big['n_train']:,} training cells ({big['fit_inner_s']:.0f} s, independent "
        f"of the number of cells) + reading them from the store ({read_train:.0f} s, a pass over the file, x{k:g}) "
        f"= **~{(big['fit_inner_s'] + read_train * k) / 60:.0f} min**;",
        f"- simulation: {big['sim']['sim_s']:.0f} s x {k:g} = ~{big['sim']['sim_s'] * k / 60:.0f} min; output on disk "
        f"~{big['output_disk_bytes'] * k / 2**30:.0f} GiB;",
        f"- memory: the streamed prediction holds a few chunks of {big['chunk_size']} cells per thread, independent of "
        "the number of cells (compare the peak RSS of the runs above); what grows with cells is AnnData's in-memory "
        f"obs (names, columns): {big['read_lazy_rss_mb']:.0f} MB of RSS at {n:,} cells, so ~"
        f"{big['read_lazy_rss_mb'] * k:.0f} MB at {target:,}. Expected peak RSS: ~"
        f"{(big['peak_rss_mb'] + big['read_lazy_rss_mb'] * (k - 1)) / 1024:.1f} GiB (< 8 GB).",
    ]
    return lines


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cells", default="50000,200000,1000000", help="comma-separated numbers of cells")
    p.add_argument("--train-size", type=int, default=20_000, help="training cells (capped at the number of cells)")
    p.add_argument("--chunk-size", type=int, default=5000, help="cells per dask chunk for prediction")
    p.add_argument("--keep-output", action="store_true", help="keep the imputed zarr stores")
    p.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS.name}")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--input", help=argparse.SUPPRESS)
    p.add_argument("--output", help=argparse.SUPPRESS)
    p.add_argument("--mask", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return
    command = "python benchmarks/million.py " + " ".join(sys.argv[1:] if argv is None else argv)
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    commit = _commit()
    t0 = time.perf_counter()
    results = [run_size(int(n), args) for n in args.cells.split(",")]
    text = report(results, command.strip(), commit, started, time.perf_counter() - t0)
    print(text)
    if not args.no_write:
        RESULTS.write_text(text)
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
