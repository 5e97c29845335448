"""Issue 4 experiment: predictor selection with one symmetric genes x genes product (BLAS syrk) or general products.

Default preset's blocks (every gene a target) on the simulated 10k x 3200 cells of ``benchmarks/speed.py``; times
``select_predictors`` three times each way (``_selection.GRAM_BYTES`` = its default, or 0 for general products) and
checks that both choose the same predictors.

Run: ``python benchmarks/experiments/selection_products.py [--cells 10000]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy import sparse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import _common as C  # noqa: E402

from scdeepimpute import _selection  # noqa: E402
from scdeepimpute._utils import gene_stats  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--cells", type=int, default=10000)
args = parser.parse_args()
C.make_speed_data([args.cells])
X = sparse.load_npz(C.speed_data_path(args.cells, 3200)).tocsr().astype(np.float32)
mean, var, _ = gene_stats(X)
split = _selection.split_targets(mean, var, min_vmr=0, subset_size=512, genes=None, rng=np.random.default_rng(0))
default = _selection.GRAM_BYTES
times, chosen = {}, {}
for _ in range(3):
    for name, gram_bytes in (("general products", 0), ("symmetric product (syrk)", default)):
        _selection.GRAM_BYTES = gram_bytes
        start = time.perf_counter()
        chosen[name] = _selection.select_predictors(X, split.blocks, mean, var, n_predictors=5)
        times.setdefault(name, []).append(time.perf_counter() - start)
print(f"{args.cells} cells x 3200 genes, {len(split.blocks)} blocks\n\n| products | seconds (3 runs) |\n|---|---|")
for name, t in times.items():
    print(f"| {name} | {', '.join(f'{x:.2f}' for x in t)} |")
same = all(np.array_equal(a, b) for a, b in zip(*chosen.values(), strict=True))
print(f"\nsame predictors: {same}")
