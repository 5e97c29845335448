"""Issue 4 experiment: reading the Poisson-link table, ``np.interp`` (binary search) against index arithmetic.

The table of ``scdeepimpute._network`` (E[log1p X | X > 0] on an evenly spaced log-lambda grid) is read once per
predicted entry: 32M reads for 10k x 3200 cells. Times both ways (best of 3) on 32M uniform float32 positions
spanning the grid and a margin outside it, and prints the largest difference.

Run: ``python benchmarks/experiments/poisson_link.py [--values 32000000]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from scdeepimpute._fills import _interp_uniform, _poisson_table

parser = argparse.ArgumentParser()
parser.add_argument("--values", type=int, default=32_000_000)
args = parser.parse_args()
grid, table = _poisson_table()
x = np.random.default_rng(0).uniform(grid[0] - 1, grid[-1] + 1, args.values).astype(np.float32)
best = {}
for _ in range(3):
    reads = {
        "np.interp": lambda: np.interp(x, grid, table),
        "index arithmetic": lambda: _interp_uniform(x.copy(), grid, table),
    }
    for name, read in reads.items():
        start = time.perf_counter()
        out = read()
        best[name] = min(best.get(name, np.inf), time.perf_counter() - start)
        best[name + " out"] = out
diff = np.max(np.abs(best["np.interp out"] - best["index arithmetic out"]))
print(f"{args.values} values\n\n| read | seconds (best of 3) |\n|---|---|")
for name in ("np.interp", "index arithmetic"):
    print(f"| {name} | {best[name]:.2f} |")
print(f"\nlargest difference: {diff:.1e}")
