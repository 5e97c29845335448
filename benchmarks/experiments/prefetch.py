"""Issue 4 experiment: loading the next training chunk in a background thread while TensorFlow trains on the current.

Default preset, 8 epochs (no early stop) on the simulated cells x 3200 genes of ``benchmarks/speed.py``, with the
package's prefetching ``_training._prefetched`` and with a sequential stand-in, alternating, 3 times each; prints
wall time and the last validation loss (equal: the same chunks in the same order).

Run: ``python benchmarks/experiments/prefetch.py [--cells 10000]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import _common as C  # noqa: E402

import scdeepimpute as sdi  # noqa: E402
import scdeepimpute._training as training  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--cells", type=int, default=10000)
args = parser.parse_args()
C.make_speed_data([args.cells])
X, _, _, _ = C.masked_speed_data(args.cells, 3200)
ways = {"prefetch": training._prefetched, "sequential": lambda load, items: map(load, items)}
sdi.DeepImpute(max_epochs=1).fit(X[:500], progress=False)  # TensorFlow's start-up out of the timings
print(f"{args.cells} cells x 3200 genes, 8 epochs\n\n| loading | repeat | fit s | last val loss |\n|---|---|---|---|")
for rep in range(3):
    for name, way in ways.items():
        training._prefetched = way
        start = time.perf_counter()
        model = sdi.DeepImpute(max_epochs=8, patience=100, random_state=0).fit(X, progress=False)
        print(f"| {name} | {rep} | {time.perf_counter() - start:.1f} | {model.history_.val_loss[-1]:.6f} |", flush=True)
