"""Issue 4 experiment: does ``precision="bfloat16"`` keep the masked-value accuracy of float32?

The protocol of ``benchmarks/accuracy.py`` (``load()`` + ``sdi.tl.mask(a, random_state=0)``, masked MSE and
Pearson in log1p space) for the default preset at both precisions, seeds 0 and 1, with fit time and epochs.

Run: ``python benchmarks/experiments/bf16_accuracy.py [--datasets pbmc4k_2100,pbmc3k_ds30,mouse1m_10k]``
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
parser.add_argument("--seeds", type=int, default=2)
args = parser.parse_args()
print("| dataset | precision | seed | detected MSE | detected Pearson | expected MSE | expected Pearson | epochs | fit s |")
print("|---|---|---|---|---|---|---|---|---|")
for name in args.datasets.split(","):
    X, u = masked_input(name)
    for seed in range(args.seeds):
        for precision in ("float32", "bfloat16"):
            start = time.perf_counter()
            m = sdi.DeepImpute(random_state=seed, precision=precision).fit(X, progress=False)
            fit_s = time.perf_counter() - start
            row = fill_scores(m, X, u)
            print(
                f"| {name} | {precision} | {seed} | {row[0]:.4f} | {row[1]:.4f} | {row[2]:.4f} | {row[3]:.4f} | "
                f"{m.history_.stopped_epoch} | {fit_s:.1f} |",
                flush=True,
            )
