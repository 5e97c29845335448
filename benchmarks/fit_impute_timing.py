"""Wall time and peak memory of a fixed-length fit plus ``impute`` (both fills), for before/after comparisons.

Runs one preset for a fixed number of epochs (patience disabled) so that two code versions do the same work,
and prints the last validation loss and a checksum of the output, which must agree between versions that
change only speed. Compare versions in one session by pointing ``PYTHONPATH`` at a copy of the old package:

    python benchmarks/fit_impute_timing.py default            # this checkout
    PYTHONPATH=/tmp/old python benchmarks/fit_impute_timing.py default

Data: ``--npz`` (a scipy sparse ``.npz``, cells x genes counts; e.g. the cache ``benchmarks/speed.py`` writes)
or, by default, the bundled example; ``--dense`` passes it as a dense array (the dense training and prediction
paths). ``--min-vmr`` (default 0: every gene with variance is a target) above 0 leaves some genes untargeted.
``--quick``: one epoch on the first 300 cells (the CI smoke test; compare its checksums only with another
``--quick`` run).
"""

from __future__ import annotations

import argparse
import resource
import time
import warnings

import numpy as np
import scanpy as sc
from scipy import sparse

import scdeepimpute as sdi

warnings.filterwarnings("ignore")
sc.settings.verbosity = 0

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("preset", choices=["default", "paper"])
parser.add_argument("--npz", default=None, help="sparse counts (.npz); default: the bundled example")
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--min-vmr", type=float, default=0.0)
parser.add_argument("--dense", action="store_true")
parser.add_argument("--quick", action="store_true", help="one epoch")
args = parser.parse_args()
if args.quick:
    args.epochs = 1

X = sdi.datasets.example().X if args.npz is None else sparse.load_npz(args.npz).tocsr().astype(np.float32)
if args.quick:
    X = X[:300]
if args.dense:
    X = X.toarray() if sparse.issparse(X) else np.asarray(X)
model = sdi.DeepImpute(preset=args.preset, max_epochs=args.epochs, patience=10**6, min_vmr=args.min_vmr)
start = time.perf_counter()
model.fit(X, progress=False)
fit_s = time.perf_counter() - start
fills = ("expected", "detected") if model.params["detection_head"] else ("detected",)
start = time.perf_counter()
out = model.impute(X, fills=fills)
impute_s = time.perf_counter() - start
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(
    f"{sdi.__file__.rsplit('/scdeepimpute/', 1)[0]}  {args.preset}  {X.shape[0]}x{X.shape[1]}  fit {fit_s:.1f} s  "
    f"impute {impute_s:.2f} s  val_loss {model.history_.val_loss[-1]:.5f}  {len(model.targets_)} targets  "
    + "  ".join(f"checksum {f} {float(out[f].sum(dtype=np.float64)):.9e}" for f in fills)
    + f"  peak RSS {peak_mb:.0f} MB"
)
