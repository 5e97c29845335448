"""The :class:`DeepImpute` estimator: gene selection, fused training, imputation, persistence."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from scipy import sparse

from . import _logging as logg
from ._backend import resolve_precision
from ._selection import select_predictors, split_targets
from ._utils import (
    as_supported,
    check_counts as _check_counts,
    check_random_state,
    dense_rows,
    gene_stats,
    is_dask,
    to_memory,
)

if TYPE_CHECKING:
    import tensorflow as tf
    from anndata import AnnData

#: Fewer cells than this cannot give a validation set and a meaningful training set.
MIN_CELLS = 20

#: Cells per prediction chunk: bounds the dense working copies of a chunk (input, log input, outputs).
#: On 50k x 3200 simulated cells 512 rows needed 40 MB beside the 610 MB output (2048: 196-225 MB) and
#: predicted faster, 8.2-8.9 s against 11.4-11.6 s (``benchmarks/experiments/predict_rows.py``).
PREDICT_ROWS = 512

#: Hyperparameters of the two presets. ``"paper"`` is the published method (Arisdakessian et al.
#: 2019, and the authors' ``MultiNet`` class defaults); ``"default"`` is chosen by measurement
#: (benchmarks/RESULTS_accuracy.md): it imputes every gene with signal and adds a detection head.
PRESETS: dict[str, dict] = {
    "paper": {
        "min_vmr": 0.5,
        "subset_size": 512,
        "n_predictors": 5,
        "hidden_units": 256,
        "dropout_rate": 0.2,
        "learning_rate": 1e-4,
        "batch_size": 64,
        "max_epochs": 500,
        "patience": 5,
        "tol": 0.0,
        "epoch_size": None,
        "validation_fraction": 0.05,
        "restore_best_weights": False,
        "detection_head": False,
        "library_size": False,
        "value_loss": "weighted",
        "precision": "float32",
    },
    "default": {
        "min_vmr": 0.0,
        "subset_size": 512,
        "n_predictors": 5,
        "hidden_units": 256,
        "dropout_rate": 0.2,
        "learning_rate": 1e-3,
        "batch_size": 256,
        "max_epochs": 500,
        "patience": 4,
        "tol": 1e-3,
        "epoch_size": 10_000,
        "validation_fraction": 0.05,
        "restore_best_weights": True,
        "detection_head": True,
        "library_size": True,
        "value_loss": "nonzero",
        "precision": "auto",
    },
}

#: Names of the hyperparameters (the keys of every preset).
HYPERPARAMETERS = tuple(PRESETS["default"])

Policy = Literal["restore", "all", "max"]
#: What fills a zero: ``"expected"`` = P(detected) x value-if-detected, ``"detected"`` = value-if-detected.
Fill = Literal["expected", "detected"]

#: Saved-model format; 2 added ``zero_fraction`` (needed by ``fill="detected"`` with a detection head).
_FORMAT_VERSION = 2


def _hyperparameters(preset: str, overrides: dict) -> dict:
    if preset not in PRESETS:
        msg = f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}."
        raise ValueError(msg)
    params = dict(PRESETS[preset])
    params.update({k: v for k, v in overrides.items() if v is not None})
    _validate_hyperparameters(params)
    return params


def _validate_hyperparameters(p: dict) -> None:
    checks = [
        ("subset_size", p["subset_size"] >= 1),
        ("n_predictors", p["n_predictors"] >= 1),
        ("hidden_units", p["hidden_units"] >= 1),
        ("dropout_rate", 0 <= p["dropout_rate"] < 1),
        ("learning_rate", p["learning_rate"] > 0),
        ("batch_size", p["batch_size"] >= 1),
        ("max_epochs", p["max_epochs"] >= 1),
        ("patience", p["patience"] >= 1),
        ("tol", 0 <= p["tol"] < 1),
        ("epoch_size", p["epoch_size"] is None or p["epoch_size"] >= 1),
        ("validation_fraction", 0 < p["validation_fraction"] < 1),
        ("min_vmr", p["min_vmr"] >= 0),
        ("value_loss", p["value_loss"] in ("weighted", "nonzero")),
        ("precision", p["precision"] in ("auto", "float32", "bfloat16")),
    ]
    for name, ok in checks:
        if not ok:
            msg = f"invalid {name}={p[name]!r}."
            raise ValueError(msg)


def _matrix_and_names(data, layer: str | None, var_names):
    """Accept an AnnData (with ``layer``) or a matrix (with optional ``var_names``)."""
    from anndata import AnnData

    from ._utils import get_matrix

    if isinstance(data, AnnData):
        return as_supported(get_matrix(data, layer)), pd.Index(data.var_names.astype(str))
    X = as_supported(data)
    names = pd.Index(np.arange(X.shape[1]).astype(str)) if var_names is None else pd.Index(var_names).astype(str)
    if len(names) != X.shape[1]:
        msg = f"var_names has {len(names)} entries but the matrix has {X.shape[1]} columns."
        raise ValueError(msg)
    return X, names


class DeepImpute:
    """DeepImpute: divide-and-conquer neural imputation of scRNA-seq counts :cite:p:`Arisdakessian2019`.

    Target genes are split into blocks of ``subset_size``; each block gets its own network,
    ``Dense(hidden_units, relu) -> Dropout(dropout_rate) -> Dense(block, softplus)``, whose inputs are
    the ``n_predictors`` genes most correlated (absolute Pearson r on counts) with each of its targets,
    never a target of the same block. All blocks train as one fused computation (a batched matrix
    product over a block axis) with the paper's weighted MSE ``mean(y * (y - y_hat)^2)`` on log1p
    counts, which ignores zeros and so learns the value a gene has *when detected*.

    Two presets:

    ``preset="paper"``
        The published method: genes with ``var/(1+mean) > 0.5``, Adam at 1e-4, batch 64, patience
        5, last-epoch weights, one output head.
    ``preset="default"``
        Chosen by measurement on the masked-value benchmark (``benchmarks/RESULTS_accuracy.md``): every gene
        with non-zero variance is a target (``min_vmr=0``), Adam at 1e-3 with batch 256 (as accurate, several times
        fewer steps), bfloat16 matrix products where the hardware has them (``precision="auto"``), early stopping
        after 4 epochs without an improvement of more than 0.1% (``tol=1e-3``, ``patience=4``: fewer epochs at the
        same accuracy), each block restored to its best validation epoch, the cell's log library size as an extra
        input, an unweighted squared error on detected entries (``value_loss="nonzero"``), and a second *detection
        head* (sigmoid, binary cross-entropy on ``y > 0``) beside the value head. Zeros can then be filled either by
        the value-if-detected (``fill="detected"``, the paper's semantics, best for recovering dropped values) or by
        the expected value P(detected) x value (``fill="expected"``, which keeps clustering at least as good as raw).
        With a detection head the value-if-detected also uses the detection probability p: the
        value head v is averaged, per gene, with the level p implies through a Poisson link,
        weighted by the gene's zero fraction z in the training cells,
        ``(1 - z) v + z E[log1p X | X > 0; lambda = -log(1 - p)]`` (v rests on the gene's few detected
        cells, p on all cells; see :func:`~scdeepimpute._network.value_if_detected`).

    Deviations from the authors' code (see CHANGELOG): the last block is completed with the next-
    ranked genes (never an extra block of random genes drawn with replacement), or, where too few
    genes remain to complete it (always when every gene is a target), the targets are spread over
    blocks of equal size (within one); fewer than ``subset_size`` targets give two smaller blocks;
    predictors are chosen among all genes with non-zero variance via targets x genes correlations
    computed in chunks; any argument given explicitly overrides the preset.

    Parameters
    ----------
    preset
        ``"default"`` or ``"paper"``; supplies every hyperparameter left as ``None``.
    min_vmr
        Genes with ``var / (1 + mean)`` (counts, ddof=1) above this are imputed.
    subset_size
        Target genes per sub-network (at most; see the deviations above for even blocks).
    n_predictors
        Input genes taken per target (highest absolute Pearson r).
    hidden_units, dropout_rate
        Width of the hidden ReLU layer and dropout rate after it.
    learning_rate, batch_size, max_epochs, patience
        Adam learning rate, cells per step, epoch cap and early-stopping patience (epochs without
        improvement of the summed validation loss).
    tol
        Early stopping: an epoch counts as an improvement only if it lowers the best summed
        validation loss by more than ``tol`` times that loss (relative; 0 = any decrease).
    epoch_size
        Training cells per epoch, the unit of early stopping (validation, ``patience``, best weights):
        each epoch takes the next ``epoch_size`` cells of a shuffled pass over the training cells, so
        on large data the stopping rule is checked every ``epoch_size`` cells instead of once per pass.
        With fewer training cells (or the paper preset's ``None``) an epoch is one pass over all of them.
    validation_fraction
        Fraction of (training) cells held out for early stopping.
    restore_best_weights
        Give each block the weights of its best validation epoch.
    detection_head
        Train the second head that predicts detection (needed for ``fill="expected"``).
    library_size
        Give every block the cell's centred log library size as an extra input.
    value_loss
        ``"weighted"``: the paper's ``y * (y - y_hat)^2``; ``"nonzero"``: ``(y - y_hat)^2`` on detected entries.
    precision
        ``"float32"``, ``"bfloat16"`` for the matrix products (weights, sums, losses and Adam stay
        float32), or ``"auto"``: bfloat16 where the hardware multiplies it natively (GPUs of compute
        capability >= 8, CPUs with AVX512-BF16 or AMX), float32 elsewhere (emulated bfloat16 is
        slow). Masked-value accuracy was the same at both precisions on three public datasets
        (``benchmarks/experiments/bf16_accuracy.py``); results then depend on the hardware, as
        floating-point sums do anyway.
    random_state
        Seed for the block split, the validation split, weight initialisation, shuffling and dropout.

    Examples
    --------
    >>> import scdeepimpute as sdi
    >>> adata = sdi.datasets.example()
    >>> model = sdi.DeepImpute(max_epochs=3).fit(adata)  # doctest: +SKIP
    >>> imputed = model.predict(adata)  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        preset: Literal["default", "paper"] = "default",
        min_vmr: float | None = None,
        subset_size: int | None = None,
        n_predictors: int | None = None,
        hidden_units: int | None = None,
        dropout_rate: float | None = None,
        learning_rate: float | None = None,
        batch_size: int | None = None,
        max_epochs: int | None = None,
        patience: int | None = None,
        tol: float | None = None,
        epoch_size: int | None = None,
        validation_fraction: float | None = None,
        restore_best_weights: bool | None = None,
        detection_head: bool | None = None,
        library_size: bool | None = None,
        value_loss: Literal["weighted", "nonzero"] | None = None,
        precision: Literal["auto", "float32", "bfloat16"] | None = None,
        random_state: int = 0,
    ):
        self.preset = preset
        # every keyword except preset/random_state is a hyperparameter (None: take the preset's value)
        self.params = _hyperparameters(preset, {k: v for k, v in locals().items() if k in HYPERPARAMETERS})
        self.random_state = int(random_state)
        self.network_ = None

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        data: AnnData | np.ndarray | sparse.spmatrix,
        *,
        layer: str | None = None,
        genes: Sequence[str] | None = None,
        var_names: Sequence[str] | None = None,
        train_size: float | int | None = None,
        check_counts: bool = False,
        progress: bool | None = None,
        strategy: tf.distribute.Strategy | Literal["mirrored"] | None = None,
    ) -> DeepImpute:
        """Select targets and predictors on ``data`` and train the networks.

        Parameters
        ----------
        data
            Raw counts, cells x genes: an AnnData (``X`` or ``layer``), a numpy array or a sparse matrix.
        layer
            Layer of ``data`` holding raw counts (AnnData only); ``None`` uses ``X``.
        genes
            Impute these genes (names) instead of those passing ``min_vmr``.
        var_names
            Gene names when ``data`` is a matrix.
        train_size
            Train on a random subset of cells: a fraction in (0, 1] or a number of cells.
        check_counts
            Raise instead of warn when values are not integers.
        progress
            Show a progress bar; ``None`` follows scanpy's verbosity (shown at >= 1).
        strategy
            Spread training over several devices: a ``tf.distribute.Strategy`` (e.g.
            ``tf.distribute.MirroredStrategy(["/gpu:0", "/gpu:1"])``), or ``"mirrored"`` for a
            ``MirroredStrategy`` over every GPU TensorFlow sees. ``None`` (default) trains on one device
            (a GPU when TensorFlow sees one). The weights and Adam's state are mirrored on every replica;
            each batch of ``batch_size`` cells is split evenly across the replicas (``batch_size`` must be
            divisible by their number, else ``ValueError``), gradients are summed across replicas and
            every replica applies the same update, so the update is that of the whole batch on one device
            (up to float rounding). Dropout masks are drawn per replica from a stateless generator, so runs
            with and without a strategy differ when ``dropout_rate > 0``. The devices that train are
            logged at verbosity >= 1. Not saved with the model; prediction runs on one device.

        Returns
        -------
        The fitted model (``self``).

        Examples
        --------
        Data-parallel training on every visible GPU:

        >>> import scdeepimpute as sdi
        >>> adata = sdi.datasets.example()
        >>> model = sdi.DeepImpute(max_epochs=3).fit(adata, strategy="mirrored")  # doctest: +SKIP
        >>> imputed = model.predict(adata)  # doctest: +SKIP
        """
        X, names = _matrix_and_names(data, layer, var_names)
        _check_counts(X, strict=check_counts)  # dask input: its training cells are checked once read
        return self._fit_matrix(
            X,
            names,
            genes=genes,
            train_size=train_size,
            check_counts=check_counts,
            progress=progress,
            strategy=strategy,
        )

    def _fit_matrix(
        self, X, names: pd.Index, *, genes, train_size, check_counts: bool, progress, strategy=None
    ) -> DeepImpute:
        """:meth:`fit` on a matrix whose in-memory values were already checked (callers check once)."""
        from ._backend import import_keras

        strategy = _resolve_strategy(strategy)

        rng = check_random_state(self.random_state)
        p = self.params
        t0 = time.perf_counter()

        cells = _training_cells(X.shape[0], train_size, rng)
        n_val = max(1, round(p["validation_fraction"] * cells.size))
        if cells.size < MIN_CELLS or cells.size - n_val < max(n_val, 10):
            msg = (
                f"DeepImpute needs at least {MIN_CELLS} cells to split training and validation cells "
                f"(validation_fraction={p['validation_fraction']}); got {cells.size}."
            )
            raise ValueError(msg)
        Xfit = X[cells] if cells.size < X.shape[0] else X
        if is_dask(Xfit):  # out of core: only the training cells are read into memory
            Xfit = to_memory(Xfit)
            _check_counts(Xfit, strict=check_counts, what="the training cells")
        mean, var, detected = gene_stats(Xfit)  # counts are checked non-negative: non-zero = detected
        zero_fraction = 1.0 - detected
        gene_idx = None if genes is None else _gene_indices(names, genes)
        split = split_targets(
            mean, var, min_vmr=p["min_vmr"], subset_size=p["subset_size"], genes=gene_idx, rng=rng
        )
        predictors = select_predictors(Xfit, split.blocks, mean, var, n_predictors=p["n_predictors"])
        logg.info(
            f"    {split.targets.size} target genes in {len(split.blocks)} blocks "
            f"({split.filled.size} added to fill the last block), "
            f"{int(np.mean([len(q) for q in predictors]))} inputs per block on average"
        )

        _, keras = import_keras()
        from ._network import BlockLayout

        keras.utils.set_random_seed(self.random_state)
        layout = BlockLayout.from_blocks(split.blocks, predictors, n_extra=int(p["library_size"]))
        net, trainer = _network_and_trainer(layout, p, self.random_state, strategy=strategy)
        order = rng.permutation(cells.size)
        val_rows, train_rows = np.sort(order[:n_val]), np.sort(order[n_val:])
        log_max = float(np.log1p(_max_value(Xfit)))
        log_library = _log_library(Xfit)
        self.library_mean_ = float(log_library.mean())
        covariates = (log_library - self.library_mean_)[:, None] if p["library_size"] else None

        load_rows = _batch_loader(Xfit, layout, covariates)
        if progress is None:
            progress = logg.verbosity() >= 1
        history = trainer.fit(
            load_rows,
            train_rows,
            val_rows,
            max_epochs=p["max_epochs"],
            patience=p["patience"],
            tol=p["tol"],
            epoch_size=p["epoch_size"],
            restore_best_weights=p["restore_best_weights"],
            rng=rng,
            progress=progress,
        )
        self.var_names_ = names
        self.blocks_ = split.blocks
        self.predictors_ = predictors
        self.selected_ = split.selected
        self.layout_ = layout
        self.network_ = net
        self._trainer = trainer
        self.history_ = history
        self.log_max_ = log_max
        self.zero_fraction_ = zero_fraction
        self.n_cells_fit_ = int(cells.size)
        self.fit_time_ = time.perf_counter() - t0
        return self

    # -------------------------------------------------------------- predict
    @property
    def targets_(self) -> np.ndarray:
        """Names of the imputed (target) genes."""
        self._check_fitted()
        return self.var_names_[np.concatenate(self.blocks_)].to_numpy()

    def _check_fitted(self) -> None:
        if self.network_ is None:
            msg = "this DeepImpute model is not fitted yet; call .fit() first (or DeepImpute.load())."
            raise RuntimeError(msg)

    def predict(
        self,
        data: AnnData | np.ndarray | sparse.spmatrix,
        *,
        layer: str | None = None,
        var_names: Sequence[str] | None = None,
        policy: Policy = "restore",
        fill: Fill | None = None,
    ) -> np.ndarray:
        """Impute ``data`` (raw counts; cells x genes) and return a dense float32 count matrix.

        Parameters
        ----------
        data, layer, var_names
            As in :meth:`fit`; genes are aligned by name to the genes seen in :meth:`fit`.
        policy
            ``"restore"`` replaces only zeros (observed counts are kept exactly), ``"all"`` returns the
            model output for every entry of a target gene, ``"max"`` the larger of both.
        fill
            ``"expected"`` (default with a detection head) or ``"detected"`` (default otherwise).

        Returns
        -------
        numpy.ndarray
            Counts with the same shape as the input; non-target genes are copied unchanged.
        """
        if fill is None:
            fill = "expected" if self.params["detection_head"] else "detected"
        return self.impute(data, layer=layer, var_names=var_names, policy=policy, fills=(fill,))[fill]

    def impute(
        self,
        data,
        *,
        layer: str | None = None,
        var_names: Sequence[str] | None = None,
        policy: Policy = "restore",
        fills: Sequence[Fill] = ("expected", "detected"),
    ) -> dict[str, np.ndarray]:
        """Like :meth:`predict`, for several fills computed in one pass; returns ``{fill: matrix}``."""
        from ._network import value_if_detected

        self._check_fitted()
        if policy not in ("restore", "all", "max"):
            msg = f"unknown policy {policy!r}; use 'restore', 'all' or 'max'."
            raise ValueError(msg)
        for f in fills:
            if f not in ("expected", "detected"):
                msg = f"unknown fill {f!r}; use 'expected' or 'detected'."
                raise ValueError(msg)
            if f == "expected" and not self.params["detection_head"]:
                msg = "fill='expected' needs a model trained with detection_head=True; use fill='detected'."
                raise ValueError(msg)
        X, names = _matrix_and_names(data, layer, var_names)
        if not names.equals(self.var_names_):
            return self._impute_transfer(X, names, policy=policy, fills=fills)
        layout = self.layout_
        valid = (layout.outputs != layout.pad).ravel()  # the network's output slots that hold a target
        target_genes = layout.columns[layout.outputs.ravel()[valid]]
        zero_fraction = self.zero_fraction_[target_genes] if self.params["detection_head"] else None
        out = {f: np.empty(X.shape, dtype=np.float32) for f in fills}
        for start in range(0, X.shape[0], PREDICT_ROWS):
            stop = min(start + PREDICT_ROWS, X.shape[0])
            raw = dense_rows(X, slice(start, stop))
            covariates = None
            if self.params["library_size"]:
                covariates = np.log1p(raw.sum(axis=1, dtype=np.float64))[:, None] - self.library_mean_
            value, prob = self._trainer.predict(_batch(raw, layout, covariates))
            value = value.reshape(stop - start, -1)[:, valid]
            # the original's overflow guard: absurd log values (or NaN) are dropped to 0
            value[~(value <= 2 * self.log_max_)] = 0.0
            if prob is None:  # one head (paper): the value head alone
                detected = np.expm1(value)
            else:  # value head and the detection head's Poisson-link level, weighted by the gene's zero fraction
                prob = prob.reshape(stop - start, -1)[:, valid]
                detected = np.expm1(value_if_detected(value, prob, zero_fraction))
            observed = raw[:, target_genes]
            for f in fills:
                # "expected" = P(detected) x value-if-detected, so it never exceeds the "detected" fill
                estimate = detected if f == "detected" else prob * detected
                if policy == "restore":
                    estimate = np.where(observed > 0, observed, estimate)
                elif policy == "max":
                    estimate = np.maximum(observed, estimate)
                block = out[f][start:stop]  # a view: write in place, no per-fill copy of the chunk
                block[:] = raw
                block[:, target_genes] = estimate
        return out

    #: Largest fraction of the model's input genes that may be missing from new data.
    max_missing_fraction = 0.5

    def _impute_transfer(self, X, names: pd.Index, *, policy: Policy, fills) -> dict[str, np.ndarray]:
        """Impute data whose genes differ from the training genes, aligning them by name.

        Genes the model reads but ``data`` lacks are treated as zero (warning with their number; an
        error when more than :attr:`max_missing_fraction` are missing). Genes of ``data`` unknown
        to the model pass through unchanged.
        """
        if not names.is_unique:
            msg = "var_names of `data` are not unique; call adata.var_names_make_unique() first."
            raise ValueError(msg)
        position = names.get_indexer(self.var_names_)  # for every model gene, its column in data or -1
        used = self.layout_.columns
        missing = int((position[used] < 0).sum())
        if missing > self.max_missing_fraction * used.size:
            msg = (
                f"{missing} of the {used.size} genes the model reads are missing from `data` "
                f"(more than {self.max_missing_fraction:.0%}); the model does not fit these data."
            )
            raise ValueError(msg)
        if missing:
            logg.warning(
                f"{missing} of the {used.size} genes the model reads are missing from `data`; using 0 for them."
            )
        present = np.flatnonzero(position >= 0)
        select = sparse.csr_matrix(
            (np.ones(present.size, np.float32), (position[present], present)), shape=(names.size, self.var_names_.size)
        )
        aligned = X @ select  # cells x model genes, zeros where missing
        result = self.impute(aligned, var_names=self.var_names_, policy=policy, fills=fills)
        out = {}
        for fill, values in result.items():
            full = dense_rows(X)
            full[:, position[present]] = values[:, present]
            out[fill] = full
        return out

    # ---------------------------------------------------------- persistence
    def save(self, path: str | Path) -> None:
        """Save to a folder: ``model.weights.h5`` (Keras) and ``config.json`` (genes, blocks, parameters)."""
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.network_.save_weights(path / "model.weights.h5")
        config = {
            "format_version": _FORMAT_VERSION,
            "scdeepimpute_version": version("scdeepimpute"),
            "tensorflow_version": version("tensorflow"),
            "keras_version": version("keras"),
            "preset": self.preset,
            "params": self.params,
            "random_state": self.random_state,
            "var_names": list(self.var_names_),
            "blocks": [b.tolist() for b in self.blocks_],
            "predictors": [q.tolist() for q in self.predictors_],
            "selected": self.selected_.tolist(),
            "log_max": self.log_max_,
            "zero_fraction": self.zero_fraction_.tolist(),
            "library_mean": self.library_mean_,
            "n_cells_fit": self.n_cells_fit_,
            "history": {k: np.asarray(v).tolist() for k, v in self.history_.to_dict().items()},
        }
        (path / "config.json").write_text(json.dumps(config, indent=1))

    @classmethod
    def load(cls, path: str | Path) -> DeepImpute:
        """Load a model written by :meth:`save` (no pickle involved)."""
        from ._network import BlockLayout
        from ._training import History

        path = Path(path)
        config = json.loads((path / "config.json").read_text())
        if config.get("format_version") != _FORMAT_VERSION:
            msg = (
                f"{path} holds model format {config.get('format_version')}, this version reads {_FORMAT_VERSION}"
                " (format 2 stores each gene's zero fraction, used by fill='detected'); refit the model"
                " with this version and save it again."
            )
            raise ValueError(msg)
        p = config["params"]
        model = cls(preset=config["preset"], random_state=config["random_state"], **p)
        model.var_names_ = pd.Index(config["var_names"])
        model.blocks_ = [np.asarray(b, dtype=np.int64) for b in config["blocks"]]
        model.predictors_ = [np.asarray(q, dtype=np.int64) for q in config["predictors"]]
        model.selected_ = np.asarray(config["selected"], dtype=np.int64)
        model.layout_ = BlockLayout.from_blocks(model.blocks_, model.predictors_, n_extra=int(p["library_size"]))
        model.network_, model._trainer = _network_and_trainer(model.layout_, model.params, config["random_state"])
        model.network_.load_weights(path / "model.weights.h5")
        h = config["history"]
        model.history_ = History(loss=h["loss"], val_loss=h["val_loss"], best_epoch=np.asarray(h["best_epoch"]))
        model.history_.stopped_epoch = h["epochs"]
        model.log_max_ = config["log_max"]
        model.zero_fraction_ = np.asarray(config["zero_fraction"], dtype=np.float64)
        model.library_mean_ = config["library_mean"]
        model.n_cells_fit_ = config["n_cells_fit"]
        return model

    def __repr__(self) -> str:
        state = "unfitted" if self.network_ is None else f"{len(self.blocks_)} blocks, {self.targets_.size} targets"
        return f"DeepImpute(preset={self.preset!r}, {state})"


def _training_cells(n: int, train_size, rng: np.random.Generator) -> np.ndarray:
    if train_size is None:
        return np.arange(n)
    if isinstance(train_size, float | np.floating) and 0 < train_size <= 1:
        k = round(train_size * n)
    elif isinstance(train_size, int | np.integer) and train_size >= 1:
        k = min(int(train_size), n)
    else:
        msg = f"train_size must be a fraction in (0, 1] or a number of cells, got {train_size!r}."
        raise ValueError(msg)
    return np.sort(rng.choice(n, size=k, replace=False))


def _gene_indices(names: pd.Index, genes: Sequence[str]) -> np.ndarray:
    genes = pd.Index(np.asarray(genes).astype(str))
    missing = genes[~genes.isin(names)]
    if len(missing):
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        msg = f"{len(missing)} of the genes in `genes=` are not in var_names: {shown}."
        raise ValueError(msg)
    if not names.is_unique:
        msg = "var_names are not unique; call adata.var_names_make_unique() before selecting genes by name."
        raise ValueError(msg)
    return names.get_indexer(genes.unique())


def _max_value(X) -> float:
    if sparse.issparse(X):
        return float(X.max()) if X.nnz else 0.0
    return float(np.max(X)) if X.size else 0.0


def _log_library(X) -> np.ndarray:
    """log1p of each cell's total count (float64)."""
    return np.log1p(np.asarray(X.sum(axis=1), dtype=np.float64).ravel())


def _batch_loader(X, layout, covariates: np.ndarray | None):
    """A function ``rows -> batch`` for the training loop: the :func:`_batch` of ``X[rows]``.

    Only the requested rows are logged and densified, so training holds no copy of the input (on
    50k x 3200 CSR cells a logged copy of the training columns took the fit's peak from 2137 to
    2698 MB; ``benchmarks/memory_50k.py``).
    """
    if sparse.issparse(X):
        X = X.tocsr()  # row slicing

    def load(rows):
        raw = X[rows] if sparse.issparse(X) else dense_rows(X, rows)
        return _batch(raw, layout, None if covariates is None else covariates[rows])

    return load


def _batch(raw, layout, covariates: np.ndarray | None) -> np.ndarray:
    """One batch for the network from counts of every gene: log1p of ``layout.columns``, covariates, zeros.

    ``raw`` is dense, or CSR (densified straight into the batch: no dense copy of its rows).
    """
    n_cols = layout.columns.size
    out = np.empty((raw.shape[0], layout.width), dtype=np.float32)
    # columns are sorted and unique, so as many columns as genes means every gene, in order: no gathered copy
    sub = raw if n_cols == raw.shape[1] else raw[:, layout.columns]
    if sparse.issparse(sub):
        # the rows' CSR, widened to the batch's width, fills the whole batch (toarray zeroes ``out`` first)
        logged = sparse.csr_matrix((np.log1p(sub.data, dtype=np.float32), sub.indices, sub.indptr), shape=out.shape)
        logged.toarray(out=out)
    else:
        np.log1p(sub, out=out[:, :n_cols])
        out[:, n_cols:] = 0.0
    if covariates is not None:
        out[:, n_cols : layout.pad] = covariates
    return out


def _network_and_trainer(layout, params: dict, seed: int, *, strategy=None):
    """The fused network for ``layout`` and its trainer (variables on ``strategy``'s replicas when given)."""
    from ._network import FusedBlocks
    from ._training import Trainer

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


def _resolve_strategy(strategy):
    """``None`` or a ``tf.distribute.Strategy`` as given; ``"mirrored"``: ``MirroredStrategy`` over all visible GPUs."""
    if strategy is None:
        return None
    from ._backend import import_keras

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
