"""Lazy, checked import of TensorFlow and Keras 3 (importing scdeepimpute must stay cheap), and device choices."""

from __future__ import annotations

import os


def import_keras():
    """Return ``(tf, keras)``, making sure Keras 3 runs on the TensorFlow backend."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import keras
        import tensorflow as tf
    except ImportError as e:  # pragma: no cover - hard dependencies
        e.add_note("scdeepimpute needs TensorFlow >= 2.16 with Keras 3: pip install 'tensorflow>=2.16'")
        raise
    if int(keras.__version__.split(".")[0]) < 3:  # pragma: no cover
        msg = f"scdeepimpute needs Keras 3, found keras {keras.__version__}."
        raise ImportError(msg)
    if keras.backend.backend() != "tensorflow":  # pragma: no cover
        msg = (
            f"Keras is running on the {keras.backend.backend()!r} backend; scdeepimpute trains with TensorFlow. "
            "Set KERAS_BACKEND=tensorflow before importing keras."
        )
        raise RuntimeError(msg)
    return tf, keras


def set_threads(n_jobs: int | None) -> None:
    """Ask TensorFlow for ``n_jobs`` threads; only possible before its runtime starts, so fail softly."""
    if n_jobs is None:
        return
    tf, _ = import_keras()
    n = (os.cpu_count() or 1) if n_jobs < 0 else n_jobs
    try:
        if tf.config.threading.get_intra_op_parallelism_threads() != n:
            tf.config.threading.set_intra_op_parallelism_threads(n)
            tf.config.threading.set_inter_op_parallelism_threads(min(n, 2))
    except RuntimeError:
        from . import _logging as logg

        logg.warning(f"TensorFlow is already running; n_jobs={n_jobs} is ignored for this process.")


def native_bfloat16() -> bool:
    """Whether TensorFlow's device multiplies bfloat16 in hardware (elsewhere it is emulated and slow).

    True for a GPU of compute capability >= 8.0 (Ampere and later), or, without a GPU, a CPU that
    reports ``avx512_bf16`` or ``amx_bf16`` (Linux ``/proc/cpuinfo``; other systems: False).
    """
    tf, _ = import_keras()
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        capability = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability", (0, 0))
        return tuple(capability) >= (8, 0)
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str) -> str:
    """``"auto"`` -> ``"bfloat16"`` where :func:`native_bfloat16`, else ``"float32"``; other values unchanged."""
    if precision != "auto":
        return precision
    return "bfloat16" if native_bfloat16() else "float32"


def resolve_strategy(strategy):
    """``None`` or a ``tf.distribute.Strategy`` as given; ``"mirrored"``: ``MirroredStrategy`` over all visible GPUs."""
    if strategy is None:
        return None
    tf, _ = import_keras()
    if isinstance(strategy, str):
        if strategy != "mirrored":
            msg = f"strategy must be None, 'mirrored' or a tf.distribute.Strategy; got {strategy!r}."
            raise ValueError(msg)
        return tf.distribute.MirroredStrategy()
    if not isinstance(strategy, tf.distribute.Strategy):
        msg = f"strategy must be None, 'mirrored' or a tf.distribute.Strategy; got {type(strategy).__name__}."
        raise TypeError(msg)
    return strategy
