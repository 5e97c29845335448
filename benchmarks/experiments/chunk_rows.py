"""Issue 4 experiment: rows per host-to-graph training chunk (``scdeepimpute._training.CHUNK_ROWS``): speed and losses.

Default preset, 4 epochs (no early stop) on the simulated 10k x 3200 cells of ``benchmarks/speed.py``, each chunk
size twice, alternating; prints process CPU time (robust to other jobs), wall time and the last validation loss
(equal when the chunking does not change training). Memory: ``python benchmarks/memory_50k.py --chunk-rows N``.

Run: ``python benchmarks/experiments/chunk_rows.py [--sizes 8192,2048]``
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
import scdeepimpute._training as training  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--sizes", default="8192,2048")
args = parser.parse_args()
C.make_speed_data([10000])
X = sparse.load_npz(C.speed_data_path(10000, 3200)).tocsr().astype(np.float32)
print("| chunk rows | repeat | process CPU s | wall s | last val loss |\n|---|---|---|---|---|")
for rep in range(2):
    for rows in map(int, args.sizes.split(",")):
        training.CHUNK_ROWS = rows
        cpu, wall = time.process_time(), time.perf_counter()
        m = sdi.DeepImpute(max_epochs=4, patience=100, random_state=0).fit(X, progress=False)
        print(f"| {rows} | {rep} | {time.process_time() - cpu:.1f} | {time.perf_counter() - wall:.1f} | "
              f"{m.history_.val_loss[-1]:.6f} |", flush=True)
