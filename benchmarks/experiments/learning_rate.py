"""Issue 4 experiment: does a larger Adam learning rate reach the same masked accuracy in fewer epochs?

Default preset (batch 256, ``tol=1e-3``) at several learning rates, protocol of ``benchmarks/accuracy.py``
(``masked_input``: ``load()`` + ``sdi.tl.mask(a, random_state=0)``; masked MSE / Pearson in log1p space).

Run: ``python benchmarks/experiments/learning_rate.py [--datasets ...] [--rates 1e-3,2e-3,3e-3] [--seeds 1]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from accuracy import fill_scores, masked_input  # noqa: E402

import scdeepimpute as sdi  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--datasets", default="pbmc4k_2100,pbmc3k_ds30,mouse1m_10k")
parser.add_argument("--rates", default="1e-3,2e-3,3e-3")
parser.add_argument("--seeds", type=int, default=1)
args = parser.parse_args()
print("| dataset | learning rate | seed | detected MSE | detected Pearson | expected MSE | expected Pearson | epochs | fit s |")
print("|---|---|---|---|---|---|---|---|---|")
for name in args.datasets.split(","):
    X, u = masked_input(name)
    for seed in range(args.seeds):
        for rate in map(float, args.rates.split(",")):
            start = time.perf_counter()
            m = sdi.DeepImpute(random_state=seed, learning_rate=rate).fit(X, progress=False)
            fit_s = time.perf_counter() - start
            row = fill_scores(m, X, u)
            print(
                f"| {name} | {rate:g} | {seed} | " + " | ".join(f"{x:.4f}" for x in row)
                + f" | {m.history_.stopped_epoch} | {fit_s:.1f} |",
                flush=True,
            )
