"""CPU time of the default preset's predictor selection alone, and its predictors, for before/after comparisons.

Splits the targets as the default preset does (``min_vmr=0``, blocks of 512, seed 0), runs ``select_predictors``
under ``cProfile.Profile(time.process_time)`` and pickles the predictors. Compare two versions in one session
(``PYTHONPATH`` at a copy of the old package) and check the pickles block by block with ``np.array_equal``.

Run: ``python benchmarks/selection_time.py /tmp/scdeepimpute_bench/peers/<row>/input.h5ad OUT.pkl``
"""

from __future__ import annotations

import cProfile
import pickle
import pstats
import sys
import time

import numpy as np


def main() -> None:
    import anndata as ad
    from scipy import sparse

    from scdeepimpute import _selection as S
    from scdeepimpute._utils import gene_stats

    X = sparse.csr_matrix(ad.read_h5ad(sys.argv[1]).X, dtype=np.float32)
    mean, var, _ = gene_stats(X)
    split = S.split_targets(mean, var, min_vmr=0.0, subset_size=512, genes=None, rng=np.random.default_rng(0))
    profile = cProfile.Profile(time.process_time)
    c = time.process_time()
    profile.enable()
    predictors = S.select_predictors(X, split.blocks, mean, var, n_predictors=5)
    profile.disable()
    print(f"{X.shape[0]} x {X.shape[1]}: select_predictors cpu {time.process_time() - c:.2f} s")
    with open(sys.argv[2], "wb") as f:
        pickle.dump(predictors, f)
    pstats.Stats(profile).sort_stats("tottime").print_stats(8)


if __name__ == "__main__":
    main()
