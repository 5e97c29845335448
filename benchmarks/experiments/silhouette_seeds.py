"""Issue 7 experiment: how much of the UMAP silhouette gap on CellBench is the pipeline's seed?

For each dataset (benchmark protocol, masked input): raw counts and one scdeepimpute fit per fit seed, each clustered
(``sdi.tl.cluster``, Leiden bisected to the number of labels) with several pipeline seeds (PCA/neighbours/UMAP/Leiden);
prints the UMAP silhouette (the benchmark's), the silhouette in PCA space and ARI, per pipeline seed.

Run: ``python benchmarks/experiments/silhouette_seeds.py [--datasets celseq2,celseq2_5cl_p1] [--fit-seeds 0]
[--umap-seeds 5]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import anndata as ad
import numpy as np
from sklearn import metrics

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from accuracy import load  # noqa: E402

import scdeepimpute as sdi  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--datasets", default="celseq2,celseq2_5cl_p1")
parser.add_argument("--fit-seeds", default="0")
parser.add_argument("--umap-seeds", type=int, default=5)
args = parser.parse_args()
print("| dataset | layer | fit seed | pipeline seed | UMAP silhouette | PCA silhouette | ARI |")
print("|---|---|---|---|---|---|---|")
for name in args.datasets.split(","):
    a, labels = load(name)
    sdi.tl.mask(a, random_state=0)
    base = ad.AnnData(a.layers["masked"].copy(), obs=a.obs[[labels]].copy())
    layers = {"raw": (base, None)}
    for seed in map(int, args.fit_seeds.split(",")):
        out = sdi.pp.deepimpute(base, random_state=seed, copy=True)
        layers[f"imputed#{seed}"] = (out, "imputed")
    for key, (adata, layer) in layers.items():
        lname, _, fseed = key.partition("#")
        rows = []
        for ps in range(args.umap_seeds):
            b = adata.copy()
            sdi.tl.cluster(b, layer=layer, labels_key=labels, random_state=ps)
            s = sdi.tl.clustering_scores(b, labels_key=labels, layer=layer)
            lab = b.obs[labels].to_numpy()
            k = "X" if layer is None else layer
            pca_sil = float(metrics.silhouette_score(b.obsm[f"X_pca_{k}"], lab))
            rows.append((s["silhouette"], pca_sil, s["ari"]))
            scores = f"{s['silhouette']:.3f} | {pca_sil:.3f} | {s['ari']:.3f}"
            print(f"| {name} | {lname} | {fseed or '-'} | {ps} | {scores} |", flush=True)
        m = np.mean(rows, axis=0)
        sd = np.std(rows, axis=0, ddof=1)
        summary = f"{m[0]:.3f} ± {sd[0]:.3f} | {m[1]:.3f} ± {sd[1]:.3f} | {m[2]:.3f}"
        print(f"| {name} | {lname} | {fseed or '-'} | mean ± sd | {summary} |", flush=True)
