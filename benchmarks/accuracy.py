"""Masked-value accuracy and clustering for every public dataset in ../shared/data plus the simulator (issue 7).

Protocol (the paper's, Methods "Accuracy comparison"): keep genes detected in >= 5% of cells; hide 10 non-zero
counts per gene, drawn among the gene's non-zero cells with probabilities from a logistic dropout curve fitted to
the data (``sdi.tl.mask``, seed 0); every method imputes the same masked matrix; MSE and Pearson r on the hidden
entries in log1p space (``sdi.tl.masked_metrics``). Where labels exist: the scanpy pipeline on each output with
Leiden bisected to the number of labels, ARI/AMI/FMI, UMAP silhouette and PCA-space silhouette (``sdi.tl.cluster``).
Every method except the paper preset runs with 3 seeds (mean and spread reported): the seed drives scdeepimpute's
fit, kNN's and MAGIC's randomness and, for every method, the clustering pipeline (PCA, neighbours, UMAP, Leiden),
whose UMAP silhouette moves by sd ~0.03 with the seed alone; on the simulator every entry of each output is also
scored against the pre-dropout counts (``all_mse``). MAGIC uses its exact solver up to ``MAGIC_EXACT_MAX_GENES``
genes and its approximate solver (PCA space, MAGIC's default ``n_pca=100``) above, where the exact one is too
slow here (the CellBench sets keep ~15k genes).

Run: ``python benchmarks/accuracy.py [--datasets pbmc4k,pbmc3k,...] [--seeds 3] [--out benchmarks/RESULTS_accuracy.md]``
"""

from __future__ import annotations

import argparse
import datetime
import platform
import subprocess
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
from scipy import sparse

import scdeepimpute as sdi

warnings.filterwarnings("ignore")
sc.settings.verbosity = 0
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

DATASETS = {
    "pbmc4k_2100": ("pbmc4k_2100/pbmc4k_2100.h5ad", "cell_type", None),
    "pbmc3k_ds30": ("pbmc3k_ds30/pbmc3k_ds30.h5ad", "cell_type", None),
    "mouse1m_10k": ("mouse1m_10k/mouse1m_10k.h5ad", None, None),
    "celseq2": ("cellbench/sc_celseq2.h5ad", "cell_line", ("demuxlet_cls", "SNG")),
    "dropseq": ("cellbench/sc_dropseq.h5ad", "cell_line", None),
    "celseq2_5cl_p1": ("cellbench/sc_celseq2_5cl_p1.h5ad", "cell_line_demuxlet", ("demuxlet_cls", "SNG")),
    "zeisel_200": ("zeisel_200/zeisel_200.h5ad", None, None),
}


def load(name: str) -> tuple[ad.AnnData, str | None]:
    if name == "simulation":
        a = sdi.datasets.simulate(preset="paper", random_state=0)
        labels = "group"
    else:
        path, labels, keep = DATASETS[name]
        a = ad.read_h5ad(SHARED / path)
        if keep is not None:
            a = a[a.obs[keep[0]] == keep[1]].copy()
        if labels is not None and labels not in a.obs:
            labels = "cell_type" if "cell_type" in a.obs else None
    a.var_names_make_unique()
    a.X = sparse.csr_matrix(a.X, dtype=np.float32)
    detected = np.asarray((a.X > 0).mean(axis=0)).ravel() >= 0.05
    return a[:, detected].copy(), labels


#: Above this many genes MAGIC runs with ``solver="approximate"`` (the exact solver took too long on ~15k genes).
MAGIC_EXACT_MAX_GENES = 5000


def masked_input(name: str):
    """The dataset ``name`` masked as in the benchmark: ``(X, info)`` with CSR masked counts and ``uns['masked']``."""
    a, _ = load(name)
    sdi.tl.mask(a, random_state=0)
    return sparse.csr_matrix(a.layers["masked"]), a.uns["masked"]


def fill_scores(model, X, info, fills=("detected", "expected")) -> list[float]:
    """Masked MSE and Pearson (log1p) of each of ``model``'s fills on ``X``: [mse, pearson] per fill."""
    out = model.impute(X, fills=fills)
    row = []
    for fill in fills:
        r = sdi.tl.masked_metrics(info["values"], out[fill][info["obs_idx"], info["var_idx"]])
        row += [r["mse"], r["pearson"]]
    return row


def run_dataset(name: str, seeds: int) -> pd.DataFrame:
    a, labels = load(name)
    sdi.tl.mask(a, random_state=0)
    magic_kwargs = {"magic": {"solver": "approximate"}} if a.n_vars > MAGIC_EXACT_MAX_GENES else None
    # (methods, per-method keywords, seed): peers and scdeepimpute's default preset per seed (the seed also drives
    # the clustering pipeline, whose UMAP silhouette moves with it), the paper preset once
    peers = {"none": "none", "nzmean": "nzmean", "knn": "knn", "magic": "magic"}
    runs = [(peers, magic_kwargs, seed) for seed in range(seeds)]
    runs += [({"deepimpute": "deepimpute"}, {"deepimpute": {"output": "both"}}, seed) for seed in range(seeds)]
    runs += [({"paper": "deepimpute"}, {"paper": {"preset": "paper"}}, 0)]
    frames = []
    for methods, kwargs, seed in runs:
        df = sdi.tl.compare(
            a,
            methods=methods,
            method_kwargs=kwargs,
            mask_key="masked",
            labels_key=labels,
            de=False,
            random_state=seed,
            dataset=name,
            on_error="warn",
        )
        df["seed"] = np.nan if "paper" in methods else seed
        frames.append(df)
    out = pd.concat(frames, ignore_index=True)
    if "true_counts" in a.layers:
        out = pd.concat([out, _all_entries(a, seeds)], ignore_index=True)
    return out


def _all_entries(a: ad.AnnData, seeds: int) -> pd.DataFrame:
    """Simulator only: every entry (zeros included) of each output against the pre-dropout counts, log1p MSE."""
    truth = np.log1p(a.layers["true_counts"].toarray() if sparse.issparse(a.layers["true_counts"]) else a.layers["true_counts"])
    rows = []
    inp = ad.AnnData(a.X.copy())
    outputs = {"none": sdi.tl.impute_none(inp), "nzmean": sdi.tl.impute_nzmean(inp), "knn": sdi.tl.impute_knn(inp)}
    try:
        outputs["magic"] = sdi.tl.impute_magic(inp)
    except ImportError:  # optional peer
        pass
    outputs["paper"] = sdi.tl.impute_deepimpute(inp, preset="paper", random_state=0)
    for seed in range(seeds):
        both = sdi.tl.impute_deepimpute(inp, output="both", random_state=seed)
        outputs[f"deepimpute_imputed#{seed}"] = both["imputed"]
        outputs[f"deepimpute_detected#{seed}"] = both["detected"]
    for method, Y in outputs.items():
        name, _, seed = method.partition("#")
        rows.append({"dataset": "simulation", "method": name, "metric": "all_mse", "value": float(np.mean((np.log1p(Y) - truth) ** 2)), "seed": float(seed) if seed else np.nan})
    return pd.DataFrame(rows)


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    metrics = ["mse", "pearson", "ari", "ami", "fmi", "silhouette", "silhouette_pca", "all_mse", "time_s"]
    g = df[df.metric.isin(metrics)].groupby(["dataset", "method", "metric"])["value"]
    table = g.mean().unstack("metric")
    spread = g.std().unstack("metric")
    cols = [m for m in metrics if m in table]
    fmt = table[cols].copy().astype(object)
    for c in cols:
        for idx in table.index:
            v, s = table.loc[idx, c], spread.loc[idx, c] if c in spread else np.nan
            fmt.loc[idx, c] = "" if pd.isna(v) else (f"{v:.3f}" if pd.isna(s) else f"{v:.3f} ± {s:.3f}")
    return fmt


def markdown(table: pd.DataFrame) -> str:
    """A pipe table (pandas' ``to_markdown`` needs the optional ``tabulate``)."""
    head = [*table.index.names, *table.columns]
    lines = ["| " + " | ".join(map(str, head)) + " |", "|" + "---|" * len(head)]
    for idx, row in table.iterrows():
        idx = idx if isinstance(idx, tuple) else (idx,)
        lines.append("| " + " | ".join(map(str, [*idx, *row.to_numpy()])) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=",".join([*DATASETS, "simulation"]))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).with_name("RESULTS_accuracy.md")))
    args = parser.parse_args()
    start = time.perf_counter()
    frames = []
    for name in args.datasets.split(","):
        t0 = time.perf_counter()
        frames.append(run_dataset(name, args.seeds))
        print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)
        print(markdown(summarise(frames[-1])), flush=True)
    df = pd.concat(frames, ignore_index=True)
    table = markdown(summarise(df))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in line), platform.processor())
    text = (
        f"# Accuracy benchmark (issue 7)\n\n{datetime.date.today()}, commit {commit}, {cpu}, "
        f"{len(__import__('os').sched_getaffinity(0))} cores; total {time.perf_counter() - start:.0f} s.\n\n"
        f"Command: `python benchmarks/accuracy.py --datasets {args.datasets} --seeds {args.seeds}`\n\n"
        f"Protocol: see the module docstring of `benchmarks/accuracy.py`. `deepimpute_detected` is "
        f"`layers['imputed_detected']`, `deepimpute_imputed` is `layers['imputed']` (default preset); `paper` is "
        f"`preset='paper'` (seed 0). Values are mean ± sd over {args.seeds} seeds (fit and clustering seeds). MAGIC: exact solver up to "
        f"{MAGIC_EXACT_MAX_GENES} genes, approximate solver above.\n\n{table}\n"
    )
    Path(args.out).write_text(text)
    df.to_csv(Path(args.out).with_suffix(".csv"), index=False)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
