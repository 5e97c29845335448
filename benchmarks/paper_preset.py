"""Issue 2 check: the paper preset on mouse1m_10k (all 10k cells) and pbmc4k_2100 vs no imputation.

Genes detected in >= 5% of cells; 10 non-zeros per gene hidden with ``sdi.tl.mask`` (seed 0); masked MSE and
Pearson in log1p space. Run: ``python benchmarks/paper_preset.py`` (needs ../shared/data).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import scanpy as sc
from scipy import sparse

import scdeepimpute as sdi

warnings.filterwarnings("ignore")
sc.settings.verbosity = 0
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

for name in ["mouse1m_10k", "pbmc4k_2100"]:
    a = ad.read_h5ad(DATA / name / f"{name}.h5ad")
    a.var_names_make_unique()
    a.X = sparse.csr_matrix(a.X, dtype=np.float32)
    a = a[:, np.asarray((a.X > 0).mean(axis=0)).ravel() >= 0.05].copy()
    sdi.tl.mask(a, random_state=0)
    b = ad.AnnData(a.layers["masked"].copy(), obs=a.obs[[]], var=a.var[[]])
    b.uns["masked"] = a.uns["masked"]
    b.layers["no_imputation"] = b.X
    start = time.perf_counter()
    sdi.pp.deepimpute(b, preset="paper", random_state=0)
    elapsed = time.perf_counter() - start
    none, paper = (sdi.tl.masked_scores(b, layer=key) for key in ("no_imputation", "imputed"))
    info = b.uns["imputed"]
    print(
        f"{name} {a.shape}: paper preset {elapsed:.1f} s, {info['epochs']} epochs, {info['n_targets']} targets; "
        f"masked MSE {none['mse']:.3f} (no imputation) -> {paper['mse']:.3f}; Pearson {paper['pearson']:.3f}"
    )
