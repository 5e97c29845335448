"""Does ``var["imputed_reliability"]`` rank genes as their external masked error does? (issue 18, done-when 3)

For each public set (``_common.load_dataset``: genes detected in >= 5% of cells, at most ``--max-cells`` cells)
and each masking scheme (``sdi.tl.mask``, 10 non-zeros per gene, ``curve`` and ``uniform``): fit
``sdi.pp.deepimpute`` (default preset) on the masked layer, then per gene the external masked MSE of
``imputed_detected`` (log1p, ``sdi.tl.masked_scores``) and its Spearman correlation (``scipy.stats``) with the
gene's reliability (the MSE on the <= 10 non-zeros the fit hid from itself; low = good). Genes with both
values count.

``ceiling``: the external error is itself measured on 10 entries per gene, so no score can rank-correlate with it
much above the square root of its own reliability (the attenuation bound). That reliability: each gene's masked
entries are split into two halves at random, the halves' MSEs are rank-correlated (``r``) and stepped up to 10
entries with Spearman-Brown; ceiling = ``sqrt(2 r / (1 + r))``.

``spread only``: the same rank correlation for a score that uses no fit at all, the variance of log1p over the
gene's non-zeros in the masked input (the main feature of the reliability's prior,
``scdeepimpute._reliability.gene_features``).

Run: ``python benchmarks/reliability.py [--datasets a,b] [--schemes curve,uniform] [--max-cells 2000]
[--out benchmarks/RESULTS_reliability.md]``; ``--quick``: 300 cells of pbmc4k_2100, curve, 5 epochs.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scanpy as sc
from scipy import stats

import scdeepimpute as sdi
from scdeepimpute._reliability import gene_features
from scdeepimpute.tl._masking import values_at

warnings.filterwarnings("ignore")
sc.settings.verbosity = 0
sys.path.insert(0, str(Path(__file__).parent))
import _common as C  # noqa: E402


def split_half_ceiling(adata, layer: str, seed: int = 0) -> float:
    """Square root of the Spearman-Brown stepped-up rank correlation between random halves of each gene's entries."""
    m = adata.uns["masked"]
    var_idx = np.asarray(m["var_idx"])
    truth = np.log1p(np.asarray(m["values"], dtype=np.float64))
    est = np.log1p(np.clip(values_at(adata.layers[layer], m["obs_idx"], var_idx), 0, None))
    sq = (truth - est) ** 2
    half = np.random.default_rng(seed).random(sq.size) < 0.5
    n = adata.n_vars
    a = np.bincount(var_idx[half], sq[half], n) / np.bincount(var_idx[half], minlength=n)
    b = np.bincount(var_idx[~half], sq[~half], n) / np.bincount(var_idx[~half], minlength=n)
    ok = np.isfinite(a) & np.isfinite(b)
    r = stats.spearmanr(a[ok], b[ok]).statistic
    return float(np.sqrt(max(2 * r / (1 + r), 0.0)))


def run(name: str, scheme: str, *, max_cells: int | None, seed: int = 0, **fit_kwargs) -> dict:
    a, _ = C.load_dataset(name, n_obs=max_cells, seed=seed)
    sdi.tl.mask(a, scheme=scheme, random_state=seed)
    t0 = time.perf_counter()
    sdi.pp.deepimpute(a, layer="masked", random_state=seed, **fit_kwargs)
    fit_s = time.perf_counter() - t0
    ext = sdi.tl.masked_scores(a, layer="imputed_detected")["mse_per_gene"]
    rel = a.var["imputed_reliability"].dropna()
    genes = ext.index.intersection(rel.index)
    rho = stats.spearmanr(rel[genes], ext[genes]).statistic
    spread = pd.Series(gene_features(a.layers["masked"])[:, 0], index=a.var_names)
    return {
        "dataset": name,
        "scheme": scheme,
        "cells x genes": f"{a.n_obs} x {a.n_vars}",
        "genes scored": genes.size,
        "spearman(reliability, external MSE)": round(float(rho), 3),
        "spread only": round(float(stats.spearmanr(spread[genes], ext[genes]).statistic), 3),
        "ceiling": round(split_half_ceiling(a, "imputed_detected", seed), 3),
        "self-estimate MSE": round(a.uns["imputed"]["self_estimate"]["masked_mse"], 3),
        "external MSE": round(float(ext[genes].mean()), 3),
        "fit s": round(fit_s),
    }


def main() -> None:
    p = C.parser(__doc__)
    p.add_argument("--datasets", default=",".join(C.DATASETS))
    p.add_argument("--schemes", default="curve,uniform")
    p.add_argument("--max-cells", type=int, default=2000)
    p.add_argument("--out", default=None, help="markdown file whose 'reliability' section is replaced")
    args = p.parse_args()
    kw: dict = {}
    if args.quick:
        args.datasets, args.schemes, args.max_cells, kw = "pbmc4k_2100", "curve", 300, {"max_epochs": 5}
    names = [n for n in args.datasets.split(",") if C.dataset_available(n)]
    start = time.perf_counter()
    rows = []
    for name in names:
        for scheme in args.schemes.split(","):
            rows.append(run(name, scheme, max_cells=args.max_cells, **kw))
            print(rows[-1], flush=True)
    if not rows:
        print(f"no dataset found under {C.SHARED}")
        return
    table = pd.DataFrame(rows)
    text = C.markdown_table(list(table.columns), table.to_numpy().tolist())
    text += f"\n\nTotal wall time {time.perf_counter() - start:.0f} s.\n"
    print(text)
    if args.out:
        info = C.machine_info()
        cmd = " ".join(["python benchmarks/reliability.py", *sys.argv[1:]])
        head = f"{info['date']}, commit {info['commit']}, {info['cpu']}. Command: `{cmd}`.\n\n"
        C.write_section(Path(args.out), "reliability", head + text)


if __name__ == "__main__":
    main()
