"""Data-parallel training with ``tf.distribute`` (``DeepImpute.fit(strategy=...)``), tested on CPU.

Two logical CPU devices stand in for two GPUs. They must be configured before TensorFlow starts,
so the checks run in a fresh Python process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import scdeepimpute as sdi

from .conftest import FAST

SCRIPT = textwrap.dedent(
    """
    import json, os, sys, tempfile
    os.environ["KERAS_BACKEND"] = "tensorflow"
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    sys.path.insert(0, sys.argv[1])
    import numpy as np
    import scdeepimpute as sdi
    from conftest import FAST, make_counts

    out = {}
    # 230 cells: 207 training cells, so the last batch of each epoch is padded and split unevenly
    X = make_counts(230, 40, seed=3)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    out["replicas"] = strategy.num_replicas_in_sync

    kw = dict(FAST, dropout_rate=0.0, precision="float32", restore_best_weights=False, patience=100)
    single = sdi.DeepImpute(**kw).fit(X, progress=False)
    dist = sdi.DeepImpute(**kw).fit(X, progress=False, strategy=strategy)
    out["loss"] = [single.history_.loss, dist.history_.loss]
    out["val_loss"] = [single.history_.val_loss, dist.history_.val_loss]
    out["max_weight_diff"] = max(
        float(np.abs(np.asarray(a) - np.asarray(b)).max())
        for a, b in zip(single.network_.block_variables(), dist.network_.block_variables())
    )
    out["max_weight"] = max(float(np.abs(np.asarray(a)).max()) for a in single.network_.block_variables())
    p_single, p_dist = single.predict(X), dist.predict(X)
    out["max_pred_diff"] = float(np.abs(p_single - p_dist).max())
    out["max_pred"] = float(np.abs(p_single).max())
    # the weights are mirrored on both devices and every copy received the same updates
    w1 = dist.network_.w1.value
    out["w1_devices"] = [v.device for v in w1.values]
    out["w1_copies_diff"] = max(float(np.abs(v.numpy() - w1.values[0].numpy()).max()) for v in w1.values)
    with tempfile.TemporaryDirectory() as tmp:  # a distributed fit saves and reloads like any other
        dist.save(tmp)
        out["reload_equal"] = bool(np.array_equal(sdi.DeepImpute.load(tmp).predict(X), p_dist))

    # default preset: dropout on, stateless per replica and step
    fit = sdi.DeepImpute(**dict(FAST, max_epochs=6, patience=100)).fit(X, progress=False, strategy=strategy)
    out["dropout_rate"] = fit.params["dropout_rate"]
    out["dropout_loss"] = fit.history_.loss
    w1 = fit.network_.w1.value
    out["dropout_copies_diff"] = max(float(np.abs(v.numpy() - w1.values[0].numpy()).max()) for v in w1.values)
    out["dropout_pred_finite"] = bool(np.isfinite(fit.predict(X)).all())

    try:
        sdi.DeepImpute(**dict(FAST, batch_size=33)).fit(X, progress=False, strategy=strategy)
    except ValueError as e:
        out["odd_batch_error"] = str(e)
    print("RESULT" + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def result() -> dict:
    tests = Path(__file__).resolve().parent
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tests)], capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
    return json.loads(line[len("RESULT") :])


def test_two_replicas_match_single_device_without_dropout(result):
    assert result["replicas"] == 2
    single, dist = result["loss"]
    assert len(single) == len(dist) == FAST["max_epochs"]
    np.testing.assert_allclose(dist, single, rtol=1e-5)
    np.testing.assert_allclose(result["val_loss"][1], result["val_loss"][0], rtol=1e-5)
    assert result["max_weight_diff"] <= 1e-5 * result["max_weight"]
    assert result["max_pred_diff"] <= 1e-4 * result["max_pred"]
    assert result["reload_equal"]


def test_weights_are_mirrored_on_each_device(result):
    devices = result["w1_devices"]
    assert len(devices) == 2
    assert devices[0].endswith("CPU:0")
    assert devices[1].endswith("CPU:1")
    assert result["w1_copies_diff"] == 0.0
    assert result["dropout_copies_diff"] == 0.0


def test_distributed_training_with_dropout_lowers_the_loss(result):
    assert result["dropout_rate"] > 0
    loss = result["dropout_loss"]
    assert np.isfinite(loss).all()
    assert loss[-1] < loss[0]
    assert result["dropout_pred_finite"]


def test_batch_size_not_divisible_by_replicas(result):
    assert "batch_size=33" in result["odd_batch_error"]
    assert "2 replicas" in result["odd_batch_error"]


def test_strategy_argument_is_checked(counts):
    model = sdi.DeepImpute(**FAST)
    with pytest.raises(ValueError, match="mirrored"):
        model.fit(counts, strategy="parameter_server")
    with pytest.raises(TypeError, match="tf.distribute.Strategy"):
        model.fit(counts, strategy=2)


def test_pp_strategy_not_with_pretrained_model(adata):
    model = sdi.DeepImpute(**FAST).fit(adata, progress=False)
    with pytest.raises(ValueError, match="pre-trained"):
        sdi.pp.deepimpute(adata, model=model, strategy="mirrored")
