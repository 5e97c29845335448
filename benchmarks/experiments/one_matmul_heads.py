"""Issue 4 experiment: the two output heads as one matrix product (``h @ concat(w2, wd)``) instead of two.

Same arithmetic and the same maths; the question is whether one wider batched product beats two. One 8192-row chunk
(batch 256, default preset's network, precision ``auto``) on the simulated 10k x 3200 cells of ``benchmarks/speed.py``,
7 even blocks; both variants built first, then called in turn 8 times; process CPU seconds per chunk (min, median).
Result (2026-11-25, commit e4c03ff): 1.12 / 1.13 s for two products, 1.60 / 1.63 s for one; not adopted (the
concatenation copies the weights every step and the outputs are sliced apart again).

Run: ``python benchmarks/experiments/one_matmul_heads.py``
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from scipy import sparse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import _common as C  # noqa: E402

from scdeepimpute import _model, _selection, _training  # noqa: E402
from scdeepimpute._backend import import_keras, resolve_precision  # noqa: E402
from scdeepimpute._network import BlockLayout, FusedBlocks  # noqa: E402
from scdeepimpute._utils import mean_var  # noqa: E402

tf, keras = import_keras()


class OneProductHeads(FusedBlocks):
    def call(self, x, training=False, dropout_seed=None):
        h = tf.nn.relu(self._matmul(x, self.w1) + self.b1[:, None, :])
        if training and self.dropout_rate > 0:
            h = keras.random.dropout(h, self.dropout_rate, seed=self.seed_generator)
        n_out = self.layout.outputs.shape[1]
        both = self._matmul(h, tf.concat([self.w2, self.wd], axis=2))
        return tf.nn.softplus(both[:, :, :n_out] + self.b2[:, None, :]), both[:, :, n_out:] + self.bd[:, None, :]


def main():
    C.make_speed_data([10000])
    X = sparse.load_npz(C.speed_data_path(10000, 3200)).tocsr().astype(np.float32)
    mean, var = mean_var(X)
    blocks = np.array_split(np.arange(X.shape[1]), -(-X.shape[1] // 512))
    predictors = _selection.select_predictors(X, blocks, mean, var, n_predictors=5)
    layout = BlockLayout.from_blocks(blocks, predictors, n_extra=1)
    library = _model._log_library(X)
    rows = np.arange(8192)
    data = tf.constant(_model._batch_loader(X, layout, (library - library.mean())[:, None])(rows))
    weights = tf.constant(np.ones(rows.size, np.float32))
    precision = resolve_precision("auto")

    def chunk(cls):
        net = cls(layout, hidden_units=256, dropout_rate=0.2, detection_head=True, seed=0, precision=precision)
        trainer = _training.Trainer(net, learning_rate=1e-3, batch_size=256, value_loss="nonzero")
        trainer._train_chunk(data, weights)
        return lambda: trainer._train_chunk(data, weights).numpy()

    variants = {"two products (current)": chunk(FusedBlocks), "one product": chunk(OneProductHeads)}
    times = {k: [] for k in variants}
    for _ in range(8):
        for key, call in variants.items():
            start = time.process_time()
            call()
            times[key].append(time.process_time() - start)
    print(f"\nprecision {precision}\n\n| heads | CPU s per 8192-row chunk, min | median |\n|---|---|---|")
    for key, t in times.items():
        print(f"| {key} | {min(t):.3f} | {np.median(t):.3f} |")


if __name__ == "__main__":
    main()
