"""Reproduce the DeepImpute paper's evaluation (Fig. 2 masking accuracy, Fig. 5 clustering + DE) with scdeepimpute.

Fig. 2 (accuracy, paper Methods "Accuracy comparison on real datasets") on the datasets in ../shared/data:
mouse1m_10k, pbmc4k_2100, pbmc3k_ds30, keeping genes detected in >= 5% of cells; 10 non-zeros per gene are
masked (``scdeepimpute.tl.mask``), every method imputes the masked counts, MSE / Pearson on log1p of the
masked entries, plus per-gene and per-cell MSE.

Fig. 5 (downstream, paper Methods "Clustering" / "Differential expression analysis") on
``scdeepimpute.datasets.simulate(preset="paper")``: Leiden tuned to 5 clusters on each method's output,
ARI / AMI / FMI / silhouette against the simulated groups, and the t-test DE ROC AUC against the true DE
genes. The same run also scores recovery of the simulated dropouts (MSE / Pearson against the true counts).

Methods: none, nzmean, knn (k=15), magic (only if the ``magic`` package is installed), DeepImpute with the
default preset (its two outputs: ``deepimpute_imputed`` = expected value, ``deepimpute_detected`` = value if
detected) and with ``preset="paper"`` (``deepimpute-paper``, one output).

Run from the repository root:

    .venv/bin/python benchmarks/paper.py

It prints the tables and writes benchmarks/RESULTS_paper.md (figures and tidy CSVs go to benchmarks/out/,
git-ignored).
``--quick`` runs a smoke version (one dataset of 200 cells, a 300-cell simulation, one epoch; methods none, nzmean
and the default preset) and writes nothing unless --out is given.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import anndata as ad  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import scanpy as sc  # noqa: E402
from scipy import stats  # noqa: E402

import scdeepimpute as sdi  # noqa: E402
import scdeepimpute.pl  # noqa: E402, F401
import scdeepimpute.tl  # noqa: E402, F401

sys.path.insert(0, str(Path(__file__).parent))
import _common as C  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ["mouse1m_10k", "pbmc4k_2100", "pbmc3k_ds30"]
SEED = 0


def methods(quick: bool) -> tuple[dict, dict]:
    """Methods and their keyword arguments (DeepImpute gets fewer epochs in --quick mode)."""
    fast = {"max_epochs": 1} if quick else {}
    m = {"none": "none", "nzmean": "nzmean", "knn": "knn", "magic": "magic", "deepimpute": "deepimpute"}
    m["deepimpute-paper"] = "deepimpute"
    if quick:  # the smoke test: one peer and the default preset (each output is clustered, which takes the time)
        m = {"none": "none", "nzmean": "nzmean", "deepimpute": "deepimpute"}
    kw = {
        "deepimpute": {"output": "both", **fast},
        "deepimpute-paper": {"output": "imputed", "preset": "paper", **fast},
    }
    return m, kw


def load(name: str, quick: bool) -> ad.AnnData:
    """Genes detected in >= 5% of cells (``--quick``: of 200 random cells)."""
    return C.load_dataset(name, min_detection=0.05, n_obs=200 if quick else None, seed=SEED)[0]


def paired_p(scores: dict, ref: str, axis: str) -> dict[str, float]:
    """Paired t-test p-values (as the authors' run_accuracy.py) of per-gene/per-cell MSE: ref vs each method."""
    out = {}
    base = scores[ref][f"mse_per_{axis}"]
    for m, s in scores.items():
        if m == ref:
            continue
        other = s[f"mse_per_{axis}"]
        idx = base.index.intersection(other.index)
        out[m] = float(stats.ttest_rel(base[idx], other[idx]).pvalue)
    return out


def fig2(quick: bool, figdir: Path | None) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    m, kw = methods(quick)
    tables, per_axis, info = [], [], {}
    for name in DATASETS[:1] if quick else DATASETS:
        if not C.dataset_available(name):
            print(f"[fig2] {name} not in {C.SHARED}, skipped")
            continue
        t0 = time.perf_counter()
        a = load(name, quick)
        sdi.tl.mask(a, n_masked=10, mode="gene", random_state=SEED)
        info[name] = {"shape": a.shape, "n_masked": int(a.uns["masked"]["values"].size)}
        df = sdi.tl.compare(
            a, methods=m, method_kwargs=kw, mask_key="masked", random_state=SEED, dataset=name, store=True
        )
        tables.append(df)
        scores = {meth: sdi.tl.masked_scores(a, layer=f"compare_{meth}") for meth in df["method"].unique()}
        ref = "deepimpute_detected" if "deepimpute_detected" in scores else next(iter(scores))
        p_gene, p_cell = paired_p(scores, ref, "gene"), paired_p(scores, ref, "cell")
        for meth, s in scores.items():
            per_axis.append(
                {
                    "dataset": name,
                    "method": meth,
                    "median_mse_gene": float(s["mse_per_gene"].median()),
                    "median_mse_cell": float(s["mse_per_cell"].median()),
                    f"p_gene_vs_{ref}": p_gene.get(meth, np.nan),
                    f"p_cell_vs_{ref}": p_cell.get(meth, np.nan),
                }
            )
        if figdir is not None:
            layers = [f"compare_{x}" for x in scores]
            sdi.pl.masked_scatter(a, layers=layers, ncols=len(layers)).savefig(figdir / f"fig2a_{name}.png", dpi=120)
            sdi.pl.masked_mse(scores).savefig(figdir / f"fig2b_{name}.png", dpi=120)
        info[name]["wall_s"] = time.perf_counter() - t0
        print(f"[fig2] {name} {a.shape}: {time.perf_counter() - t0:.0f} s")
    return pd.concat(tables, ignore_index=True), pd.DataFrame(per_axis), info


def fig5(quick: bool, figdir: Path | None) -> tuple[pd.DataFrame, dict, dict]:
    m, kw = methods(quick)
    t0 = time.perf_counter()
    a = sdi.datasets.simulate(preset="paper", random_state=SEED, **({"n_obs": 300, "n_vars": 500} if quick else {}))
    sdi.tl.dropout_mask(a)
    df = sdi.tl.compare(
        a,
        methods=m,
        method_kwargs=kw,
        mask_key="dropout",
        labels_key="group",
        random_state=SEED,
        dataset="sim",
        store=True,
    )
    roc = {meth: sdi.tl.de_scores(a, layer=f"compare_{meth}", groupby="group") for meth in df["method"].unique()}
    roc_drop = {
        meth: sdi.tl.de_scores(a, layer=f"compare_{meth}", groupby="group", unranked="drop")["auc"]
        for meth in df["method"].unique()
    }
    if figdir is not None:
        keys = [f"compare_{x}" for x in df["method"].unique()]
        sdi.pl.umap_panels(a, keys=keys, color="group", ncols=len(keys)).savefig(figdir / "fig5a_umap.png", dpi=120)
        sdi.pl.de_roc(roc).savefig(figdir / "fig5c_roc.png", dpi=120)
    info = {
        "shape": a.shape,
        "dropout_rate": float(len(a.uns["dropout"]["values"]) / max(1, a.layers["true_counts"].nnz)),
        "zero_fraction": float(1 - a.X.nnz / np.prod(a.shape)),
        "wall_s": time.perf_counter() - t0,
    }
    print(f"[fig5] sim {a.shape}: {info['wall_s']:.0f} s")
    return df, roc_drop, info


def fmt(df: pd.DataFrame, cols: list[str], digits: int = 3) -> str:
    show = df[[c for c in cols if c in df.columns]].copy()
    header = "| method | " + " | ".join(show.columns) + " |"
    sep = "|---|" + "---|" * len(show.columns)
    lines = [header, sep]
    for idx, row in show.iterrows():
        vals = []
        for col, v in row.items():
            if pd.isna(v):
                vals.append("n/a")
            elif col.startswith("p_"):
                vals.append("< 1e-300" if v == 0 else f"{v:.1e}")  # float64 underflow shows as 0
            else:
                vals.append(f"{v:.2e}" if 0 < abs(v) < 10 ** (-digits) else f"{v:.{digits}f}")
        lines.append(f"| {idx} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def git_commit() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "scdeepimpute", "benchmarks/paper.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        return sha.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores visible"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores visible"


def _magic_available() -> bool:
    try:
        import magic  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (200 cells, 1 epoch, three methods)")
    parser.add_argument("--skip-fig2", action="store_true")
    parser.add_argument("--skip-fig5", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="markdown report (default benchmarks/RESULTS_paper.md)")
    parser.add_argument("--figdir", type=Path, default=ROOT / "benchmarks" / "out")
    args = parser.parse_args(argv)
    out = args.out if args.out is not None else (None if args.quick else ROOT / "benchmarks" / "RESULTS_paper.md")
    figdir = args.figdir
    figdir.mkdir(parents=True, exist_ok=True)
    sc.settings.verbosity = 0
    pd.set_option("display.width", 160)
    t_start = time.perf_counter()
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    commit = git_commit()  # at the start: other work may be committed while this runs
    report = []

    if not args.skip_fig2:
        df2, per_axis, info2 = fig2(args.quick, figdir)
        df2.to_csv(figdir / "fig2_metrics.csv", index=False)
        per_axis.to_csv(figdir / "fig2_per_axis.csv", index=False)
        report.append("## Fig. 2: masking accuracy on real data\n")
        report.append(
            "Genes detected in >= 5% of cells; 10 non-zeros masked per gene (probabilities from the fitted "
            "logistic dropout curve, `tl.mask`, seed 0). MSE and Pearson's r on log1p of the masked entries; "
            "`time_s` = imputation wall time. Per-gene/per-cell: median MSE over genes/cells with masked "
            "entries, and paired t-test p-values of those MSEs against `deepimpute_detected` (as the authors' "
            "`run_accuracy.py`).\n"
        )
        for name, inf in info2.items():
            wide = df2[df2["dataset"] == name].pivot(index="method", columns="metric", values="value")
            pa = per_axis[per_axis["dataset"] == name].set_index("method")
            wide = wide.join(pa.drop(columns="dataset"))
            wide = wide.reindex(list(dict.fromkeys(df2.loc[df2["dataset"] == name, "method"])))
            cols = ["mse", "pearson", "median_mse_gene", "median_mse_cell"]
            cols += [c for c in wide.columns if c.startswith("p_")] + ["time_s"]
            title = f"### {name}: {inf['shape'][0]} cells x {inf['shape'][1]} genes, {inf['n_masked']} masked entries"
            print(
                "\n" + title + "\n" + wide[[c for c in cols if c in wide]].to_string(float_format=lambda v: f"{v:.4g}")
            )
            report.append(title + "\n\n" + fmt(wide, cols) + "\n")

    if not args.skip_fig5:
        df5, roc_drop, info5 = fig5(args.quick, figdir)
        df5.to_csv(figdir / "fig5_metrics.csv", index=False)
        wide = df5.pivot(index="method", columns="metric", values="value")
        wide["de_auc_ranked_only"] = pd.Series(roc_drop)
        wide = wide.reindex(list(dict.fromkeys(df5["method"])))
        cols = ["ari", "ami", "fmi", "silhouette", "de_auc", "de_auc_ranked_only", "mse", "pearson", "time_s"]
        title = (
            f'## Fig. 5: Splatter-style simulation (`simulate(preset="paper")`, seed 0), '
            f"{info5['shape'][0]} cells x {info5['shape'][1]} genes"
        )
        print("\n" + title + "\n" + wide[cols].to_string(float_format=lambda v: f"{v:.4g}"))
        report.append(title + "\n")
        report.append(
            f"Observed zeros: {info5['zero_fraction']:.1%}; simulated dropout removed {info5['dropout_rate']:.1%} of "
            "the true non-zeros. Clustering: Seurat-like scanpy pipeline on each output, Leiden resolution "
            "bisected to 5 clusters (`tl.cluster`), ARI/AMI/FMI vs the simulated groups, silhouette of the UMAP "
            "by group. `de_auc`: t-test one group vs rest, Benjamini-Hochberg, top 500 genes per group scored "
            "1 - p_adj, all other (group, gene) pairs scored 0, ROC AUC vs the true DE flags (`tl.de_scores`); "
            "`de_auc_ranked_only`: only the ranked pairs, as the authors' `plot_DEGs.py`. `mse`/`pearson`: "
            "recovery of the dropped entries (log1p, vs the true counts; `tl.dropout_mask`).\n"
        )
        report.append(fmt(wide, cols) + "\n")

    total = time.perf_counter() - t_start
    print(f"\ntotal wall time: {total / 60:.1f} min")
    if out is not None:
        head = [
            "# scdeepimpute: the paper's evaluation, reproduced (benchmarks/paper.py)\n",
            f"- Date: {started}",
            f"- Commit: {commit} (at start)",
            f"- CPU: {cpu()} (machine shared with other jobs; timings are indicative)",
            f"- Python {platform.python_version()}; scdeepimpute {version('scdeepimpute')}, "
            f"scanpy {version('scanpy')}, anndata {version('anndata')}, tensorflow {version('tensorflow')}, "
            f"scikit-learn {version('scikit-learn')}",
            f"- Command (repository root): `.venv/bin/python benchmarks/paper.py{' --quick' if args.quick else ''}` ("
            f"total wall time {total / 60:.1f} min)",
            "- MAGIC: " + ("included" if _magic_available() else "not installed here, so not run"),
            "- Data: ../shared/data (see each folder's PROVENANCE.md). The paper's Jurkat/293T/neuron9k/GSE67602 "
            "and Hrvatin data are not available here, so the numbers are not comparable one to one with the "
            "paper's figures.\n",
        ]
        out.write_text("\n".join(head) + "\n" + "\n".join(report))
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
