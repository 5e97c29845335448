"""Per-stage wall and CPU time of one default fit + impute (issue 15), by wrapping the package's stage functions.

Reads a ``speed.py`` cache folder's ``input.h5ad`` (masked counts) and scores both layers on its ``mask.npz``.
Stages overlap (``calibration total`` holds a kNN graph and network predictions; the second kNN graph and
``neighbourhood value`` calls are impute's). CPU time (all threads) is the figure to compare on a shared machine.

Run: ``python benchmarks/stages.py /tmp/scdeepimpute_bench/peers/<row>/input.h5ad ['{"max_epochs": 5}']``
(the folder is written by ``python benchmarks/speed.py --rows <row>``). Candidate for a ``profiler.py`` option.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time

import numpy as np

STAGES = [  # (module attribute path, label)
    ("_model.select_predictors", "predictor selection"),
    ("_model.split_targets", "split targets"),
    ("_model.gene_stats", "gene stats"),
    ("_neighbors.calibration_entries", "calibration entries+hide"),
    ("_neighbors.hide", "calibration entries+hide"),
    ("_training.network_and_trainer", "build network"),
    ("_training.Trainer.evaluate", "validation (in fit)"),
    ("_training.Trainer.predict", "network predict"),
    ("_neighbors.fit_neighbourhood", "kNN graph (PCA+kNN)"),
    ("_neighbors.calibrate", "calibrate (blend choice)"),
    ("_model.fill_chunk", "fill_chunk"),
    ("_model.batch", "batch gather (predict)"),
    ("_training.Trainer.fit", "trainer.fit total"),
    ("_neighbors.Neighbourhood.log1p_if_detected", "neighbourhood value"),
]


def wrap(owner, name: str, label: str, totals: dict) -> None:
    f = getattr(owner, name)

    @functools.wraps(f)
    def timed(*a, **k):
        w, c = time.perf_counter(), time.process_time()
        try:
            return f(*a, **k)
        finally:
            d = totals.setdefault(label, [0.0, 0.0, 0])
            d[0] += time.perf_counter() - w
            d[1] += time.process_time() - c
            d[2] += 1

    setattr(owner, name, timed)


def main() -> None:
    import anndata as ad
    import scanpy  # noqa: F401  (imported before the timers, as in speed.py)
    from scipy import sparse

    import scdeepimpute as sdi
    from scdeepimpute import _model, _neighbors, _training
    from scdeepimpute._backend import import_keras

    tf, _ = import_keras()
    tf.zeros(1)
    modules = {"_model": _model, "_neighbors": _neighbors, "_training": _training}
    totals: dict = {}
    for where, label in STAGES:
        parts = where.split(".")
        owner = modules[parts[0]]
        for p in parts[1:-1]:
            owner = getattr(owner, p)
        wrap(owner, parts[-1], label, totals)
    path = sys.argv[1]
    kw = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    X = sparse.csr_matrix(ad.read_h5ad(path).X, dtype=np.float32)
    print(path, X.shape, kw, flush=True)
    m = sdi.DeepImpute(random_state=0, **kw)
    w, c = time.perf_counter(), time.process_time()
    m.fit(X, progress=False)
    fw, fc = time.perf_counter() - w, time.process_time() - c
    w, c = time.perf_counter(), time.process_time()
    out = m.impute(X)
    iw, ic = time.perf_counter() - w, time.process_time() - c
    inputs = np.mean([len(p) for p in m.predictors_])
    print(
        f"fit wall {fw:.1f} cpu {fc:.1f}; impute wall {iw:.1f} cpu {ic:.1f}; epochs {m.history_.stopped_epoch}; "
        f"targets {len(m.targets_)}; blocks {len(m.blocks_)}; inputs/block {inputs:.0f}"
    )
    for k, (ww, cc, n) in sorted(totals.items(), key=lambda kv: -kv[1][0]):
        print(f"  {k:32s} wall {ww:7.2f} cpu {cc:7.2f} calls {n}")
    mk = np.load(os.path.join(os.path.dirname(path), "mask.npz"))
    for f, Y in out.items():
        r = sdi.tl.masked_metrics(mk["values"], np.asarray(Y[mk["obs_idx"], mk["var_idx"]]).ravel())
        print(f"  {f}: masked MSE {r['mse']:.4f} Pearson {r['pearson']:.4f}")


if __name__ == "__main__":
    main()
