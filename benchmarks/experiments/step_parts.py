"""Issue 4 experiment: CPU time of one training chunk by loss formulation and block layout.

One 8192-row chunk (batch 256, default preset's network: 256 hidden units, detection head, dropout 0.2, precision
``--precision``) on the simulated 10k x 3200 cells of ``benchmarks/speed.py``, targets split two ways:

* ``512 + short``: blocks of 512 targets and a short last block (3200 = 6 x 512 + 128), as before balanced blocks;
* ``balanced``: the same number of blocks with sizes differing by at most one (7 x 457-458), as ``split_targets`` now
  does when the last block cannot be completed.

Loss formulations: ``masked`` is the previous ``block_losses`` (a (blocks, cells, targets) mask of row and target
weights, ``sigmoid_cross_entropy_with_logits``), kept here verbatim; ``current`` is
``scdeepimpute._network.block_losses`` (softplus form of the same cross-entropy, target mask applied while summing
entries per cell, row weights while summing cells); ``lower bound`` is a loss with no masks and no cross-entropy (not a
usable loss: it shows what the elementwise part of the step costs). Heads: ``two products`` is the network as it is;
``one product`` computes both output heads as one matrix product against the concatenated weights (same arithmetic;
tried and not adopted). All variants are built first, then called in turn
``--reps`` times (interleaved, so load on a shared machine hits them alike); the table gives process CPU seconds per
chunk (min and median).

Run: ``python benchmarks/experiments/step_parts.py [--reps 8] [--precision auto]``
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

from scdeepimpute import _layout, _selection, _training  # noqa: E402
from scdeepimpute._backend import import_keras, resolve_precision  # noqa: E402
from scdeepimpute._layout import BlockLayout  # noqa: E402
from scdeepimpute._network import FusedBlocks  # noqa: E402
from scdeepimpute._utils import mean_var  # noqa: E402

tf, keras = import_keras()


def masked_losses(net, y, value, logits, row_weight, *, detection_weight=1.0, value_loss="weighted", total_weight=None):
    """``block_losses`` as it was before the softplus / per-cell-sum form (commit 7e6a23e)."""
    mask = net.output_mask[:, None, :] * row_weight[None, :, None]
    if total_weight is None:
        total_weight = tf.reduce_sum(row_weight)
    denom = total_weight * tf.reduce_sum(net.output_mask, axis=1)
    weight = y if value_loss == "weighted" else tf.cast(y > 0, y.dtype)
    value_term = tf.reduce_sum(mask * weight * tf.square(y - value), axis=(1, 2)) / denom
    detected = tf.cast(y > 0, y.dtype)
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=detected, logits=logits)
    return value_term + detection_weight * tf.reduce_sum(mask * bce, axis=(1, 2)) / denom


class OneProductHeads(FusedBlocks):
    """Both output heads as ``h @ concat(w2, wd)``: one wider batched product instead of two."""

    def call(self, x, training=False, dropout_seed=None):
        h = tf.nn.relu(self._matmul(x, self.w1) + self.b1[:, None, :])
        if training and self.dropout_rate > 0:
            h = keras.random.dropout(h, self.dropout_rate, seed=self.seed_generator)
        n_out = self.layout.outputs.shape[1]
        both = self._matmul(h, tf.concat([self.w2, self.wd], axis=2))
        return tf.nn.softplus(both[:, :, :n_out] + self.b2[:, None, :]), both[:, :, n_out:] + self.bd[:, None, :]


def lower_bound(net, y, value, logits, row_weight, **_):
    return tf.reduce_mean(tf.square(y - value), axis=(1, 2)) + tf.reduce_mean(logits, axis=(1, 2))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=8)
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    C.make_speed_data([10000])
    X = sparse.load_npz(C.speed_data_path(10000, 3200)).tocsr().astype(np.float32)
    mean, var = mean_var(X)
    n, k = X.shape[1], -(-X.shape[1] // 512)
    splits = {
        "512 + short": [np.arange(i, min(i + 512, n)) for i in range(0, n, 512)],
        "balanced": np.array_split(np.arange(n), k),
    }
    rows = np.arange(8192)
    library = _layout.log_library(X)
    precision = resolve_precision(args.precision)
    current = _training.block_losses

    layouts = {}
    for name, blocks in splits.items():
        predictors = _selection.select_predictors(X, blocks, mean, var, n_predictors=5)
        layouts[name] = BlockLayout.from_blocks(blocks, predictors, n_extra=1)
    weights = tf.constant(np.ones(rows.size, np.float32))

    def chunk(split, losses, network=FusedBlocks):
        layout = layouts[split]
        data = tf.constant(_layout.batch_loader(X, layout, (library - library.mean())[:, None])(rows))
        net = network(layout, hidden_units=256, dropout_rate=0.2, detection_head=True, seed=0, precision=precision)
        _training.block_losses = losses  # read when the Trainer traces its graphs
        trainer = _training.Trainer(net, learning_rate=1e-3, batch_size=256, value_loss="nonzero")
        trainer._train_chunk(data, weights)
        _training.block_losses = current
        return lambda: trainer._train_chunk(data, weights).numpy()

    variants = {
        ("512 + short", "masked", "two products"): chunk("512 + short", masked_losses),
        ("512 + short", "current", "two products"): chunk("512 + short", current),
        ("512 + short", "lower bound", "two products"): chunk("512 + short", lower_bound),
        ("balanced", "masked", "two products"): chunk("balanced", masked_losses),
        ("balanced", "current", "two products"): chunk("balanced", current),
        ("balanced", "current", "one product"): chunk("balanced", current, OneProductHeads),
    }
    times = {key: [] for key in variants}
    for _ in range(args.reps):
        for key, call in variants.items():
            start = time.process_time()
            call()
            times[key].append(time.process_time() - start)
    print(f"\nprecision {precision}, {args.reps} interleaved calls each\n")
    print("| blocks | loss | heads | CPU s per 8192-row chunk, min | median |\n|---|---|---|---|---|")
    for (blocks, loss, heads), t in times.items():
        print(f"| {blocks} | {loss} | {heads} | {min(t):.3f} | {np.median(t):.3f} |")


if __name__ == "__main__":
    main()
