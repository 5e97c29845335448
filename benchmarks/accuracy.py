"""Stress grid of masked accuracy (issue 14 item 1): every public set x depth x masking scheme, with the margins.

Grid: each public scRNA-seq set in ../shared/data (``_common.DATASETS``; the FISH table is not scRNA-seq) at full depth
and binomially thinned to 20% and 10% of its molecules (``thin``: every non-zero count ``c`` becomes
``Binomial(c, p)``, seed 0; the shallow regime), x two masking schemes of ``sdi.tl.mask`` (``curve``: the paper's,
non-zeros drawn by the fitted dropout curve; ``uniform``: every non-zero alike, the flat-curve regime).

Protocol per cell (the paper's, Methods "Accuracy comparison"): after thinning, keep genes detected in >= 5% of
cells; hide 10 non-zeros per gene (``sdi.tl.mask``, seed 0; the same mask for every method); every method imputes
the same masked matrix; MSE and Pearson r on the hidden entries in log1p space (``sdi.tl.masked_metrics``).
Methods: ``none``, ``nzmean``, ``knn``, ``magic`` (``sdi.tl.impute_magic``; exact solver up to
``MAGIC_EXACT_MAX_GENES`` genes, approximate above, where the exact one is too slow here) once, seed 0; ours
(``sdi.pp.deepimpute`` default preset: ``imputed`` and ``imputed_detected`` from one fit) once per seed.
On labelled sets, ``imputed`` and raw (the masked counts) are clustered (``sdi.tl.cluster``: Leiden bisected to
the number of labels) with the same seed as the fit, and ARI against the labels is reported.

Margins (means over seeds): ``MSE margin`` = ``imputed_detected`` MSE minus the best (lowest) MSE of none /
nzmean / kNN / MAGIC (issue 14 wants < 0); ``Pearson margin`` = ``imputed_detected`` Pearson minus MAGIC's
(wants > 0); ``ARI margin`` = ``imputed`` ARI minus raw ARI (wants >= -0.02).

Molecular cross-validation (issue 14 item 2; ``--mcv-depths``, default full depth only): per dataset, thinned and
gene-filtered as above but not masked, molecules split 90% / 10% (``sdi.tl.molecular_split``, seed 0); every peer and
our fit (``fills=("expected", "detected", "lognorm")``, once per seed) impute the 90% part, scored against the 10%
part by ``sdi.tl.mcv_scores`` (log-space MSE and Poisson loss, the Open Problems protocol; ``imputed_lognorm`` enters
as ``expm1`` of it).

Run: ``python benchmarks/accuracy.py [--datasets pbmc4k_2100,...] [--depths 1,0.2,0.1] [--schemes curve,uniform]
[--mcv-depths 1] [--seeds 1] [--out benchmarks/RESULTS_accuracy.md]``; ``--quick``: one small set (200 cells of
pbmc4k_2100), full depth, curve masking and MCV, 1 seed, 3 epochs, no MAGIC (a smoke test for CI, < 60 s).
"""

from __future__ import annotations

import argparse
import shlex
import sys
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
# _common is a sibling script, not a package: importable once this folder is on sys.path
sys.path.insert(0, str(Path(__file__).parent))
import _common as C  # noqa: E402

#: Above this many genes MAGIC runs with ``solver="approximate"`` (the exact solver took too long on ~15k genes).
MAGIC_EXACT_MAX_GENES = 5000
PEERS = ("none", "nzmean", "knn", "magic")
OURS = ("imputed", "imputed_detected")
#: Our layers scored by molecular cross-validation: the two count layers and the log-normalised one.
MCV_OURS = ("imputed", "imputed_detected", "imputed_lognorm")


def thin(X: sparse.csr_matrix, p: float, seed: int = 0) -> sparse.csr_matrix:
    """Keep each molecule with probability ``p``: ``Binomial(count, p)`` on every non-zero, seeded."""
    if p >= 1:
        return X.copy()
    rng = np.random.default_rng(seed)
    out = X.copy()
    out.data = rng.binomial(out.data.astype(np.int64), p).astype(np.float32)
    out.eliminate_zeros()
    return out


def cell_input(name: str, depth: float, scheme: str, *, max_cells: int | None = None) -> tuple[ad.AnnData, str | None]:
    """One grid cell's data: thinned, genes detected in >= 5% of cells, masked (``layers/uns['masked']``)."""
    a, labels = C.load_dataset(name, min_detection=0.0)  # every gene: the 5% filter runs after thinning
    if max_cells is not None and a.n_obs > max_cells:
        a = a[np.random.default_rng(0).choice(a.n_obs, max_cells, replace=False)].copy()
    a.X = thin(a.X, depth)
    detected = np.asarray((a.X > 0).mean(axis=0)).ravel() >= 0.05
    a = a[:, detected].copy()
    sdi.tl.mask(a, scheme=scheme, random_state=0)
    return a, labels


def _ari(Y, adata: ad.AnnData, labels: str, seed: int) -> float:
    tmp = ad.AnnData(Y, obs=adata.obs[[labels]].copy())
    sdi.tl.cluster(tmp, labels_key=labels, random_state=seed, key_added="c")
    return float(sdi.tl.clustering_scores(tmp, labels_key=labels, key="c")["ari"])


def run_cell(  # noqa: PLR0913
    name: str, depth: float, scheme: str, seeds: list[int], *, peers=PEERS, ours_kwargs=None, max_cells=None
) -> pd.DataFrame:
    """Long rows (dataset, depth, scheme, method, seed, metric, value) of one grid cell."""
    a, labels = cell_input(name, depth, scheme, max_cells=max_cells)
    magic_kwargs = {"solver": "approximate"} if a.n_vars > MAGIC_EXACT_MAX_GENES else {}
    peer_df = sdi.tl.compare(
        a,
        methods=list(peers),
        method_kwargs={"magic": magic_kwargs},
        mask_key="masked",
        random_state=0,
        on_error="warn",
    )
    peer_df["seed"] = 0
    frames = [peer_df]
    X = sparse.csr_matrix(a.layers["masked"])
    info = a.uns["masked"]
    for seed in seeds:
        t0 = time.perf_counter()
        out = sdi.tl.impute_deepimpute(
            ad.AnnData(X.copy(), obs=pd.DataFrame(index=a.obs_names), var=pd.DataFrame(index=a.var_names)),
            output="both",
            random_state=seed,
            **(ours_kwargs or {}),
        )
        elapsed = time.perf_counter() - t0
        rows = []
        for method, key in (("imputed", "imputed"), ("imputed_detected", "detected")):
            m = sdi.tl.masked_metrics(info["values"], out[key][info["obs_idx"], info["var_idx"]])
            rows += [(method, "mse", m["mse"]), (method, "pearson", m["pearson"]), (method, "time_s", elapsed)]
        if labels is not None:
            for method, Y in (("imputed", out["imputed"]), ("none", X.toarray())):
                t0 = time.perf_counter()
                rows.append((method, "ari", _ari(Y, a, labels, seed)))
                rows.append((method, "cluster_s", time.perf_counter() - t0))
        df = pd.DataFrame(rows, columns=["method", "metric", "value"])
        df["seed"] = seed
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    df.insert(0, "scheme", scheme)
    df.insert(0, "depth", depth)
    df.insert(0, "dataset", name)
    df["n_obs"], df["n_vars"] = a.n_obs, a.n_vars
    return df


def run_mcv(
    name: str, depth: float, seeds: list[int], *, peers=PEERS, ours_kwargs=None, max_cells=None
) -> pd.DataFrame:
    """Molecular cross-validation of one dataset at one depth: long rows with metrics ``mcv_mse``/``mcv_poisson``."""
    a, _ = C.load_dataset(name, min_detection=0.0)
    if max_cells is not None and a.n_obs > max_cells:
        a = a[np.random.default_rng(0).choice(a.n_obs, max_cells, replace=False)].copy()
    a.X = thin(a.X, depth)
    a = a[:, np.asarray((a.X > 0).mean(axis=0)).ravel() >= 0.05].copy()
    train, test = sdi.tl.molecular_split(a, random_state=0)
    rows = []
    for method in peers:
        kwargs = {"solver": "approximate"} if method == "magic" and a.n_vars > MAGIC_EXACT_MAX_GENES else {}
        scores = sdi.tl.mcv_scores(getattr(sdi.tl, f"impute_{method}")(train, **kwargs), test)
        rows += [(method, 0, f"mcv_{k}", v) for k, v in scores.items()]
    for seed in seeds:
        work = train.copy()
        sdi.pp.deepimpute(work, fills=("expected", "detected", "lognorm"), random_state=seed, **(ours_kwargs or {}))
        for method in MCV_OURS:
            Y = work.layers[method]
            # the log-normalised layer enters the protocol as counts per 1e4, normalised again like every output
            scores = sdi.tl.mcv_scores(np.expm1(Y) if method.endswith("_lognorm") else Y, test)
            rows += [(method, seed, f"mcv_{k}", v) for k, v in scores.items()]
    df = pd.DataFrame(rows, columns=["method", "seed", "metric", "value"])
    df.insert(0, "scheme", "mcv")
    df.insert(0, "depth", depth)
    df.insert(0, "dataset", name)
    df["n_obs"], df["n_vars"] = a.n_obs, a.n_vars
    return df


def mcv_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and depth: every method's MCV scores (mean over seeds) and the two margins issue 14 asks for."""
    mean = df.groupby(["dataset", "depth", "method", "metric"], sort=False)["value"].mean().unstack("metric")
    rows = []
    for (name, depth), t in mean.groupby(level=["dataset", "depth"], sort=False):
        t = t.droplevel(["dataset", "depth"])
        others = t.loc[[m for m in PEERS if m in t.index]]
        ours = t.loc[[m for m in MCV_OURS if m in t.index]]
        row = {"dataset": name, "depth": depth}
        row.update({m: f"{r['mcv_mse']:.3f} / {r['mcv_poisson']:.4f}" for m, r in t.iterrows()})
        row["Poisson margin"] = f"{t.loc['imputed', 'mcv_poisson'] - others['mcv_poisson'].min():+.4f}"
        row["log MSE margin"] = f"{ours['mcv_mse'].min() - t.loc['none', 'mcv_mse']:+.3f} ({ours['mcv_mse'].idxmin()})"
        rows.append(row)
    return pd.DataFrame(rows)


def margins(df: pd.DataFrame) -> pd.DataFrame:
    """One row per grid cell: our scores (mean over seeds), the best other MSE, MAGIC's Pearson, the margins."""
    mean = df.groupby(["dataset", "depth", "scheme", "method", "metric"], sort=False)["value"].mean()
    sd = df.groupby(["dataset", "depth", "scheme", "method", "metric"], sort=False)["value"].std()
    rows = []
    for (name, depth, scheme), t in mean.groupby(level=["dataset", "depth", "scheme"], sort=False):
        t = t.droplevel(["dataset", "depth", "scheme"]).unstack("metric")
        s = sd.loc[(name, depth, scheme)].unstack("metric")
        others = t.loc[[m for m in PEERS if m in t.index]]
        det = t.loc["imputed_detected"]
        best = others["mse"].idxmin()
        sub = df[(df.dataset == name) & (df.depth == depth) & (df.scheme == scheme)]
        row = {
            "dataset": name,
            "depth": depth,
            "scheme": scheme,
            "cells x genes": f"{int(sub.n_obs.iloc[0])} x {int(sub.n_vars.iloc[0])}",
            "n seeds": int(sub[sub.method == "imputed_detected"].seed.nunique()),
            "detected MSE": _pm(det["mse"], s.loc["imputed_detected", "mse"]),
            "imputed MSE": _pm(t.loc["imputed", "mse"], s.loc["imputed", "mse"]),
            "best other MSE": f"{others['mse'].min():.3f} ({best})",
            "MSE margin": f"{det['mse'] - others['mse'].min():+.3f}",
            "detected Pearson": _pm(det["pearson"], s.loc["imputed_detected", "pearson"]),
            "imputed Pearson": _pm(t.loc["imputed", "pearson"], s.loc["imputed", "pearson"]),
            "MAGIC Pearson": f"{t.loc['magic', 'pearson']:.3f}" if "magic" in t.index else "",
            "Pearson margin": f"{det['pearson'] - t.loc['magic', 'pearson']:+.3f}" if "magic" in t.index else "",
        }
        if "ari" in t and pd.notna(t.loc["imputed"].get("ari")):
            row["imputed ARI (raw)"] = f"{t.loc['imputed', 'ari']:.3f} ({t.loc['none', 'ari']:.3f})"
            row["ARI margin"] = f"{t.loc['imputed', 'ari'] - t.loc['none', 'ari']:+.3f}"
        rows.append(row)
    return pd.DataFrame(rows).fillna("")


def _pm(v: float, s: float) -> str:
    return f"{v:.3f}" if pd.isna(s) else f"{v:.3f} ± {s:.3f}"


def per_method(df: pd.DataFrame) -> pd.DataFrame:
    """Masked MSE / Pearson of every method per grid cell (mean over seeds)."""
    t = df[df.metric.isin(["mse", "pearson"])].groupby(["dataset", "depth", "scheme", "method", "metric"], sort=False)
    t = t["value"].mean().unstack("metric")
    t = t.apply(lambda r: f"{r['mse']:.3f} / {r['pearson']:.3f}", axis=1).unstack("method")
    return t[[m for m in (*PEERS, *OURS) if m in t.columns]].reset_index()


def markdown(table: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(map(str, table.columns)) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in table.itertuples(index=False)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=",".join(C.DATASETS))
    parser.add_argument("--depths", default="1,0.2,0.1", help="fractions of molecules kept")
    parser.add_argument("--schemes", default="curve,uniform")
    parser.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="seeds 0..n-1 of our fit (and clustering); 1 keeps "
        "the whole grid within an hour here (estimate in RESULTS_accuracy.md), 3 does not",
    )
    parser.add_argument(
        "--mcv-depths", default="1", help="depths of the molecular cross-validation per dataset ('' for none)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: see the module docstring")
    parser.add_argument(
        "--out",
        default=None,
        help="markdown file whose 'stress' section (or 'mcv' section, with --depths '') is replaced; a "
        ".stress.csv (.mcv.csv) of the long rows goes beside it",
    )
    args = parser.parse_args()
    kw: dict = {}
    if args.quick:
        args.datasets, args.depths, args.schemes, args.seeds = "pbmc4k_2100", "1", "curve", 1
        kw = {"peers": ("none", "nzmean", "knn"), "ours_kwargs": {"max_epochs": 3}, "max_cells": 200}
    names = args.datasets.split(",")
    missing = [n for n in names if not C.dataset_available(n)]
    if missing:
        print(f"skipping {missing}: not found under {C.SHARED}")
        names = [n for n in names if n not in missing]
    start = time.perf_counter()
    frames = []
    for name in names:
        for depth in [float(d) for d in args.depths.split(",") if d]:
            for scheme in args.schemes.split(","):
                t0 = time.perf_counter()
                frames.append(run_cell(name, depth, scheme, list(range(args.seeds)), **kw))
                print(f"{name} depth {depth:g} {scheme}: {time.perf_counter() - t0:.0f} s", flush=True)
    mcv_frames = []
    for name in names:
        for depth in [float(d) for d in args.mcv_depths.split(",") if d]:
            t0 = time.perf_counter()
            mcv_frames.append(run_mcv(name, depth, list(range(args.seeds)), **kw))
            print(f"{name} depth {depth:g} mcv: {time.perf_counter() - t0:.0f} s", flush=True)
    if not frames and not mcv_frames:
        return
    wall = time.perf_counter() - start
    text = ""
    if frames:
        df = pd.concat(frames, ignore_index=True)
        text += (
            "Masked MSE / Pearson (log1p) per method, mean over seeds:\n\n" + markdown(per_method(df)) + "\n\n"
            "Margins (`imputed_detected` minus the best other MSE; minus MAGIC's Pearson; `imputed` ARI minus raw):"
            "\n\n" + markdown(margins(df)) + "\n\n"
        )
    if mcv_frames:
        mcv = pd.concat(mcv_frames, ignore_index=True)
        df = pd.concat([df, mcv], ignore_index=True) if frames else mcv
        text += (
            "Molecular cross-validation, log-space MSE / Poisson loss per method (mean over seeds); margins: "
            "`imputed` Poisson minus the best of none / nzmean / kNN / MAGIC, and our best log-space MSE minus "
            "no imputation's (both want < 0):\n\n" + markdown(mcv_table(mcv)) + "\n\n"
        )
    text += f"Total wall time {wall:.0f} s.\n"
    print(text)
    if args.out:
        info = C.machine_info()
        cmd = shlex.join(["python", "benchmarks/accuracy.py", *sys.argv[1:]])
        head = (
            f"## {'Accuracy stress grid' if frames else 'Molecular cross-validation'} (issue 14)\n\n"
            f"{info['date']}, commit {info['commit']}, {info['cpu']}. "
            f"Command: `{cmd}`. Protocol: the module docstring of `benchmarks/accuracy.py`.\n\n"
        )
        section = "stress" if frames else "mcv"
        C.write_section(Path(args.out), section, head + text)
        df.to_csv(Path(args.out).with_suffix(f".{section}.csv"), index=False)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
