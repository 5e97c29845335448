"""Issue 7 experiment: how much weight the Poisson-derived value gets against the value head, per gene.

Uses the cached fits of ``fills_from_one_fit.py`` (one default-preset fit per dataset, seed 0). Fill (log1p):
``(1 - w_g) * v + w_g * pois`` with n_g the gene's detected cells, z_g its zero fraction (masked matrix) and

- ``prec_k``: w = k / (n_g + k)  (value head's estimation noise ~ 1/n_g)
- ``precz_k``: w = z_g * k / (n_g + k)  (also: zeros carry the rate information; without zeros p says nothing)
- ``z``: w = z_g; ``z2``: w = z_g^2

Prints each fill's masked Pearson and MSE per dataset and the worst margin over datasets vs the value head.

Run: ``python benchmarks/experiments/pois_weighting.py``
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fills_from_one_fit import fit_outputs, pois_log_if_detected  # noqa: E402

import scdeepimpute as sdi  # noqa: E402

DATASETS = ["pbmc3k_ds30", "pbmc4k_2100", "mouse1m_10k", "zeisel_200", "dropseq", "celseq2_5cl_p1", "celseq2"]


def main() -> None:
    rows = {}
    for name in DATASETS:
        r = fit_outputs(name)
        o, g = r["obs"], r["var"]
        v = r["v"][o, g].astype(np.float64)
        p = np.clip(r["p"][o, g].astype(np.float64), 0, 1 - 1e-6)
        pois = pois_log_if_detected(-np.log1p(-p))
        X = r["X"]
        n = (X > 0).sum(0)[g].astype(np.float64)
        z = 1 - n / X.shape[0]
        ws = {"v": np.zeros_like(v), "z": z, "z2": z**2}
        for k in (100, 300, 1000, 3000):
            ws[f"prec_{k}"] = k / (n + k)
            ws[f"precz_{k}"] = z * k / (n + k)
        for fill, w in ws.items():
            m = sdi.tl.masked_metrics(r["truth"], np.expm1((1 - w) * v + w * pois))
            rows.setdefault(fill, {})[name] = (m["mse"], m["pearson"])
    print("| fill | " + " | ".join(DATASETS) + " | min dPearson vs v |")
    print("|---" * (len(DATASETS) + 2) + "|")
    for fill, d in rows.items():
        dmin = min(d[n][1] - rows["v"][n][1] for n in DATASETS)
        cells = [f"{d[n][0]:.3f} / {d[n][1]:.3f}" for n in DATASETS]
        print(f"| {fill} | " + " | ".join(cells) + f" | {dmin:+.3f} |")


if __name__ == "__main__":
    main()
