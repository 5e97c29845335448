"""Issue 4 experiment: a larger batch (fewer, more efficient steps) at the default learning rate.

Default preset on the simulated cells x 3200 genes of ``benchmarks/speed.py`` (same masking), one fit per batch size;
prints fit time, epochs and the masked MSE (log1p) of both fills.

Run: ``python benchmarks/experiments/batch_size.py [--cells 10000] [--sizes 256,512]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import _common as C  # noqa: E402

import scdeepimpute as sdi  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--cells", type=int, default=10000)
parser.add_argument("--sizes", default="256,512")
args = parser.parse_args()
C.make_speed_data([args.cells])
X, rows, cols, truth = C.masked_speed_data(args.cells, 3200)
sdi.DeepImpute(max_epochs=1).fit(X[:300], progress=False)  # TensorFlow's start-up out of the timings
print(f"{args.cells} cells x 3200 genes\n\n| batch | fit s | epochs | detected-fill MSE | expected-fill MSE |")
print("|---|---|---|---|---|")
for size in map(int, args.sizes.split(",")):
    start = time.perf_counter()
    model = sdi.DeepImpute(batch_size=size, random_state=0).fit(X, progress=False)
    fit_s = time.perf_counter() - start
    out = model.impute(X)
    mse = {f: C.masked_mse(truth, np.asarray(v[rows, cols], np.float64)) for f, v in out.items()}
    print(f"| {size} | {fit_s:.1f} | {model.history_.stopped_epoch} | {mse['detected']:.4f} | {mse['expected']:.4f} |",
          flush=True)
