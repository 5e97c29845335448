"""The fused network: per-block independence, padding and the loss formula."""

from __future__ import annotations

import numpy as np
import pytest

from scdeepimpute._layout import BlockLayout
from scdeepimpute._network import FusedBlocks, block_losses


@pytest.fixture
def net():
    # two blocks of different sizes: padding on both inputs and outputs
    blocks = [np.array([0, 1, 2]), np.array([3, 4])]
    predictors = [np.array([3, 4, 5]), np.array([0, 1])]
    layout = BlockLayout.from_blocks(blocks, predictors)
    n = FusedBlocks(layout, hidden_units=4, dropout_rate=0.0, detection_head=True, seed=0)
    n.build()
    return n


def test_layout_padding(net):
    layout = net.layout
    np.testing.assert_array_equal(layout.columns, [0, 1, 2, 3, 4, 5])
    np.testing.assert_array_equal(layout.n_inputs, [3, 2])
    np.testing.assert_array_equal(layout.n_outputs, [3, 2])
    assert layout.inputs[1, 2] == 6
    assert layout.outputs[1, 2] == 6


def test_loss_matches_hand_computation(net):
    rng = np.random.default_rng(0)
    batch = np.concatenate([rng.gamma(1.0, 1.0, size=(5, 6)) * (rng.random((5, 6)) > 0.4), np.zeros((5, 1))], axis=1)
    batch = batch.astype(np.float32)
    weights = np.array([1, 1, 1, 1, 0], dtype=np.float32)  # last row is padding
    x, y = net.gather(batch)
    value, logits = net(x)
    got = block_losses(net, y, value, logits, weights).numpy()

    value, logits, y = value.numpy(), logits.numpy(), y.numpy()
    for k, n_out in enumerate([3, 2]):
        yk, vk, lk = y[k, :4, :n_out], value[k, :4, :n_out], logits[k, :4, :n_out]
        wmse = np.mean(yk * (yk - vk) ** 2)
        p = 1 / (1 + np.exp(-lk))
        d = (yk > 0).astype(float)
        bce = np.mean(-(d * np.log(p) + (1 - d) * np.log(1 - p)))
        np.testing.assert_allclose(got[k], wmse + bce, rtol=1e-4)


def test_blocks_are_independent(net):
    """A block's output depends only on its own inputs: changing another block's input genes leaves it alone."""
    rng = np.random.default_rng(1)
    batch = rng.random((3, 7)).astype(np.float32)
    batch[:, -1] = 0
    x, _ = net.gather(batch)
    before = net(x)[0].numpy()
    changed = batch.copy()
    changed[:, [0, 1]] += 5.0  # only block 1 reads genes 0 and 1
    after = net(net.gather(changed)[0])[0].numpy()
    np.testing.assert_allclose(after[0], before[0])
    assert not np.allclose(after[1], before[1])


def test_padding_weights_start_at_zero(net):
    w1 = net.w1.numpy()
    assert np.all(w1[1, 2:, :] == 0)  # block 1 has 2 real inputs
    w2 = net.w2.numpy()
    assert np.all(w2[1, :, 2:] == 0)  # and 2 real outputs


def test_poisson_link_matches_direct_sum():
    from scipy import stats

    from scdeepimpute._fills import poisson_log1p_if_detected

    p = np.array([0.0, 1e-3, 0.1, 0.5, 0.9, 0.999])
    got = poisson_log1p_if_detected(p)
    lam = -np.log1p(-p[1:])
    k = np.arange(1, 400)
    want = (stats.poisson.pmf(k[None], lam[:, None]) * np.log1p(k)).sum(1) / (1 - np.exp(-lam))
    np.testing.assert_allclose(got[1:], want, atol=1e-4)
    assert got[0] == pytest.approx(np.log(2), abs=1e-5)  # p -> 0: a detected gene has one count
    assert np.all(np.diff(got) > 0)
    assert poisson_log1p_if_detected(np.array([1.0]))[0] < np.log1p(20)  # p = 1 is clipped, finite


def test_value_if_detected_weights_by_zero_fraction():
    from scdeepimpute._fills import poisson_log1p_if_detected, value_if_detected

    v = np.array([[2.0, 2.0, 2.0]])
    p = np.array([[0.3, 0.3, 0.3]])
    out = value_if_detected(v, p, np.array([0.0, 0.5, 1.0]))
    link = poisson_log1p_if_detected(p[0, 0])
    np.testing.assert_allclose(out[0], [2.0, 1.0 + 0.5 * link, link], rtol=1e-5)


@pytest.mark.parametrize("learning_rate", [1e-4, 1e-3])
def test_fused_adam_matches_keras_adam(learning_rate):
    """The trainer's one-kernel Adam makes the same updates as ``keras.optimizers.Adam``."""
    from scdeepimpute._backend import import_keras
    from scdeepimpute._training import FusedAdam

    tf, keras = import_keras()
    rng = np.random.default_rng(0)
    start = [rng.normal(size=(3, 4, 5)).astype(np.float32), rng.normal(size=(3, 5)).astype(np.float32)]
    grads = [[rng.normal(size=s.shape).astype(np.float32) for s in start] for _ in range(7)]
    ours = [tf.Variable(s) for s in start]
    theirs = [tf.Variable(s) for s in start]
    fused, reference = FusedAdam(ours, learning_rate), keras.optimizers.Adam(learning_rate=learning_rate)
    for g in grads:
        fused.apply([tf.constant(x) for x in g])
        reference.apply_gradients(zip([tf.constant(x) for x in g], theirs, strict=True))
    for a, b, s in zip(ours, theirs, start, strict=True):
        assert not np.allclose(a.numpy(), s)  # the variables moved
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)


def test_bfloat16_products_close_to_float32(net):
    """bfloat16 operands change outputs at bfloat16's ~3 significant digits, no more."""
    from scdeepimpute._backend import import_keras

    tf, _ = import_keras()
    half = FusedBlocks(net.layout, hidden_units=4, dropout_rate=0.0, detection_head=True, seed=0, precision="bfloat16")
    half.build()
    for a, b in zip(half.block_variables(), net.block_variables(), strict=True):
        a.assign(b)
    x = tf.constant(np.random.default_rng(1).uniform(0, 3, size=(2, 5, net.layout.inputs.shape[1])), tf.float32)
    (v32, l32), (v16, l16) = net(x), half(x)
    assert v16.dtype == tf.float32
    np.testing.assert_allclose(v16.numpy(), v32.numpy(), rtol=2e-2, atol=2e-2)
    np.testing.assert_allclose(l16.numpy(), l32.numpy(), rtol=2e-2, atol=2e-2)
    assert not np.array_equal(v16.numpy(), v32.numpy())  # the bfloat16 path did run


def test_precision_auto_resolves():
    from scdeepimpute._backend import resolve_precision

    assert resolve_precision("auto") in ("float32", "bfloat16")
    assert resolve_precision("float32") == "float32"
    with pytest.raises(ValueError, match="precision"):
        __import__("scdeepimpute").DeepImpute(precision="float16")


def test_no_retracing_warning_from_many_models():
    """Each model traces its own graphs once; TensorFlow's warning about that is filtered, others are not."""
    import logging

    import scdeepimpute as sdi

    from .conftest import FAST, make_counts

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(logging.WARNING)  # other tests or libraries may have quietened it
    logger.addHandler(handler)
    try:
        X = make_counts(60, 20, seed=1)
        for seed in range(7):
            sdi.DeepImpute(**{**FAST, "max_epochs": 1}, random_state=seed).fit(X, progress=False).predict(X)
        logger.warning("5 out of the last 5 calls to <function other> triggered tf.function retracing.")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    retracing = [r.getMessage() for r in records if "retracing" in r.getMessage()]
    assert retracing == ["5 out of the last 5 calls to <function other> triggered tf.function retracing."]
