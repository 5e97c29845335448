"""All of DeepImpute's sub-networks as one fused Keras layer, and the loop that trains them.

Each block k has its own weights, ``Dense(hidden, relu) -> Dropout -> Dense(block size, softplus)``,
stacked along a leading block axis so that one batched matrix product serves every block. Inputs
and targets are gathered in the graph from one dense batch of log1p counts; padded input slots read
a zero column and padded output slots are masked out of the loss, so blocks of different sizes are
exactly the independent networks of the paper, trained in one computation.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from ._backend import import_keras

tf, keras = import_keras()


@dataclass
class BlockLayout:
    """Column layout of a batch and which columns each block reads and predicts.

    A batch holds the log1p counts of ``columns`` (sorted gene indices), then ``n_extra`` per-cell
    covariates read by every block (the centred log library size), then one zero column that
    padded slots point to.
    """

    columns: np.ndarray
    inputs: np.ndarray  # (blocks, max inputs) positions in a batch row; padding = ``pad``
    outputs: np.ndarray  # (blocks, max targets) positions in a batch row; padding = ``pad``
    n_extra: int = 0
    n_inputs: np.ndarray = field(init=False)
    n_outputs: np.ndarray = field(init=False)

    def __post_init__(self):
        self.n_inputs = (self.inputs != self.pad).sum(axis=1)
        self.n_outputs = (self.outputs != self.pad).sum(axis=1)

    @property
    def pad(self) -> int:
        """Position of the all-zero padding column."""
        return len(self.columns) + self.n_extra

    @property
    def width(self) -> int:
        """Columns of a batch row."""
        return self.pad + 1

    @classmethod
    def from_blocks(cls, blocks: list[np.ndarray], predictors: list[np.ndarray], *, n_extra: int = 0) -> BlockLayout:
        columns = np.unique(np.concatenate([*blocks, *predictors]))
        pad = len(columns) + n_extra
        extra = np.arange(len(columns), pad)

        def padded(lists):
            width = max(len(x) for x in lists)
            out = np.full((len(lists), width), pad, dtype=np.int32)
            for k, x in enumerate(lists):
                out[k, : len(x)] = x
            return out

        inputs = padded([np.concatenate([np.searchsorted(columns, q), extra]) for q in predictors])
        outputs = padded([np.searchsorted(columns, b) for b in blocks])
        return cls(columns=columns, inputs=inputs, outputs=outputs, n_extra=n_extra)


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
    # no (blocks, cells, targets) mask is built (CPU per 8192-row chunk 1.27 -> 1.20 s, min of 8,
    # ``benchmarks/experiments/step_parts.py``)
    per_cell = tf.einsum("kbs,ks->kb", per_entry, net.output_mask)
    if total_weight is None:
        total_weight = tf.reduce_sum(row_weight)
    denom = total_weight * tf.reduce_sum(net.output_mask, axis=1)
    return tf.reduce_sum(per_cell * row_weight[None, :], axis=1) / denom


#: Detection probabilities are clipped to [0, 1 - P_MAX_GAP] before the Poisson link (lambda <= 13.8).
P_MAX_GAP = 1e-6
_LAMBDA_GRID = np.geomspace(1e-6, -np.log(P_MAX_GAP), 1024)


@functools.cache
def _poisson_table() -> tuple[np.ndarray, np.ndarray]:
    """``(log lambda, E[log1p X | X > 0])`` for X ~ Poisson(lambda) on ``_LAMBDA_GRID`` (sum over k = 1..200)."""
    from scipy.special import gammaln

    k = np.arange(1, 201, dtype=np.float64)
    lam = _LAMBDA_GRID[:, None]
    pmf = np.exp(k * np.log(lam) - lam - gammaln(k + 1))
    return np.log(_LAMBDA_GRID), (pmf * np.log1p(k)).sum(axis=1) / -np.expm1(-_LAMBDA_GRID)


def poisson_log1p_if_detected(p: np.ndarray) -> np.ndarray:
    """The log1p count a gene has when detected, from its detection probability alone (Poisson link).

    With X ~ Poisson(lambda) and P(X > 0) = p, lambda = -log(1 - p); returns E[log1p X | X > 0]
    (``log 2`` as p -> 0, growing with p). p is clipped to ``1 - P_MAX_GAP``; the expectation is read
    from a table on a log-lambda grid (linear interpolation; error below 1e-4).

    Parameters
    ----------
    p
        Detection probabilities, any shape.

    Returns
    -------
    float32 array of the same shape.
    """
    log_grid, table = _poisson_table()
    # float32 working copies: this runs on every predicted chunk, and the dask path bounds its memory
    x = np.array(p, dtype=np.float32)  # a copy, worked on in place
    np.clip(x, 0.0, np.float32(1.0 - P_MAX_GAP), out=x)
    np.negative(x, out=x)
    np.log1p(x, out=x)
    np.negative(x, out=x)  # lambda = -log(1 - p)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.log(x, out=x)  # lambda = 0 -> -inf -> the table's first value (the p -> 0 limit, log 2)
    return _interp_uniform(x, log_grid, table)


def _interp_uniform(x: np.ndarray, grid: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``np.interp(x, grid, table)`` for an evenly spaced ``grid``, in place on float32 ``x``.

    The position on an even grid is arithmetic, not a search: 0.38 s instead of ``np.interp``'s 2.45 s
    on 32M float32 values, the reads of a 10k x 3200 prediction (``benchmarks/experiments/poisson_link.py``).
    Values outside the grid take the end values, as in ``np.interp``; NaN takes the first.
    """
    n = grid.size
    step = (grid[-1] - grid[0]) / (n - 1)
    x -= np.float32(grid[0])
    x *= np.float32(1.0 / step)
    np.nan_to_num(x, copy=False, nan=0.0)
    np.clip(x, 0.0, np.float32(n - 1), out=x)
    i = np.minimum(x.astype(np.int32), n - 2)
    x -= i  # the fraction of the way to the next grid point
    table = table.astype(np.float32)
    x *= np.diff(table)[i]
    x += table[i]
    return x


def value_if_detected(value: np.ndarray, p: np.ndarray, zero_fraction: np.ndarray) -> np.ndarray:
    """Combine the value head with the value implied by the detection head, per gene (log1p scale).

    The value head ``value`` is trained on detected entries only, so for a gene detected in few cells it
    rests on few examples and is noisy; the detection head is trained on every cell, and through a
    Poisson link (:func:`poisson_log1p_if_detected`) its probability ``p`` also implies a detected
    level. That implied level is informative where the gene has zeros and says nothing for a gene
    detected everywhere (p -> 1), so the two are weighted by the gene's zero fraction ``z`` in the
    training cells: ``(1 - z) * value + z * poisson_log1p_if_detected(p)``. Measured on the masked
    benchmark (``benchmarks/experiments/pois_weighting.py``): the weight ``z`` raised masked Pearson and
    lowered masked MSE on all seven public datasets, without a tuned constant.

    Parameters
    ----------
    value
        Value head output (log1p), cells x genes.
    p
        Detection probabilities, same shape.
    zero_fraction
        Per gene (last axis) fraction of training cells where the gene was zero.

    Returns
    -------
    float32 array (log1p), same shape as ``value``.
    """
    z = np.asarray(zero_fraction, dtype=np.float32)
    out = poisson_log1p_if_detected(p)
    out *= z
    out += (1.0 - z) * np.asarray(value, dtype=np.float32)
    return out
