"""Profile the two hot spots of a fit on simulated 10k cells x 3200 genes (issue 4), in one process.

1. Predictor selection (``select_predictors``): scipy's sparse product (float64) against the dense centred float32
   BLAS path, wall time, same predictors?
2. One 8192-row training chunk (``Trainer._train_chunk``): process CPU time (user + system, robust to other jobs
   on a shared machine) with Keras' Adam against the one-kernel ``FusedAdam``, and float32 against bfloat16 matrix
   products, at batch 64 and 256; the minimum over ``--reps`` calls after a warm-up call.

Uses the simulated cache of ``benchmarks/speed.py`` (run that first). Run: ``python benchmarks/step_profile.py``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy import sparse

sys.path.insert(0, str(Path(__file__).parent))
import _common as C  # noqa: E402

from scdeepimpute import _layout, _selection  # noqa: E402
from scdeepimpute._backend import import_keras  # noqa: E402
from scdeepimpute._layout import BlockLayout  # noqa: E402
from scdeepimpute._network import FusedBlocks  # noqa: E402
from scdeepimpute._training import Trainer  # noqa: E402
from scdeepimpute._utils import mean_var  # noqa: E402

tf, keras = import_keras()


class KerasAdam:
    """``keras.optimizers.Adam`` behind the trainer's ``apply(grads)`` interface (the code before FusedAdam)."""

    def __init__(self, variables, learning_rate):
        self.variables = variables
        self.optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
        self.optimizer.build(variables)

    def apply(self, grads, *, replicated=False):
        self.optimizer.apply_gradients(zip(grads, self.variables, strict=True))


def selection(X, blocks, mean, var):
    rows, out = [], {}
    for label, threshold in (("sparse float64 (scipy)", 2.0), ("dense centred float32 (BLAS)", 0.0)):
        _selection.DENSE_PRODUCT_DENSITY = threshold
        start = time.perf_counter()
        out[label] = _selection.select_predictors(X, blocks, mean, var, n_predictors=5)
        rows.append((label, time.perf_counter() - start))
    same = all(np.array_equal(a, b) for a, b in zip(*out.values(), strict=True))
    print(f"\n| selection path (density {X.nnz / np.prod(X.shape):.2f}, {len(blocks)} blocks) | wall s |\n|---|---|")
    for label, s in rows:
        print(f"| {label} | {s:.2f} |")
    print(f"\nsame predictors: {same}; ratio {rows[0][1] / rows[1][1]:.2f}x")


def chunk_cpu(layout, data, weights, batch, optimizer, precision, reps):
    net = FusedBlocks(layout, hidden_units=256, dropout_rate=0.2, detection_head=True, seed=0, precision=precision)
    trainer = Trainer(net, learning_rate=1e-3, batch_size=batch, value_loss="nonzero")
    if optimizer == "keras":
        trainer.optimizer = KerasAdam(trainer.variables, 1e-3)  # before the first call: the graph is traced with it
    trainer._train_chunk(data, weights)
    times = []
    for _ in range(reps):
        start = time.process_time()
        trainer._train_chunk(data, weights).numpy()
        times.append(time.process_time() - start)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=4)
    args = parser.parse_args()
    X = sparse.load_npz(C.speed_data_path(10000, 3200)).tocsr().astype(np.float32)
    mean, var = mean_var(X)
    blocks = [np.arange(i, min(i + 512, X.shape[1])) for i in range(0, X.shape[1], 512)]
    selection(X, blocks, mean, var)

    predictors = _selection.select_predictors(X, blocks, mean, var, n_predictors=5)
    layout = BlockLayout.from_blocks(blocks, predictors, n_extra=1)
    rows = np.arange(8192)
    library = _layout.log_library(X)
    data = _layout.batch_loader(X, layout, (library - library.mean())[:, None])(rows)
    data, weights = tf.constant(data), tf.constant(np.ones(rows.size, np.float32))
    print("\n| batch | optimizer | precision | CPU s per 8192-row chunk |\n|---|---|---|---|")
    for batch in (64, 256):
        for optimizer, precision in (("keras", "float32"), ("fused", "float32"), ("fused", "bfloat16")):
            s = chunk_cpu(layout, data, weights, batch, optimizer, precision, args.reps)
            print(f"| {batch} | {optimizer} | {precision} | {s:.3f} |", flush=True)


if __name__ == "__main__":
    main()
