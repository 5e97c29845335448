"""Issue 7's done-criterion margins from the long-format CSV that ``benchmarks/accuracy.py`` writes beside its table.

For each dataset: ``imputed_detected`` masked MSE against the best other method (peers and nzmean), its masked
Pearson against the best peer (nzmean, kNN, MAGIC, paper preset), ``imputed`` ARI and silhouettes (UMAP: mean ±
sd of seeds, and the mean difference paired by seed; PCA space) against raw counts, and on the simulator every
entry's log1p MSE against the pre-dropout counts.

Run: ``python benchmarks/accuracy_margins.py RESULTS.csv [MORE.csv ...]`` (later files replace a dataset's rows).
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

frames = [pd.read_csv(p) for p in sys.argv[1:]]
df = frames[0]
for extra in frames[1:]:
    df = pd.concat([df[~df.dataset.isin(extra.dataset.unique())], extra], ignore_index=True)
grouped = df.groupby(["dataset", "method", "metric"])["value"]
mean, sd = grouped.mean().unstack("metric"), grouped.std().unstack("metric")
ours = {"deepimpute_detected", "deepimpute_imputed"}
rows = []
for name, t in mean.groupby(level="dataset", sort=False):
    t = t.droplevel("dataset")
    others = t.drop(index=[m for m in t.index if m in ours or m == "none"])
    det, imp, raw = t.loc["deepimpute_detected"], t.loc["deepimpute_imputed"], t.loc["none"]
    best_mse, best_r = others["mse"].idxmin(), others["pearson"].idxmax()
    row = {
        "dataset": name,
        "detected MSE": f"{det['mse']:.3f}",
        "best other MSE": f"{others['mse'].min():.3f} ({best_mse})",
        "detected Pearson": f"{det['pearson']:.3f}",
        "best peer Pearson": f"{others['pearson'].max():.3f} ({best_r})",
        "Pearson margin": f"{det['pearson'] - others['pearson'].max():+.3f}",
    }
    if "ari" in t and pd.notna(raw.get("ari")):
        row["imputed ARI (raw)"] = f"{imp['ari']:.3f} ({raw['ari']:.3f})"
        imp_sd, raw_sd = sd.loc[(name, "deepimpute_imputed")], sd.loc[(name, "none")]
        row["imputed UMAP silhouette (raw), ± sd"] = (
            f"{imp['silhouette']:.3f} ± {imp_sd['silhouette']:.3f} "
            f"({raw['silhouette']:.3f} ± {raw_sd['silhouette']:.3f})"
        )
        sil = df[(df.dataset == name) & (df.metric == "silhouette")]
        sil = sil.pivot_table(index="seed", columns="method", values="value")
        paired = (sil["deepimpute_imputed"] - sil["none"]).dropna()  # same seed: same clustering pipeline seed
        if paired.size > 1:
            se = paired.std(ddof=1) / np.sqrt(paired.size)
            row["UMAP silhouette, imputed - raw, paired by seed (± se)"] = (
                f"{paired.mean():+.3f} ± {se:.3f} (n={paired.size})"
            )
        if pd.notna(raw.get("silhouette_pca")):
            row["imputed PCA silhouette (raw)"] = f"{imp['silhouette_pca']:.3f} ({raw['silhouette_pca']:.3f})"
    if "all_mse" in t and pd.notna(imp.get("all_mse")):
        best_all = t["all_mse"].drop(index=list(ours)).dropna()
        row["all-entry MSE: imputed / detected / best peer"] = (
            f"{imp['all_mse']:.3f} / {det['all_mse']:.3f} / {best_all.min():.3f} ({best_all.idxmin()})"
        )
    rows.append(row)
out = pd.DataFrame(rows).fillna("")
print("| " + " | ".join(out.columns) + " |")
print("|" + "---|" * len(out.columns))
for r in out.itertuples(index=False):
    print("| " + " | ".join(map(str, r)) + " |")
