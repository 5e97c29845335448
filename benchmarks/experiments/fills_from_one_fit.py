"""Issue 7 experiment: which fill of ONE default-preset fit recovers masked values best?

For each dataset, one fit (default preset, seed 0) on the masked matrix of ``benchmarks/accuracy.py``
(``load()`` + ``sdi.tl.mask(a, random_state=0)``); the value head v (log1p value if detected) and the
detection probability p of every entry are read from ``DeepImpute.impute(policy="all")`` and cached.
Then masked MSE / Pearson (``sdi.tl.masked_metrics``) of fills built from v and p, all without retraining:

- ``v``: value-if-detected (= ``imputed_detected``), ``pv``: p * expm1(v) (= ``imputed``)
- ``pois``: E[log1p X | X > 0] for X ~ Poisson(lambda), lambda = -log(1 - p) (value from detection only)
- ``blend_a``: a * v + (1 - a) * pois in log1p space
- ``shrink_k``: v shrunk toward the gene's mean log1p non-zero with weight k / (n_nonzero + k)
- ``poisprec_k``: v shrunk toward ``pois`` with weight k / (n_nonzero + k) (n_nonzero: the gene's detected cells)

Run: ``python benchmarks/experiments/fills_from_one_fit.py [--datasets ...]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import sparse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from accuracy import load  # noqa: E402

import scdeepimpute as sdi  # noqa: E402

CACHE = Path("/tmp/sdi_fills")


def fit_outputs(name: str, seed: int = 0, **kwargs):
    f = CACHE / f"{name}_{seed}{'_' + '_'.join(f'{k}{v}' for k, v in sorted(kwargs.items())) if kwargs else ''}.npz"
    if f.exists():
        z = np.load(f)
        return {k: z[k] for k in z.files}
    a, _ = load(name)
    sdi.tl.mask(a, random_state=0)
    X = sparse.csr_matrix(a.layers["masked"])
    m = sdi.DeepImpute(random_state=seed, **kwargs).fit(X)
    out = m.impute(X, policy="all", fills=("expected", "detected"))
    det, exp = out["detected"], out["expected"]
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(det > 0, exp / det, 0.0)
    u = a.uns["masked"]
    res = {
        "v": np.log1p(det).astype(np.float32), "p": p.astype(np.float32),
        "obs": u["obs_idx"], "var": u["var_idx"], "truth": u["values"],
        "X": X.toarray().astype(np.float32), "epochs": np.array(m.history_.stopped_epoch),
    }
    CACHE.mkdir(exist_ok=True)
    np.savez_compressed(f, **res)
    return res


def pois_log_if_detected(lam: np.ndarray, kmax: int = 400) -> np.ndarray:
    """E[log1p X | X > 0] for X ~ Poisson(lam), by summation over k = 1..kmax (lam clipped to kmax / 4)."""
    lam = np.clip(np.asarray(lam, dtype=np.float64), 1e-8, kmax / 4)
    k = np.arange(1, kmax + 1, dtype=np.float64)
    from scipy.special import gammaln

    logpmf = k[None, :] * np.log(lam)[:, None] - lam[:, None] - gammaln(k + 1)[None, :]
    num = (np.exp(logpmf) * np.log1p(k)[None, :]).sum(axis=1)
    return num / -np.expm1(-lam)


def fills(r: dict) -> dict[str, np.ndarray]:
    """Log1p fills at the masked entries."""
    o, g = r["obs"], r["var"]
    v, p = r["v"][o, g].astype(np.float64), np.clip(r["p"][o, g].astype(np.float64), 0, 1 - 1e-6)
    X = r["X"]
    nnz = (X > 0).sum(axis=0)
    lx = np.log1p(X)
    gene_lognz = np.where(nnz > 0, lx.sum(axis=0) / np.maximum(nnz, 1), 0.0)
    gene_nz = np.where(nnz > 0, X.sum(axis=0) / np.maximum(nnz, 1), 0.0)
    pois = pois_log_if_detected(-np.log1p(-p))
    out = {"v": v, "pv": np.log1p(p * np.expm1(v)), "p": p, "nzmean": np.log1p(gene_nz[g]), "pois": pois}
    for a in (0.25, 0.5, 0.75):
        out[f"blend_{a}"] = a * v + (1 - a) * pois
    for k in (10, 30, 100):
        w = k / (nnz[g] + k)
        out[f"shrink_{k}"] = (1 - w) * v + w * gene_lognz[g]
    for k in (30, 100, 300, 1000):
        w = k / (nnz[g] + k)
        out[f"poisprec_{k}"] = (1 - w) * v + w * pois
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default="pbmc3k_ds30,pbmc4k_2100,mouse1m_10k")
    args = ap.parse_args()
    print("| dataset | fill | mse | pearson |\n|---|---|---|---|")
    for name in args.datasets.split(","):
        r = fit_outputs(name)
        for fill, y in fills(r).items():
            m = sdi.tl.masked_metrics(r["truth"], np.expm1(y))
            print(f"| {name} | {fill} | {m['mse']:.3f} | {m['pearson']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
