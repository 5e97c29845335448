"""Saving and loading a fitted :class:`~scdeepimpute.DeepImpute`: Keras weights plus a JSON config, no pickle."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from ._model import DeepImpute

#: Saved-model format; 2 added ``zero_fraction`` (needed by ``fill="detected"`` with a detection head),
#: 3 the neighbourhood's weight and the self-calibration (format 2 still loads: no neighbourhood).
FORMAT_VERSION = 3
_READS = (2, 3)


def save(model: DeepImpute, path: str | Path) -> None:
    """Write ``model.weights.h5`` (Keras) and ``config.json`` (genes, blocks, parameters) into the folder ``path``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.network_.save_weights(path / "model.weights.h5")
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
    }
    (path / "config.json").write_text(json.dumps(config, indent=1))


def load(cls: type[DeepImpute], path: str | Path) -> DeepImpute:
    """A ``cls`` model with the fitted state :func:`save` wrote into the folder ``path``."""
    from ._layout import BlockLayout
    from ._training import History, network_and_trainer

    path = Path(path)
    config = json.loads((path / "config.json").read_text())
    if config.get("format_version") not in _READS:
        msg = (
            f"{path} holds model format {config.get('format_version')}, this version reads {FORMAT_VERSION}"
            " (format 2 stores each gene's zero fraction, used by fill='detected'); refit the model"
            " with this version and save it again."
        )
        raise ValueError(msg)
    p = config["params"]
    if config["format_version"] == 2:  # before the neighbourhood: the network alone
        p = {**p, "neighbors": 0, "neighbor_weight": "auto"}
    model = cls(preset=config["preset"], random_state=config["random_state"], **p)
    model.var_names_ = pd.Index(config["var_names"])
    model.blocks_ = [np.asarray(b, dtype=np.int64) for b in config["blocks"]]
    model.predictors_ = [np.asarray(q, dtype=np.int64) for q in config["predictors"]]
    model.selected_ = np.asarray(config["selected"], dtype=np.int64)
    model.layout_ = BlockLayout.from_blocks(model.blocks_, model.predictors_, n_extra=int(p["library_size"]))
    model.network_, model._trainer = network_and_trainer(model.layout_, model.params, config["random_state"])
    model.network_.load_weights(path / "model.weights.h5")
    h = config["history"]
    model.history_ = History(loss=h["loss"], val_loss=h["val_loss"], best_epoch=np.asarray(h["best_epoch"]))
    model.history_.stopped_epoch = h["epochs"]
    model.log_max_ = config["log_max"]
    model.zero_fraction_ = np.asarray(config["zero_fraction"], dtype=np.float64)
    model.library_mean_ = config["library_mean"]
    model.n_cells_fit_ = config["n_cells_fit"]
    model.neighbor_weight_ = float(config.get("neighbor_weight", 0.0))
    model.calibration_ = _calibration_from_json(config.get("calibration"))
    return model


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
