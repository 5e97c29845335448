"""Predict-path check across two checkouts: the same saved models, the same cells, outputs and ``impute`` time.

Fits (1 epoch) and saves a default-preset and a paper-preset model on the first 10k of the 50k simulated cells of
``benchmarks/speed.py`` (``--fit``), then, run once per checkout (``PYTHONPATH=CHECKOUT``), saves each model's fills
for the first 3000 cells and times ``impute(fills=("expected",))`` on all 50k cells three times (``--tag``); finally
``--compare OLD NEW`` reports whether the saved fills are bit-identical.

Run::

    python benchmarks/experiments/impute_trees.py --fit
    PYTHONPATH=/path/to/old python benchmarks/experiments/impute_trees.py --tag old
    PYTHONPATH=. python benchmarks/experiments/impute_trees.py --tag new
    python benchmarks/experiments/impute_trees.py --compare old new
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

WORK = Path("/tmp/scdeepimpute_bench/impute_trees")
PRESETS = {"default": ("expected", "detected"), "paper": ("detected",)}

parser = argparse.ArgumentParser()
parser.add_argument("--fit", action="store_true")
parser.add_argument("--tag")
parser.add_argument("--compare", nargs=2)
args = parser.parse_args()

if args.compare:
    for preset in PRESETS:
        old, new = (np.load(WORK / f"{preset}_{tag}.npz") for tag in args.compare)
        for fill in old:
            same = np.array_equal(old[fill], new[fill])
            print(f"{preset} {fill}: bit-identical {same}, max |diff| {np.abs(old[fill] - new[fill]).max():.3g}")
    sys.exit()

C.make_speed_data([50000])
X = C.masked_speed_data(50000, 3200)[0]
if args.fit:
    WORK.mkdir(parents=True, exist_ok=True)
    for preset in PRESETS:
        sdi.DeepImpute(preset=preset, random_state=0, max_epochs=1).fit(X[:10000], progress=False).save(WORK / preset)
if args.tag:
    for preset, fills in PRESETS.items():
        model = sdi.DeepImpute.load(WORK / preset)
        np.savez(WORK / f"{preset}_{args.tag}.npz", **model.impute(X[:3000], fills=fills))
    model = sdi.DeepImpute.load(WORK / "default")
    times = []
    for _ in range(3):
        start = time.perf_counter()
        model.impute(X, fills=("expected",))
        times.append(time.perf_counter() - start)
    print(f"{args.tag} ({Path(sdi.__file__).parent}): 50k impute(expected) s", " ".join(f"{t:.2f}" for t in times))
