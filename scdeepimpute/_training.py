"""Training and inference loops for the fused network: many optimiser steps per TensorFlow call.

Adam updates each variable with TensorFlow's single fused kernel instead of Keras' chain of
elementwise operations (same update rule), which matters most at the paper's batch size of 64
(``benchmarks/RESULTS_speed.md``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import _logging as logg
from ._backend import import_keras, resolve_precision
from ._network import FusedBlocks, block_losses

tf, keras = import_keras()


class _OwnRetracingFilter(logging.Filter):
    """Drop TensorFlow's "triggered tf.function retracing" warning about this module's functions only.

    Every :class:`Trainer` compiles its own graphs once (their shapes are the model's); TensorFlow
    counts each new model's first trace as a retrace and, from the fifth model in a process (a
    benchmark loop, a notebook), warns about it. Other functions' warnings pass through.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("triggered tf.function retracing" in message and "Trainer.__init__.<locals>" in message)


_tf_logger = logging.getLogger("tensorflow")
if not any(isinstance(f, _OwnRetracingFilter) for f in _tf_logger.filters):
    _tf_logger.addFilter(_OwnRetracingFilter())

#: Target rows per host-to-graph chunk; a chunk runs ``chunk_rows // batch_size`` steps in one call.
#: 2048 rows train with the same losses as 8192, with less CPU and smaller buffers
#: (``benchmarks/RESULTS_speed.md``, chunk sizes).
CHUNK_ROWS = 2048

#: Rows per validation call. TensorFlow's oneDNN CPU allocator keeps the memory it once held, so the
#: activations of one call (every block at once) stay with the process: smaller calls leave less behind
#: after fit and lower the predict peak (``benchmarks/RESULTS_speed.md``, chunk sizes).
EVAL_ROWS = 512


@dataclass
class History:
    """What happened during training (one entry per epoch)."""

    loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: np.ndarray | None = None  # per block, 1-based
    stopped_epoch: int = 0

    def to_dict(self) -> dict:
        return {
            "loss": np.asarray(self.loss, dtype=np.float64),
            "val_loss": np.asarray(self.val_loss, dtype=np.float64),
            "best_epoch": np.asarray(self.best_epoch, dtype=np.int64),
            "epochs": int(self.stopped_epoch),
        }


def _padded(data: np.ndarray, multiple: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad rows to a multiple of ``multiple`` with zero rows; return data and per-row weights (0 for padding)."""
    n = data.shape[0]
    pad = (-n) % multiple
    weights = np.ones(n + pad, dtype=np.float32)
    if pad:
        data = np.concatenate([data, np.zeros((pad, data.shape[1]), dtype=data.dtype)])
        weights[n:] = 0
    return data, weights


class FusedAdam:
    """Adam (Kingma & Ba), the update of ``keras.optimizers.Adam`` with its default betas and epsilon.

    Each variable is updated by one ``ResourceApplyAdam`` kernel rather than Keras' separate
    elementwise ops: less CPU time per step, most at small batches, where matrix products do not
    dominate (``benchmarks/RESULTS_speed.md``).
    """

    def __init__(
        self, variables, learning_rate: float, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7
    ):
        self.variables = list(variables)
        self.learning_rate = float(learning_rate)
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon
        self.m = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.variables]
        self.v = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.variables]
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False)

    def apply(self, grads, *, replicated: bool = False) -> None:
        """Apply one Adam step.

        ``replicated``: called in a replica context of a ``tf.distribute`` strategy with gradients already
        all-reduced; each replica updates its own copy of the (mirrored) variables, the step counter included,
        through their local handles, so all copies stay equal.
        """
        if replicated:
            tf.raw_ops.AssignAddVariableOp(resource=self.iterations.handle, value=tf.constant(1, tf.int64))
        else:
            self.iterations.assign_add(1)
        t = tf.cast(self.iterations, tf.float32)
        beta_1_power, beta_2_power = tf.pow(self.beta_1, t), tf.pow(self.beta_2, t)
        for var, m, v, g in zip(self.variables, self.m, self.v, grads, strict=True):
            tf.raw_ops.ResourceApplyAdam(
                var=var.handle,
                m=m.handle,
                v=v.handle,
                beta1_power=beta_1_power,
                beta2_power=beta_2_power,
                lr=self.learning_rate,
                beta1=self.beta_1,
                beta2=self.beta_2,
                epsilon=self.epsilon,
                grad=g,
            )


class Trainer:
    """Compiles the train / evaluate / predict graphs of one :class:`FusedBlocks` network."""

    def __init__(
        self,
        net: FusedBlocks,
        *,
        learning_rate: float,
        batch_size: int,
        detection_weight: float = 1.0,
        value_loss: str = "weighted",
        strategy=None,
    ):
        self.net = net
        self.batch_size = batch_size
        self.strategy = strategy
        n_cols = net.layout.width
        if strategy is not None and batch_size % strategy.num_replicas_in_sync:
            n_replicas = strategy.num_replicas_in_sync
            msg = (
                f"batch_size={batch_size} is not divisible by the {n_replicas} replicas of the distribution "
                f"strategy; choose a batch_size that is a multiple of {n_replicas}."
            )
            raise ValueError(msg)
        # with a strategy, the weights, Adam's slots and step counter are mirrored on every replica
        with contextlib.nullcontext() if strategy is None else strategy.scope():
            net.build()
            self.variables = net.block_variables()
            self.optimizer = FusedAdam(self.variables, learning_rate)
        if strategy is not None:
            n_replicas = strategy.num_replicas_in_sync
            devices = ", ".join(strategy.extended.worker_devices)
            logg.info(
                f"    training on {n_replicas} replica(s) with {type(strategy).__name__}: {devices} "
                f"({batch_size // n_replicas} cells of each batch of {batch_size} per replica)"
            )
        spec = [tf.TensorSpec([None, n_cols], tf.float32), tf.TensorSpec([None], tf.float32)]
        B = batch_size

        def losses_of(y, value, logits, weights, total_weight=None):
            return block_losses(
                net,
                y,
                value,
                logits,
                weights,
                detection_weight=detection_weight,
                value_loss=value_loss,
                total_weight=total_weight,
            )

        def step(batch, batch_weights):
            x, y = net.gather(batch)
            with tf.GradientTape() as tape:
                value, logits = net(x, training=True)
                losses = losses_of(y, value, logits, batch_weights)
                loss = tf.reduce_sum(losses)
            self.optimizer.apply(tape.gradient(loss, self.variables))
            return losses

        @tf.function(input_signature=spec, autograph=False)
        def train_chunk(data, weights):
            return _mean_over_batches(data, weights, B, len(net.layout.inputs), step)

        @tf.function(input_signature=spec, autograph=False)
        def eval_chunk(data, weights):
            x, y = net.gather(data)
            value, logits = net(x, training=False)
            return losses_of(y, value, logits, weights) * tf.reduce_sum(weights)

        @tf.function(input_signature=spec[:1], autograph=False)
        def predict_chunk(data):
            x, _ = net.gather(data)
            value, logits = net(x, training=False)
            return (value,) if logits is None else (value, tf.sigmoid(logits))

        self._train_chunk = train_chunk if strategy is None else self._distributed_train_chunk(spec, losses_of)
        self._eval_chunk = eval_chunk
        self._predict_chunk = predict_chunk

    def _distributed_train_chunk(self, spec, losses_of):
        """``train_chunk`` with each batch split across the strategy's replicas.

        Each replica takes ``batch_size / replicas`` consecutive rows of the batch; its per-block losses are
        divided by the whole batch's row weight (not its own), so the sum over replicas of their losses and
        gradients is the single-device loss and gradient of the whole batch. Gradients are summed across
        replicas (all-reduce) and every replica applies the same Adam update to its own copy of the variables.
        Dropout is stateless, seeded by (network seed, step * replicas + replica id).
        """
        net, strategy, optimizer, variables = self.net, self.strategy, self.optimizer, self.variables
        B = self.batch_size
        n_replicas = strategy.num_replicas_in_sync
        b = B // n_replicas
        seed = int(net._init_seed)

        def replica_step(batch, batch_weights, total_weight):
            ctx = tf.distribute.get_replica_context()
            r = tf.cast(ctx.replica_id_in_sync_group, tf.int32)
            x, y = net.gather(batch[r * b : (r + 1) * b])
            wb = batch_weights[r * b : (r + 1) * b]
            step = tf.identity(optimizer.iterations)  # read before this step's increment
            dropout_seed = tf.stack([tf.constant(seed, tf.int64), step * n_replicas + tf.cast(r, tf.int64)])
            with tf.GradientTape() as tape:
                value, logits = net(x, training=True, dropout_seed=dropout_seed)
                losses = losses_of(y, value, logits, wb, total_weight)
                loss = tf.reduce_sum(losses)
            grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, tape.gradient(loss, variables))
            optimizer.apply(grads, replicated=True)
            return losses

        def step(batch, batch_weights):
            per_replica = strategy.run(replica_step, args=(batch, batch_weights, tf.reduce_sum(batch_weights)))
            return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

        @tf.function(input_signature=spec, autograph=False)
        def train_chunk(data, weights):
            return _mean_over_batches(data, weights, B, len(net.layout.inputs), step)

        return train_chunk

    def evaluate(self, load_rows: Callable[[np.ndarray], np.ndarray], rows: np.ndarray) -> np.ndarray:
        """Per-block validation loss over ``rows`` (mean over cells)."""
        total = np.zeros(len(self.net.layout.inputs), dtype=np.float64)
        for start in range(0, rows.size, EVAL_ROWS):
            data = load_rows(rows[start : start + EVAL_ROWS])
            total += self._eval_chunk(data, np.ones(data.shape[0], np.float32)).numpy()
        return total / rows.size

    def fit(
        self,
        load_rows: Callable[[np.ndarray], np.ndarray],
        train_rows: np.ndarray,
        val_rows: np.ndarray,
        *,
        max_epochs: int,
        patience: int,
        tol: float = 0.0,
        epoch_size: int | None = None,
        restore_best_weights: bool,
        rng: np.random.Generator,
        progress: bool = False,
    ) -> History:
        """Train with early stopping on the summed validation loss.

        An epoch improves only if it lowers the best validation loss so far by more than ``tol``
        times that loss (``tol=0``: Keras' ``EarlyStopping`` with ``min_delta=0``); training stops
        after ``patience`` epochs without improvement.

        With ``restore_best_weights``, each block gets back the weights of its own best epoch:
        blocks share no parameter, so this is the paper's "each sub-network trained on its own".

        An epoch is one shuffled pass over ``train_rows``, or, when ``epoch_size`` is smaller, the
        next ``epoch_size`` rows of consecutive shuffled passes.
        """
        history = History()
        variables = self.variables
        best_block = np.full(len(self.net.layout.inputs), np.inf)
        best_weights = [v.numpy() for v in variables]
        best_epoch = np.zeros(len(best_block), dtype=np.int64)
        best_total, wait = np.inf, 0
        chunk = max(self.batch_size, CHUNK_ROWS // self.batch_size * self.batch_size)
        bar = _progress(max_epochs, progress)
        # an epoch of every row is one whole permutation per epoch, as with a plain shuffle
        rows_per_epoch = train_rows.size if epoch_size is None else min(epoch_size, train_rows.size)
        pending = train_rows[:0]  # rows of the current pass not yet trained on
        for epoch in range(1, max_epochs + 1):
            if pending.size < rows_per_epoch:
                pending = np.concatenate([pending, rng.permutation(train_rows)])
            order, pending = pending[:rows_per_epoch], pending[rows_per_epoch:]
            losses = []
            for start in range(0, order.size, chunk):
                data, weights = _padded(load_rows(order[start : start + chunk]), self.batch_size)
                losses.append(self._train_chunk(data, weights).numpy() * weights.sum())
            train_loss = float(np.sum(losses) / order.size)
            val_block = self.evaluate(load_rows, val_rows)
            val_loss = float(val_block.sum())
            history.loss.append(train_loss)
            history.val_loss.append(val_loss)
            improved = val_block < best_block
            if restore_best_weights and improved.any():
                for keep, v in zip(best_weights, variables, strict=True):
                    keep[improved] = v.numpy()[improved]
            best_epoch[improved] = epoch
            best_block = np.minimum(best_block, val_block)
            if improves(val_loss, best_total, tol):
                best_total, wait = val_loss, 0
            else:
                wait += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{train_loss:.4f}", val_loss=f"{val_loss:.4f}", refresh=False)
            logg.debug(f"epoch {epoch}: loss {train_loss:.5f}, val_loss {val_loss:.5f}")
            if wait >= patience:
                break
        if bar is not None:
            bar.close()
        history.stopped_epoch = epoch
        history.best_epoch = best_epoch
        if restore_best_weights:
            for keep, v in zip(best_weights, variables, strict=True):
                v.assign(keep)
        return history

    def predict(self, data: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Value (log1p) and detection probability (``None`` without a detection head), (cells, blocks, targets)."""
        outputs = [np.transpose(o.numpy(), (1, 0, 2)) for o in self._predict_chunk(data)]
        return outputs[0], (outputs[1] if len(outputs) > 1 else None)


def network_and_trainer(layout, params: dict, seed: int, *, strategy=None) -> tuple[FusedBlocks, Trainer]:
    """Build the fused network for ``layout`` and its trainer (variables on ``strategy``'s replicas when given)."""
    with contextlib.nullcontext() if strategy is None else strategy.scope():
        net = FusedBlocks(
            layout,
            hidden_units=params["hidden_units"],
            dropout_rate=params["dropout_rate"],
            detection_head=params["detection_head"],
            precision=resolve_precision(params["precision"]),
            seed=seed,
        )
    trainer = Trainer(
        net,
        learning_rate=params["learning_rate"],
        batch_size=params["batch_size"],
        value_loss=params["value_loss"],
        strategy=strategy,
    )
    return net, trainer


def improves(loss: float, best: float, tol: float) -> bool:
    """Early stopping's test of an epoch: it lowers the best loss so far by more than ``tol`` times that loss.

    The first epoch (``best`` still infinite) always improves; a NaN loss never does.
    """
    return best == np.inf or loss < best - tol * abs(best)


def _mean_over_batches(data, weights, batch_size: int, n_blocks: int, step):
    """Run ``step(batch, batch_weights)`` on consecutive ``batch_size``-row batches of ``data`` in one graph loop.

    Returns the mean of the steps' per-block losses. Written as an explicit ``tf.while_loop`` so that the
    graphs are traced without AutoGraph, whose source conversion took a good part of a process's first fit
    (``benchmarks/RESULTS_speed.md``).
    """
    n_steps = tf.shape(data)[0] // batch_size

    def body(i, total):
        start, stop = i * batch_size, (i + 1) * batch_size
        return i + 1, total + step(data[start:stop], weights[start:stop])

    _, total = tf.while_loop(lambda i, _: i < n_steps, body, [tf.constant(0), tf.zeros([n_blocks], tf.float32)])
    return total / tf.cast(n_steps, tf.float32)


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    # redraw at most every 2 s: notebooks without widgets keep every redraw in the output
    return tqdm(total=total, desc="DeepImpute training", unit="epoch", leave=False, mininterval=2.0)
