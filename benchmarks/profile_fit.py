"""cProfile of one default-preset fit on the simulated cells of ``benchmarks/speed.py`` (issue 4): where the time goes.

As in ``speed.py``'s workers, scanpy is imported and TensorFlow started before the profiled fit, so the profile shows
the fit's own costs (the first model of a process: graph tracing included). Prints fit and predict wall time, then
the ``--top`` entries by cumulative time.

Run: ``python benchmarks/profile_fit.py [--cells 10000] [--top 45]``
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import _common as C  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--cells", type=int, default=10000)
parser.add_argument("--top", type=int, default=45)
args = parser.parse_args()

import scanpy  # noqa: E402, F401
import tensorflow as tf  # noqa: E402

tf.constant(1.0) + 1  # start the runtime
Xm = C.masked_speed_data(args.cells, 3200)[0]

import scdeepimpute as sdi  # noqa: E402

model = sdi.DeepImpute(random_state=0)
profile = cProfile.Profile()
start = time.perf_counter()
profile.enable()
model.fit(Xm, progress=False)
profile.disable()
print(f"fit {time.perf_counter() - start:.1f} s, {model.history_.stopped_epoch} epochs")
start = time.perf_counter()
model.predict(Xm)
print(f"predict {time.perf_counter() - start:.1f} s")
pstats.Stats(profile).sort_stats("cumulative").print_stats(args.top)
