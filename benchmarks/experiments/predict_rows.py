"""Issue 4 experiment: cells per prediction chunk (``scdeepimpute._model.PREDICT_ROWS``): memory and time.

One default-preset model (1 epoch: prediction cost does not depend on training) on the simulated 50k x 3200 cells of
``benchmarks/speed.py``; predicts all cells with each chunk size twice, alternating; prints RSS at the start, the peak
above it (sampled every 20 ms; the dense float32 output is part of it) and wall time.

Run: ``python benchmarks/experiments/predict_rows.py [--cells 50000] [--sizes 2048,1024,512]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import _common as C  # noqa: E402

import scdeepimpute as sdi  # noqa: E402
import scdeepimpute._model as model_module  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--cells", type=int, default=50000)
parser.add_argument("--sizes", default="2048,1024,512")
args = parser.parse_args()
rss = C.RssSampler()
C.make_speed_data([args.cells])
X, _, _, _ = C.masked_speed_data(args.cells, 3200)
model = sdi.DeepImpute(max_epochs=1).fit(X, progress=False)
print(f"{args.cells} cells x 3200 genes\n")
print("| rows per chunk | RSS at start MB | peak above start MB | output MB | predict s |")
print("|---|---|---|---|---|")
for _ in range(2):
    for rows in map(int, args.sizes.split(",")):
        model_module.PREDICT_ROWS = rows
        start_mb = rss.now()
        rss.reset()
        t = time.perf_counter()
        out = model.predict(X)
        seconds = time.perf_counter() - t
        print(f"| {rows} | {start_mb:.0f} | {rss.peak() - start_mb:.0f} | {out.nbytes / 2**20:.0f} | {seconds:.1f} |",
              flush=True)
        del out
