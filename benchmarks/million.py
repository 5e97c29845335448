"""Issue 5: DeepImpute on a million cells out of core (train on a subsample, stream the prediction to zarr).

Steps, for each size (``--cells``, default 50,000, 200,000 and 1,000,000):

1. **Simulate** a cells x 3200 genes sparse count matrix straight to an AnnData zarr store, in chunks of
   5,000 cells (never the whole matrix in memory): ``sdi.datasets.simulate_chunks`` with the speed benchmarks'
   Splat parameters and smaller libraries (``SIM_PARAMS``: 5 cell types, 20% DE genes per type, library sizes
   LogNormal(6.5, 0.3), no dropout; about 8% of the entries are non-zero, the exact fraction is reported).
   Cells are i.i.d., so a contiguous block of cells is a random sample of cells.
2. **Mask** a held-aside block of 10,000 cells (in the middle of the file) before writing it: 10
   non-zeros per gene among those cells are set to 0 with ``scdeepimpute.tl.mask_counts`` (the paper's
   logistic dropout weighting; genes with fewer than 11 non-zeros there are skipped). The true values
   and positions are kept aside.
3. **Impute** in a fresh subprocess (so its peak RSS is its own): ``scdeepimpute.dask.read_lazy``
   (chunks of ``--chunk-size`` cells) -> ``scdeepimpute.dask.fit(DeepImpute(), train_size=...)`` (only the
   training cells are read into memory) -> ``scdeepimpute.dask.impute_to_zarr`` (both layers, ``imputed`` and
   ``imputed_detected``, streamed to a zarr store in one pass).
4. **Score** the masked entries of the held-aside cells (read back from the output store): MSE and
   Pearson r on log1p counts for ``imputed_detected``, ``imputed`` and no imputation (zeros).

Peak RSS = ``ru_maxrss`` of the imputation subprocess (includes TensorFlow, ~1 GB by itself); it is
also sampled every 0.5 s to give the peak of the fit and of the prediction separately.

Usage (from the repository root)::

    python benchmarks/million.py                         # 50k, 200k, 1M cells, 20k training cells -> RESULTS_million.md
    python benchmarks/million.py --cells 200000          # another size
    python benchmarks/million.py --cells 50000 --no-write  # print only
    python benchmarks/million.py --quick                  # 2000 x 500, 1 epoch, in one process, print only (CI)

Data and outputs go to ``$SDI_BENCH_CACHE`` (default /tmp/scdeepimpute_bench/million); the input stores
are kept for reruns (1M cells: 0.4 GB), the imputed stores (1M cells: 21 GiB) are deleted after scoring
unless ``--keep-output``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import _common as C  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CACHE = C.CACHE / "million"
RESULTS = ROOT / "benchmarks" / "RESULTS_million.md"

N_GENES = 3200
GEN_CHUNK = 5000
N_HELD = 10_000
SEED = 0

#: The speed data's Splat parameters with smaller libraries: 8.4% of the entries are non-zero (at 2000 cells), as
#: in the scale runs before the benchmarks shared one simulator (8.2%, 2962df5).
SIM_PARAMS = {**C.SIM_PARAMS, "lib_loc": 6.5}
SIM_DESCRIPTION = (
    "Splat: `sdi.datasets.simulate_chunks(5000, n_vars=3200, **benchmarks/million.py:SIM_PARAMS)`, 5 cell types "
    "(10/10/20/20/40%), 20% DE genes per type, library sizes LogNormal(6.5, 0.3), no dropout; cells i.i.d., "
    "generated and written in chunks of 5000 cells"
)


# --------------------------------------------------------------------------- simulation
def simulate_to_zarr(
    path: Path, n_cells: int, held: tuple[int, int], gen_chunk: int = GEN_CHUNK, seed: int = SEED
) -> dict:
    """Write the simulated counts (held-aside block masked) as an AnnData zarr store; return a summary.

    ``held`` starts and ends on multiples of ``gen_chunk`` (or at the last cell): its chunks are gathered and
    masked as one block, so the mask draws ``10`` non-zeros per gene among all the held-aside cells.
    """
    import anndata as ad
    import pandas as pd
    import zarr

    from scdeepimpute.datasets import simulate_chunks
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

    types = np.empty(n_cells, np.int16)
    nnz = 0
    mask = None
    pending = []  # the held-aside block's chunks, masked together once complete
    chunks = simulate_chunks(gen_chunk, n_obs=n_cells, n_vars=N_GENES, random_state=seed, **SIM_PARAMS)
    start = 0
    for chunk in chunks:
        stop = start + chunk.n_obs
        types[start:stop] = chunk.obs["group"].cat.codes.to_numpy()
        csr = chunk.X
        if held[0] <= start < held[1]:
            pending.append(csr)
            if stop < held[1]:
                start = stop
                continue
            from scipy import sparse

            res = mask_counts(sparse.vstack(pending, format="csr"), n_masked=10, mode="gene", random_state=seed)
            mask = {"obs_idx": res.obs_idx + held[0], "var_idx": res.var_idx, "values": res.values}
            mask["n_skipped_genes"] = int(res.n_skipped)
            csr, pending, first = res.X, [], held[0]
        else:
            first = start
        data.append(csr.data.astype(np.float32))
        indices.append(csr.indices.astype(np.int32))
        indptr[first + 1 : stop + 1] = csr.indptr[1:].astype(np.int64) + nnz
        nnz += csr.nnz
        start = stop
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical.from_codes(types, categories=[f"Group{i + 1}" for i in range(types.max() + 1)])},
        index=pd.Index([f"c{i:07d}" for i in range(n_cells)]),
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
def worker(args) -> None:
    """Fit on a subsample and stream the imputation to zarr; print one JSON line of measurements."""
    import warnings

    warnings.simplefilter("ignore")
    sampler = C.RssSampler(interval=0.5)
    C.quiet()
    import scdeepimpute as sdi
    from scdeepimpute import dask as sdx

    C.import_keras()
    out: dict = {"rss_after_imports_mb": sampler.now()}
    t0 = time.perf_counter()
    adata = sdx.read_lazy(args.input, chunk_size=args.chunk_size)
    out["read_lazy_s"] = time.perf_counter() - t0
    out["read_lazy_rss_mb"] = sampler.now() - out["rss_after_imports_mb"]  # obs/var in memory

    epochs = {} if args.max_epochs is None else {"max_epochs": args.max_epochs}
    sampler.reset()
    t0 = time.perf_counter()
    model = sdx.fit(sdi.DeepImpute(random_state=SEED, **epochs), adata, train_size=args.train_size)
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
    out["peak_rss_mb"] = C.peak_rss_mb()
    return out


# --------------------------------------------------------------------------- driver
def run_size(n_cells: int, args) -> dict:
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"splat_{n_cells}.zarr"
    first = n_cells // 2 // args.gen_chunk * args.gen_chunk
    held = (first, min(first + args.held, n_cells))
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists() and json.loads(meta.read_text())["held"] == list(held):
        sim = json.loads(meta.read_text())
        print(f"[{n_cells}] reusing {path} (simulated in {sim['sim_s']:.0f} s)", flush=True)
    else:
        print(f"[{n_cells}] simulating to {path} ...", flush=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # zarr/anndata format notices
            sim = simulate_to_zarr(path, n_cells, held, args.gen_chunk)
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
        *([] if args.max_epochs is None else ["--max-epochs", str(args.max_epochs)]),
    ]
    print(f"[{n_cells}] imputing (train_size={train_size}, chunk_size={args.chunk_size}) ...", flush=True)
    t0 = time.perf_counter()
    if args.quick:  # in this process: one TensorFlow start fewer (its peak RSS then includes the simulation's)
        res = worker(_parser().parse_args(cmd[2:]))
    else:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            sys.stderr.write(proc.stderr[-5000:])
            msg = f"worker failed for {n_cells} cells (exit {proc.returncode})"
            raise RuntimeError(msg)
        res = json.loads(lines[-1][len("RESULT ") :])
    wall = time.perf_counter() - t0
    res["worker_wall_s"] = wall
    res["sim"] = sim
    res["train_size"] = train_size
    res["chunk_size"] = args.chunk_size
    res["held"] = held[1] - held[0]
    if not args.keep_output:
        shutil.rmtree(out, ignore_errors=True)
    print(f"[{n_cells}] {json.dumps(res)}", flush=True)
    return res


def _ram_gib() -> int:
    return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)


def report(
    results: list[dict], command: str, commit: str, started: str, total_s: float, extrapolate: bool = True
) -> str:
    from importlib.metadata import version

    import scdeepimpute as sdi

    machine = C.machine_info()
    lines = [
        "# DeepImpute on a million cells, out of core (issue 5)",
        "",
        f"{started}, commit {commit}, {machine['cpu']}, {_ram_gib()} GiB RAM (shared with other jobs), "
        f"TF {version('tensorflow')} / Keras {version('keras')} / dask "
        f"{version('dask')} / zarr {version('zarr')}.",
        f"Command: `{command}` (total {total_s / 60:.1f} min including simulation).",
        "",
        f"Data: simulated ({SIM_DESCRIPTION}); written to an AnnData zarr store (CSR) chunk by chunk. "
        f"Masking: in a held-aside block of {results[0]['held']:,} cells (middle of the file), 10 non-zeros per "
        "gene set to 0 with `scdeepimpute.tl.mask_counts` (paper's logistic weighting) before writing; MSE / Pearson r "
        "on log1p counts "
        "of those entries. Model: `DeepImpute()` (default preset: every gene with non-zero variance imputed, "
        f"early stopping, patience {sdi.DeepImpute().params['patience']}), fitted with "
        "`scdeepimpute.dask.fit(train_size=...)`, prediction "
        "streamed with `scdeepimpute.dask.impute_to_zarr` (layers `imputed` and `imputed_detected`, float32, "
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
    lines += _extrapolation(results) if extrapolate else []
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


def _parser() -> argparse.ArgumentParser:
    p = C.parser(__doc__)
    p.add_argument("--cells", default="50000,200000,1000000", help="comma-separated numbers of cells")
    p.add_argument("--train-size", type=int, default=20_000, help="training cells (capped at the number of cells)")
    p.add_argument("--chunk-size", type=int, default=5000, help="cells per dask chunk for prediction")
    p.add_argument("--held", type=int, default=N_HELD, help="held-aside (masked) cells, a multiple of --gen-chunk")
    p.add_argument("--gen-chunk", type=int, default=GEN_CHUNK, help="cells per simulated chunk")
    p.add_argument("--max-epochs", type=int, default=None, help="cap the fit's epochs (default: the preset's)")
    p.add_argument("--keep-output", action="store_true", help="keep the imputed zarr stores")
    p.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS.name}")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--input", help=argparse.SUPPRESS)
    p.add_argument("--output", help=argparse.SUPPRESS)
    p.add_argument("--mask", help=argparse.SUPPRESS)
    return p


def main(argv=None) -> None:
    args = _parser().parse_args(argv)
    if args.quick:  # a store of its own: the size differs from the real runs'
        global CACHE, N_GENES
        CACHE, N_GENES = C.CACHE / "million_quick", 500
        args.cells, args.train_size, args.chunk_size = "2000", 1000, 500
        args.held, args.gen_chunk, args.max_epochs, args.no_write = 1000, 500, 1, True
    if args.worker:
        print("RESULT " + json.dumps(worker(args)), flush=True)
        return
    command = "python benchmarks/million.py " + " ".join(sys.argv[1:] if argv is None else argv)
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    commit = C.machine_info()["commit"]
    t0 = time.perf_counter()
    results = [run_size(int(n), args) for n in args.cells.split(",")]
    text = report(results, command.strip(), commit, started, time.perf_counter() - t0, not args.quick)
    print(text)
    if not args.no_write:
        RESULTS.write_text(text)
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
