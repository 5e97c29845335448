"""All of DeepImpute's sub-networks as one fused Keras layer, and their per-block loss (TensorFlow only).

Each block k has its own weights, ``Dense(hidden, relu) -> Dropout -> Dense(block size, softplus)``,
stacked along a leading block axis so that one batched matrix product serves every block. Inputs
and targets are gathered in the graph from one dense batch of log1p counts; padded input slots read
a zero column and padded output slots are masked out of the loss, so blocks of different sizes are
exactly the independent networks of the paper, trained in one computation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ._backend import import_keras

if TYPE_CHECKING:
    from ._layout import BlockLayout

tf, keras = import_keras()


class FusedBlocks(keras.Model):
    """The block-diagonal DeepImpute network: K independent two-layer perceptrons in one layer.

    Returns the value head (softplus, log1p scale) and, with ``detection_head``, the logits of
    a second head that predicts whether the gene is detected (non-zero) in the cell.
    """

    def __init__(
        self,
        layout: BlockLayout,
        *,
        hidden_units: int,
        dropout_rate: float,
        detection_head: bool,
        seed: int,
        precision: str = "float32",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.precision = precision
        self.layout = layout
        self.hidden_units = hidden_units
        self.dropout_rate = dropout_rate
        self.detection_head = detection_head
        self.seed_generator = keras.random.SeedGenerator(seed)
        self._init_seed = seed
        self._inputs = tf.constant(layout.inputs)
        self._outputs = tf.constant(layout.outputs)

    def build(self, input_shape=None):
        K, P = self.layout.inputs.shape
        S = self.layout.outputs.shape[1]
        H = self.hidden_units
        rng = np.random.default_rng(self._init_seed)
        in_mask = (np.arange(P)[None, :] < self.layout.n_inputs[:, None]).astype(np.float32)
        out_mask = (np.arange(S)[None, :] < self.layout.n_outputs[:, None]).astype(np.float32)

        def glorot(fan_in, fan_out, shape):
            # Keras' glorot_uniform per block with that block's real fan-in/fan-out; padding rows stay 0
            limit = np.sqrt(6.0 / (fan_in + fan_out)).astype(np.float32)
            return rng.uniform(-1.0, 1.0, size=shape).astype(np.float32) * limit.reshape(-1, 1, 1)

        w1 = glorot(self.layout.n_inputs, H, (K, P, H)) * in_mask[:, :, None]
        w2 = glorot(H, self.layout.n_outputs, (K, H, S)) * out_mask[:, None, :]
        self.w1 = self.add_weight(shape=(K, P, H), initializer="zeros", name="w1")
        self.b1 = self.add_weight(shape=(K, H), initializer="zeros", name="b1")
        self.w2 = self.add_weight(shape=(K, H, S), initializer="zeros", name="w2")
        self.b2 = self.add_weight(shape=(K, S), initializer="zeros", name="b2")
        self.w1.assign(w1)
        self.w2.assign(w2)
        if self.detection_head:
            wd = glorot(H, self.layout.n_outputs, (K, H, S)) * out_mask[:, None, :]
            self.wd = self.add_weight(shape=(K, H, S), initializer="zeros", name="wd")
            self.bd = self.add_weight(shape=(K, S), initializer="zeros", name="bd")
            self.wd.assign(wd)
        self.output_mask = tf.constant(out_mask)
        super().build(input_shape)

    def gather(self, batch):
        """Split a dense (cells, width) batch into block inputs (K, B, P) and targets (K, B, S)."""
        t = tf.transpose(batch)
        x = tf.transpose(tf.gather(t, self._inputs), (0, 2, 1))
        y = tf.transpose(tf.gather(t, self._outputs), (0, 2, 1))
        return x, y

    def _matmul(self, a, w):
        if self.precision == "float32":
            return tf.matmul(a, w)
        # bfloat16 operands, float32 result: the weights themselves (and Adam's state) stay float32
        return tf.cast(tf.matmul(tf.cast(a, self.precision), tf.cast(w, self.precision)), tf.float32)

    def call(self, x, training=False, dropout_seed=None):
        """``dropout_seed`` (int64 tensor, shape (2,)): stateless dropout instead of the seed generator's.

        Distributed training passes one per replica and step (a generator's state cannot be shared by replicas).
        """
        h = tf.nn.relu(self._matmul(x, self.w1) + self.b1[:, None, :])
        if training and self.dropout_rate > 0:
            if dropout_seed is None:
                h = keras.random.dropout(h, self.dropout_rate, seed=self.seed_generator)
            else:
                h = tf.nn.experimental.stateless_dropout(h, self.dropout_rate, seed=dropout_seed)
        value = tf.nn.softplus(self._matmul(h, self.w2) + self.b2[:, None, :])
        if not self.detection_head:
            return value, None
        logits = self._matmul(h, self.wd) + self.bd[:, None, :]
        return value, logits

    def block_variables(self):
        """Trainable variables, all with the block axis first (used for per-block best weights)."""
        names = ["w1", "b1", "w2", "b2"] + (["wd", "bd"] if self.detection_head else [])
        return [getattr(self, n) for n in names]


def block_losses(
    net: FusedBlocks,
    y,
    value,
    logits,
    row_weight,
    *,
    detection_weight: float = 1.0,
    value_loss: str = "weighted",
    total_weight=None,
):
    """Per-block loss, shape (K,): DeepImpute's weighted MSE plus, with two heads, the detection BCE.

    The value loss is the original ``mean(y * (y - y_hat) ** 2)`` over each block's cells and real
    targets (so zeros, which carry no weight, never pull predictions down); padding rows and columns
    are excluded from sums and denominators. ``value_loss="nonzero"`` weighs every detected entry
    equally instead (the original's unexposed ``binary=True``). ``total_weight`` replaces ``sum(row_weight)``
    in the denominator: a replica's share of a batch split across devices is divided by the whole batch's weight,
    so that the replicas' losses (and gradients) add up to the loss of the whole batch.
    """
    detected = tf.cast(y > 0, y.dtype)
    per_entry = (y if value_loss == "weighted" else detected) * tf.square(y - value)
    if logits is not None:
        # sigmoid_cross_entropy_with_logits(detected, logits), written as softplus(l) - d * l: two fused
        # kernels (and their gradients) instead of its six elementwise operations
        per_entry += detection_weight * (tf.nn.softplus(logits) - detected * logits)
    # padded targets drop out as the entries are summed per cell, padded cells as the cells are summed:
    # no (blocks, cells, targets) mask is built (faster; ``benchmarks/RESULTS_speed.md``)
    per_cell = tf.einsum("kbs,ks->kb", per_entry, net.output_mask)
    if total_weight is None:
        total_weight = tf.reduce_sum(row_weight)
    denom = total_weight * tf.reduce_sum(net.output_mask, axis=1)
    return tf.reduce_sum(per_cell * row_weight[None, :], axis=1) / denom
