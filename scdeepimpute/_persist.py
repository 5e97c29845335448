"""Saving and loading a fitted :class:`~scdeepimpute.DeepImpute`: Keras weights plus a JSON config, no pickle.

``save`` never leaves half a model: it writes into a temporary folder beside the target and renames it into place.
``load`` checks the files before building anything, so a damaged or mismatched model is a ``ValueError`` naming
the file and the problem, never a raw parser error or a model that loads and then fails (or silently misaligns).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from ._model import DeepImpute

#: Saved-model format; 2 added ``zero_fraction`` (needed by ``fill="detected"`` with a detection head),
#: 3 the neighbourhood's weight and the self-calibration (format 2 still loads: no neighbourhood), 4 the
#: ``batch_key`` and its batches (formats 2 and 3 still load: no batches).
FORMAT_VERSION = 4
_READS = (2, 3, 4)

CONFIG, WEIGHTS = "config.json", "model.weights.h5"

#: Keys of ``config.json`` that :func:`load` reads (the versions aside): keep in step with :func:`save`.
_CONFIG_KEYS = (
    "preset",
    "params",
    "random_state",
    "var_names",
    "blocks",
    "predictors",
    "selected",
    "log_max",
    "zero_fraction",
    "library_mean",
    "n_cells_fit",
    "history",
)

_DAMAGED = "the file is damaged: save the model again"


# --------------------------------------------------------------------------- save
def save(model: DeepImpute, path: str | Path, *, overwrite: bool = False) -> None:
    """Write ``model.weights.h5`` (Keras) and ``config.json`` (genes, blocks, parameters) into the folder ``path``."""
    shown = Path(path)
    path = shown.resolve()  # a link to a model folder: replace the folder it points to, keep the link
    replace = _check_target(shown, path, overwrite=overwrite)
    config = {
        "format_version": FORMAT_VERSION,
        "scdeepimpute_version": version("scdeepimpute"),
        "tensorflow_version": version("tensorflow"),
        "keras_version": version("keras"),
        "preset": model.preset,
        "params": model.params,
        "random_state": model.random_state,
        "var_names": list(model.var_names_),
        "blocks": [b.tolist() for b in model.blocks_],
        "predictors": [q.tolist() for q in model.predictors_],
        "selected": model.selected_.tolist(),
        "log_max": model.log_max_,
        "zero_fraction": model.zero_fraction_.tolist(),
        "library_mean": model.library_mean_,
        "n_cells_fit": model.n_cells_fit_,
        "history": {k: np.asarray(v).tolist() for k, v in model.history_.to_dict().items()},
        "neighbor_weight": model.neighbor_weight_,
        "calibration": _calibration_json(model.calibration_),
        "dispersion": None if model.dispersion_ is None else [None if x != x else float(x) for x in model.dispersion_],
        "batch_key": model.batch_key_,
        "batches": model.batches_,
        "batch_log_means": None if model.batch_log_means_ is None else model.batch_log_means_.tolist(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # beside the target, so the renames stay on one file system (atomic); mkdir applies the umask as usual
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:  # BaseException too: Ctrl-C while writing must not leave the temporary folder behind
        model.network_.save_weights(tmp / WEIGHTS)
        (tmp / CONFIG).write_text(json.dumps(config, indent=1))
        _move_into_place(tmp, path, shown, replace=replace)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_target(shown: Path, path: Path, *, overwrite: bool) -> bool:
    """Whether saving to ``path`` replaces a saved model; ``ValueError`` where it must not write."""
    if not path.exists():
        return False
    if not path.is_dir():
        msg = f"{shown} is a file; save() writes a folder ({CONFIG} + {WEIGHTS})."
        raise ValueError(msg)
    entries = {p.name for p in path.iterdir()}
    if not entries:
        return False
    if CONFIG not in entries:
        msg = f"{shown} exists and is not a saved scdeepimpute model (no {CONFIG}); choose a new or empty folder."
        raise ValueError(msg)
    if not overwrite:
        msg = f"{shown} already holds a saved model; pass overwrite=True to replace it."
        raise ValueError(msg)
    others = sorted(entries - {CONFIG, WEIGHTS})
    if others:  # replacing the folder would delete them
        msg = f"{shown} holds a saved model and other files ({', '.join(others[:5])}); it is not replaced."
        raise ValueError(msg)
    return True


def _move_into_place(tmp: Path, path: Path, shown: Path, *, replace: bool) -> None:
    if not replace:
        try:
            os.rename(tmp, path)  # also replaces an empty folder
        except OSError as e:
            if path.is_dir() and any(path.iterdir()):  # something was written into it meanwhile
                msg = f"{shown} is no longer empty; the model was not saved."
                raise ValueError(msg) from e
            raise
        return
    # the old model steps aside, the new one takes its name: the old one exists throughout, under one name or the other
    old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
    os.rename(path, old)
    try:
        os.rename(tmp, path)
    except BaseException:
        os.rename(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------- load
def load(cls: type[DeepImpute], path: str | Path) -> DeepImpute:
    """Load a ``cls`` model with the fitted state :func:`save` wrote into the folder ``path``."""
    from ._layout import BlockLayout
    from ._training import History, network_and_trainer

    path = Path(path)
    config_file, weights_file = path / CONFIG, path / WEIGHTS
    config = _read_config(config_file)
    if config.get("format_version") not in _READS:
        found = config.get("format_version", "unknown (no format_version)")
        msg = (
            f"{config_file} holds model format {found}, this version reads formats {', '.join(map(str, _READS))}"
            " (format 2 stores each gene's zero fraction, used by fill='detected'; 3 the neighbourhood weight;"
            " 4 the batches);"
            " refit the model with this version and save it again."
        )
        raise ValueError(msg)
    if config["format_version"] == 2 and isinstance(config.get("params"), dict):  # before the neighbourhood
        config["params"] = {**config["params"], "neighbors": 0, "neighbor_weight": "auto"}
    model = _model_from_config(cls, config, config_file)
    p = model.params
    blocks, predictors, selected = _check_genes(config, config_file)
    batch_key, batches = _check_batches(config, config_file)
    n_batches = 0 if batches is None else len(batches)
    layout = BlockLayout.from_blocks(blocks, predictors, n_extra=int(p["library_size"]) + n_batches)
    network, trainer = network_and_trainer(layout, p, model.random_state)
    _check_weights(weights_file, network, config_file.name)
    _check_history(config, len(blocks), config_file)
    try:  # checked above; this only guards against what the check cannot see
        network.load_weights(weights_file)
    except (OSError, ValueError) as e:
        msg = f"cannot load {weights_file}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        raise ValueError(msg) from e

    model.var_names_ = pd.Index(config["var_names"])
    model.blocks_ = blocks
    model.predictors_ = predictors
    model.selected_ = selected
    model.layout_ = layout
    model.network_, model._trainer = network, trainer
    h = config["history"]
    model.history_ = History(loss=h["loss"], val_loss=h["val_loss"], best_epoch=np.asarray(h["best_epoch"]))
    model.history_.stopped_epoch = h["epochs"]
    model.log_max_ = config["log_max"]
    model.zero_fraction_ = np.asarray(config["zero_fraction"], dtype=np.float64)
    model.library_mean_ = config["library_mean"]
    model.n_cells_fit_ = config["n_cells_fit"]
    model.neighbor_weight_ = float(config.get("neighbor_weight", 0.0))
    model.calibration_ = _calibration_from_json(config.get("calibration"))
    # absent from models saved before the "lognorm" fill: its rate is then the model's alone
    dispersion = config.get("dispersion")
    model.dispersion_ = None if dispersion is None else np.array(dispersion, dtype=np.float64)
    if model.dispersion_ is not None and model.dispersion_.shape != (model.var_names_.size,):
        msg = f"{config_file}: 'dispersion' has {model.dispersion_.size} entries for {model.var_names_.size} genes."
        raise ValueError(msg)
    model.batch_key_, model.batches_ = batch_key, batches
    model.batch_log_means_ = None
    if batches is not None:
        means = np.asarray(config.get("batch_log_means"), dtype=np.float64)
        if means.shape != (n_batches, layout.columns.size):
            msg = f"{config_file}: batch_log_means has shape {means.shape}, not batches x input genes; {_DAMAGED}."
            raise ValueError(msg)
        model.batch_log_means_ = means
    return model


def _check_batches(config: dict, config_file: Path) -> tuple[str | None, list[str] | None]:
    """Return the saved ``batch_key`` and batch categories (``None, None`` before format 4 or without batches)."""
    key, batches = config.get("batch_key"), config.get("batches")
    if key is None and batches is None:
        return None, None
    ok = isinstance(key, str) and isinstance(batches, list) and batches and all(isinstance(b, str) for b in batches)
    if not ok or len(set(batches)) != len(batches):
        msg = f"{config_file}: batch_key and batches are not a name and a list of distinct batch names; {_DAMAGED}."
        raise ValueError(msg)
    return key, batches


def _read_config(config_file: Path) -> dict:
    if not config_file.is_file():
        msg = f"{config_file} not found: {config_file.parent} is not a saved scdeepimpute model."
        raise ValueError(msg)
    try:
        text = config_file.read_text()
    except (OSError, UnicodeDecodeError) as e:
        msg = f"cannot read {config_file}: {getattr(e, 'strerror', None) or e}"
        raise ValueError(msg) from e
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        msg = f"{config_file} is not valid JSON ({e.msg}, line {e.lineno}); {_DAMAGED}."
        raise ValueError(msg) from e
    if not isinstance(config, dict):
        msg = f"{config_file} does not hold a model configuration (a JSON object); {_DAMAGED}."
        raise ValueError(msg)
    return config


def _model_from_config(cls: type[DeepImpute], config: dict, config_file: Path) -> DeepImpute:
    from ._params import HYPERPARAMETERS

    missing = [k for k in _CONFIG_KEYS if k not in config]
    params = config.get("params")
    if isinstance(params, dict):
        missing += [k for k in HYPERPARAMETERS if k not in params]
    if missing:
        msg = f"{config_file} lacks {', '.join(missing)}; {_DAMAGED}."
        raise ValueError(msg)
    if not isinstance(params, dict):
        msg = f"{config_file}: params is not a JSON object; {_DAMAGED}."
        raise ValueError(msg)
    unknown = sorted(set(params) - set(HYPERPARAMETERS))
    if unknown:
        msg = f"{config_file} has unknown parameters {', '.join(unknown)} (saved by a newer version?)."
        raise ValueError(msg)
    try:  # checks every hyperparameter's value
        return cls(preset=config["preset"], random_state=config["random_state"], **params)
    except (TypeError, ValueError) as e:
        msg = f"{config_file}: {e}"
        raise ValueError(msg) from e


def _check_genes(config: dict, config_file: Path) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Check the blocks, predictor sets and selected genes of ``config`` against its genes and return them."""
    names = config["var_names"]
    if not isinstance(names, list) or not names or not all(isinstance(g, str) for g in names):
        msg = f"{config_file}: var_names is not a list of gene names; {_DAMAGED}."
        raise ValueError(msg)
    n = len(names)
    if len(set(names)) != n:
        msg = f"{config_file}: var_names are not unique; {_DAMAGED}."
        raise ValueError(msg)
    blocks, predictors = config["blocks"], config["predictors"]
    if not isinstance(blocks, list) or not isinstance(predictors, list) or not blocks or len(blocks) != len(predictors):
        k = len(blocks) if isinstance(blocks, list) else "no list of"
        q = len(predictors) if isinstance(predictors, list) else "no list of"
        msg = f"{config_file}: {k} blocks but {q} predictor sets; {_DAMAGED}."
        raise ValueError(msg)
    blocks = [_indices(b, "blocks", n, config_file) for b in blocks]
    predictors = [_indices(q, "predictors", n, config_file) for q in predictors]
    selected = _indices(config["selected"], "selected", n, config_file)
    targets = np.concatenate(blocks)
    if any(b.size == 0 for b in blocks) or np.unique(targets).size != targets.size:
        msg = f"{config_file}: the blocks are empty or share genes; {_DAMAGED}."
        raise ValueError(msg)
    zero_fraction = config["zero_fraction"]
    if not isinstance(zero_fraction, list) or len(zero_fraction) != n:
        k = len(zero_fraction) if isinstance(zero_fraction, list) else "no list of"
        msg = f"{config_file}: zero_fraction has {k} entries for {n} genes (var_names); {_DAMAGED}."
        raise ValueError(msg)
    return blocks, predictors, selected


def _check_history(config: dict, n_blocks: int, config_file: Path) -> None:
    h = config["history"]
    lacking = [k for k in ("loss", "val_loss", "best_epoch", "epochs") if not isinstance(h, dict) or k not in h]
    if lacking:
        msg = f"{config_file}: history lacks {', '.join(lacking)}; {_DAMAGED}."
        raise ValueError(msg)
    k = len(np.atleast_1d(h["best_epoch"]))
    if k != n_blocks:
        msg = f"{config_file}: history has best epochs for {k} blocks, blocks lists {n_blocks}; {_DAMAGED}."
        raise ValueError(msg)


def _indices(values, what: str, n: int, config_file: Path) -> np.ndarray:
    """``values`` as gene indices into ``n`` genes; ``ValueError`` naming ``what`` otherwise."""
    ok = isinstance(values, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in values)
    if not ok:
        msg = f"{config_file}: {what} holds something other than lists of gene indices; {_DAMAGED}."
        raise ValueError(msg)
    out = np.asarray(values, dtype=np.int64)
    bad = out[(out < 0) | (out >= n)]
    if bad.size:
        msg = f"{config_file}: gene index {bad[0]} in {what} is out of range for its {n} genes (var_names)."
        raise ValueError(msg)
    return out


def _check_weights(weights_file: Path, network, config_name: str) -> None:
    """Check that ``weights_file`` holds the arrays of ``network`` (built from the config): count and shapes."""
    import h5py

    if not weights_file.is_file():
        msg = f"{weights_file} not found: the saved model is incomplete; save the model again."
        raise ValueError(msg)
    arrays: list[tuple[str, tuple]] = []
    try:
        with h5py.File(weights_file, "r") as f:
            f.visititems(lambda name, obj: arrays.append((name, obj.shape)) if isinstance(obj, h5py.Dataset) else None)
    except (OSError, RuntimeError, KeyError, ValueError) as e:
        msg = f"{weights_file} is not a readable HDF5 weights file ({e}); {_DAMAGED}."
        raise ValueError(msg) from e
    # Keras numbers each layer's variables "vars/0", "vars/1", ...: in creation order once sorted as numbers
    arrays.sort(key=lambda a: [(not c.isdigit(), int(c) if c.isdigit() else 0, c) for c in a[0].split("/")])
    expected = [tuple(v.shape) for v in network.weights]
    if len(arrays) != len(expected):
        msg = (
            f"{weights_file} holds {len(arrays)} weight arrays but {config_name} describes a network with "
            f"{len(expected)} (detection_head={network.detection_head}); the files do not belong together."
        )
        raise ValueError(msg)
    k = {shape[0] for _, shape in arrays if shape}
    if k != {expected[0][0]}:
        msg = (
            f"{weights_file} holds {', '.join(map(str, sorted(k)))} blocks but {config_name} lists "
            f"{expected[0][0]}; the files do not belong together."
        )
        raise ValueError(msg)
    for (name, got), want in zip(arrays, expected, strict=True):
        if tuple(got) != want:
            msg = (
                f"{weights_file}: array {name} has shape {tuple(got)}, {config_name} implies {want} "
                "(hidden_units, library_size, predictors or block sizes differ); the files do not belong together."
            )
            raise ValueError(msg)


def _calibration_json(calibration: dict | None) -> dict | None:
    """``calibration_`` for JSON: the per-gene array as a list, NaN (and NaN scores) as ``None``."""
    if calibration is None:
        return None
    return {
        k: [None if np.isnan(x) else float(x) for x in v] if k == "gene_mse" else (None if v != v else v)
        for k, v in calibration.items()
    }


def _calibration_from_json(calibration: dict | None) -> dict | None:
    if calibration is None:
        return None
    return {
        k: np.array([np.nan if x is None else x for x in v], dtype=np.float64)
        if k == "gene_mse"
        else (float("nan") if v is None else v)
        for k, v in calibration.items()
    }
