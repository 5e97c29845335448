"""Issue 4 experiment: early stopping every ``epoch_size`` cells instead of every pass, on large data.

Default preset on the simulated cells x 3200 genes of ``benchmarks/speed.py`` (same data and masking: 10 non-zeros
per gene hidden, seed 0), one fit per ``epoch_size``; prints fit time, epochs, training cells processed (epochs x
cells per epoch: the work done, independent of machine load) and the masked MSE (log1p) of both fills.

Run: ``python benchmarks/experiments/epoch_size.py [--cells 50000] [--sizes none,20000,10000]``
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

import scdeepimpute as sdi  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--cells", type=int, default=50000)
parser.add_argument("--sizes", default="none,20000,10000")
args = parser.parse_args()
C.make_speed_data([args.cells])
X = sparse.load_npz(C.speed_data_path(args.cells, 3200)).tocsr()
Xm, rows, cols, truth = C.mask_nonzeros(X, 10, seed=0)
del X
print(f"{args.cells} cells x 3200 genes (simulated, benchmarks/_common.py), {truth.size} masked entries")
print("| epoch_size | fit s | epochs | cells trained | detected-fill MSE | expected-fill MSE |")
print("|---|---|---|---|---|---|")
for size in args.sizes.split(","):
    epoch_size = 10**9 if size == "none" else int(size)  # a size above the cells: one pass per epoch
    t = time.perf_counter()
    model = sdi.DeepImpute(epoch_size=epoch_size, random_state=0).fit(Xm, progress=False)
    fit_s = time.perf_counter() - t
    n_train = model.n_cells_fit_ - max(1, round(model.params["validation_fraction"] * model.n_cells_fit_))
    epochs = model.history_.stopped_epoch
    out = model.impute(Xm)
    mse = {f: C.masked_mse(truth, np.asarray(out[f][rows, cols], np.float64)) for f in ("detected", "expected")}
    print(f"| {size} | {fit_s:.1f} | {epochs} | {epochs * min(epoch_size, n_train)} | {mse['detected']:.4f} | "
          f"{mse['expected']:.4f} |", flush=True)
