"""Issue 4 experiment: early-stopping rules (relative threshold ``tol``, ``patience``): epochs saved vs accuracy.

Default preset, protocol of ``benchmarks/accuracy.py`` (``load()`` + ``sdi.tl.mask(a, random_state=0)``). Training
is deterministic for a seed, so the run that a rule stops at epoch E is the run with ``max_epochs=E``: each dataset
is fitted once with the loosest rule (tol 0, the largest patience asked for), the stopping epoch of every rule is read
off its validation history (an epoch counts as an improvement only if it lowers the best validation loss so far by
more than ``tol`` times that loss; stop after ``patience`` epochs without one), and that run is refitted with
``max_epochs=E``. Reports masked MSE / Pearson of both fills and the epochs.

Run: ``python benchmarks/experiments/early_stop_tol.py [--datasets ...] [--tols 0,1e-3,3e-3] [--patiences 5]``
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from accuracy import fill_scores, masked_input  # noqa: E402

import scdeepimpute as sdi  # noqa: E402
from scdeepimpute._training import improves  # noqa: E402


def stop_epoch(val_loss: np.ndarray, tol: float, patience: int) -> int:
    """The epoch at which ``Trainer.fit``'s rule (``_training.improves``) stops on this validation history."""
    best, wait = np.inf, 0
    for epoch, v in enumerate(val_loss, start=1):
        if improves(v, best, tol):
            best, wait = v, 0
        else:
            wait += 1
        if wait >= patience:
            return epoch
    return len(val_loss)


parser = argparse.ArgumentParser()
parser.add_argument("--datasets", default="pbmc4k_2100,pbmc3k_ds30,mouse1m_10k")
parser.add_argument("--tols", default="0,1e-3,3e-3")
parser.add_argument("--patiences", default="5")
parser.add_argument("--seeds", type=int, default=2)
args = parser.parse_args()
rules = list(itertools.product(map(float, args.tols.split(",")), map(int, args.patiences.split(","))))
loosest = {"tol": 0.0, "patience": max(p for _, p in rules)}  # stops last: every rule's epoch is in its history
columns = ["dataset", "seed", "tol", "patience", "epochs"]
columns += [f"{fill} {metric}" for fill in ("detected", "expected") for metric in ("MSE", "Pearson")]
print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
for name in args.datasets.split(","):
    X, u = masked_input(name)
    for seed in range(args.seeds):
        full = sdi.DeepImpute(random_state=seed, **loosest).fit(X, progress=False)
        val = np.asarray(full.history_.val_loss)
        scores = {len(val): fill_scores(full, X, u)}  # one refit and scoring per distinct stopping epoch
        for tol, patience in rules:
            e = stop_epoch(val, tol, patience)
            if e not in scores:
                refit = sdi.DeepImpute(random_state=seed, max_epochs=e, **loosest).fit(X, progress=False)
                assert refit.history_.stopped_epoch == e
                scores[e] = fill_scores(refit, X, u)
            cells = [name, seed, f"{tol:g}", patience, e, *(f"{x:.4f}" for x in scores[e])]
            print("| " + " | ".join(map(str, cells)) + " |", flush=True)
