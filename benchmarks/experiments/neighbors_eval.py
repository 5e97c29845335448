"""Issue 14 items 3-4: masked accuracy of ``imputed_detected`` without and with the neighbourhood blend.

Per public set at full depth (``benchmarks/accuracy.py``'s ``load``: genes detected in >= 5% of cells), masked by
``sdi.tl.mask`` (seed 0; the fitted curve, and ``scheme="uniform"`` where ``tl.mask`` has it): masked MSE and Pearson
(log1p) of nzmean, MAGIC and DeepImpute's value-if-detected with ``neighbors=0`` and with the default (30, weight
chosen in fit), the chosen weight and the fit's self-estimate; with ``--ari``, the ARI of the ``imputed`` layer of both
and of raw (masked) counts, after ``sdi.tl.cluster``. One seed.

Without ``scheme="uniform"`` in ``tl.mask``, ``uniform-hand`` hides 10 non-zeros per gene (genes with >= 20) uniformly.

Run: ``python benchmarks/experiments/neighbors_eval.py [--datasets a,b] [--ari pbmc4k_2100,celseq2] [--schemes curve]``
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import scanpy as sc
from scipy import sparse

import scdeepimpute as sdi

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from accuracy import DATASETS, MAGIC_EXACT_MAX_GENES, load  # noqa: E402

warnings.filterwarnings("ignore")
sc.settings.verbosity = 0


def score(info, Y) -> tuple[float, float]:
    r = sdi.tl.masked_metrics(info["values"], np.asarray(Y[info["obs_idx"], info["var_idx"]]).ravel())
    return r["mse"], r["pearson"]


def ari(a: ad.AnnData, layer: str, labels: str) -> float:
    sdi.tl.cluster(a, layer=layer, labels_key=labels, random_state=0, key_added=layer)
    return sdi.tl.clustering_scores(a, labels_key=labels, key=layer)["ari"]


def uniform_mask(a: ad.AnnData, seed: int = 0) -> None:
    """10 non-zeros per gene (genes with >= 20), uniformly: ``tl.mask(scheme="uniform")`` before it exists on main."""
    X = sparse.csr_matrix(a.X, dtype=np.float32)
    C, rng, rows, cols = X.tocsc(), np.random.default_rng(seed), [], []
    for g in range(C.shape[1]):
        nz = C.indices[C.indptr[g] : C.indptr[g + 1]]
        if nz.size >= 20:
            rows += list(rng.choice(nz, 10, replace=False))
            cols += [g] * 10
    rows, cols = np.asarray(rows), np.asarray(cols)
    values = np.asarray(X[rows, cols]).ravel()
    own = sparse.csr_matrix((values, (rows, cols)), shape=X.shape)
    masked = sparse.csr_matrix(X - own)
    masked.eliminate_zeros()
    a.layers["masked"] = masked
    a.uns["masked"] = {"obs_idx": rows, "var_idx": cols, "values": values}


def run(name: str, scheme: str, with_ari: bool) -> None:
    a, labels = load(name)
    if scheme == "uniform-hand":
        uniform_mask(a)
    else:
        sdi.tl.mask(a, random_state=0, **({"scheme": scheme} if scheme != "curve" else {}))
    info = a.uns["masked"]
    M = sparse.csr_matrix(a.layers["masked"])
    b = ad.AnnData(M.copy())
    rows = []
    t = time.perf_counter()
    rows.append(("nzmean", *score(info, sdi.tl.impute_nzmean(b)), time.perf_counter() - t, ""))
    t = time.perf_counter()
    magic_kw = {"solver": "approximate"} if a.n_vars > MAGIC_EXACT_MAX_GENES else {}
    rows.append(("magic", *score(info, sdi.tl.impute_magic(b, **magic_kw)), time.perf_counter() - t, ""))
    for label, k in (("di neighbors=0", 0), ("di neighbors=30", 30)):
        t = time.perf_counter()
        model = sdi.DeepImpute(random_state=0, neighbors=k).fit(M, progress=False)
        out = model.impute(M)
        el = time.perf_counter() - t
        extra = ""
        if model.calibration_ is not None:
            c = model.calibration_
            extra = (
                f"w={model.neighbor_weight_:.2f} self-estimate mse {c['blend_mse']:.4f} pearson "
                f"{c['blend_pearson']:.4f} (n={c['n_entries']}; network {c['network_mse']:.4f}/"
                f"{c['network_pearson']:.4f}, neighbourhood {c['neighbourhood_mse']:.4f}/"
                f"{c['neighbourhood_pearson']:.4f})"
            )
        rows.append((label, *score(info, out["detected"]), el, extra))
        if with_ari and labels is not None:
            a.layers[f"imp{k}"] = out["expected"]
    print(f"# {name} {scheme}: {a.shape}, masked {info['values'].size}", flush=True)
    for label, mse, r, el, extra in rows:
        print(f"{label:18s} mse {mse:.4f} pearson {r:.4f} ({el:.0f} s) {extra}", flush=True)
    if with_ari and labels is not None:
        scores = {layer: ari(a, layer, labels) for layer in ("masked", "imp0", "imp30")}
        print(
            f"ARI imputed: raw(masked) {scores['masked']:.3f}  neighbors=0 {scores['imp0']:.3f}  "
            f"neighbors=30 {scores['imp30']:.3f}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--ari", default="pbmc4k_2100,celseq2")
    parser.add_argument(
        "--schemes", default=None, help="comma-separated: curve, uniform (tl.mask's), uniform-hand (this script's)"
    )
    args = parser.parse_args()
    has_uniform = "scheme" in inspect.signature(sdi.tl.mask).parameters
    schemes = args.schemes.split(",") if args.schemes else ["curve", "uniform" if has_uniform else "uniform-hand"]
    for name in args.datasets.split(","):
        for scheme in schemes:
            run(name, scheme, name in args.ari.split(",") and scheme == "curve")


if __name__ == "__main__":
    main()
