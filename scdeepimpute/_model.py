"""The :class:`DeepImpute` estimator: gene selection, fused training, imputation and gene transfer."""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from scipy import sparse

from . import _logging as logg
from . import _params, _persist
from ._fills import Fill, Policy, check_fills, default_fills, fill_chunk
from ._input import counts_and_names, gene_indices
from ._layout import batch, batch_loader, log_library
from ._params import takes_hyperparameters
from ._selection import select_predictors, split_targets
from ._utils import check_random_state, dense_rows, gene_stats, is_dask, max_value, to_memory, training_cells

if TYPE_CHECKING:
    import tensorflow as tf
    from anndata import AnnData

#: Fewer cells than this cannot give a validation set and a meaningful training set.
MIN_CELLS = 20

#: Cells per prediction chunk: bounds the dense working copies of a chunk (input, log input, outputs);
#: the measured choice is in ``benchmarks/RESULTS_speed.md``.
PREDICT_ROWS = 512
#: Validation cells (at most) on which each gene's dispersion around the model is estimated.
DISPERSION_CELLS = 2000


@takes_hyperparameters
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
        with non-zero variance is a target (``min_vmr=0``), Adam at 1e-3 with batch 256 (as accurate in fewer
        steps), bfloat16 matrix products where the hardware has them (``precision="auto"``), early stopping
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
        cells, p on all cells; see :func:`~scdeepimpute._fills.value_if_detected`).
        The default also blends in each cell's neighbourhood (``neighbors=30``; the paper preset has 0): the
        value if detected that the cell's 30 nearest cells (PCA of the log-normalised data being imputed,
        exact kNN, the cell itself excluded) imply through a Poisson rate scaled to the cell's library,
        ``(1 - w) network + w neighbourhood`` on the log1p scale (:mod:`scdeepimpute._neighbors`). ``fit``
        first hides min(10, 10%) of the non-zeros of every gene with >= 10 of them, trains on the rest, and
        chooses ``w`` (``neighbor_weight="auto"``) by the lowest MSE on the hidden entries; their scores are
        the model's own accuracy estimate (``calibration_``).

    Fitted attributes (besides the network): ``neighbor_weight_`` (the weight used, 0 without neighbours) and
    ``calibration_`` (``None`` without neighbours, else a dict: ``n_entries``, ``neighbor_weight``, masked MSE
    and Pearson r, log1p, of the ``network``, the ``neighbourhood`` and the ``blend`` on the hidden entries,
    and ``gene_mse``, the blend's MSE per gene, NaN where a gene had no entry); ``dispersion_`` (with a
    detection head: per gene, the spread of validation cells' counts around the model's rate beyond Poisson
    noise, which sets how much the ``"lognorm"`` fill trusts an observed count; NaN off target).

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
    {hyperparameters}
    random_state
        Seed for the block split, the validation split, weight initialisation, shuffling and dropout.

    Examples
    --------
    >>> import scdeepimpute as sdi
    >>> adata = sdi.datasets.example()
    >>> model = sdi.DeepImpute(max_epochs=3).fit(adata)  # doctest: +SKIP
    >>> imputed = model.predict(adata)  # doctest: +SKIP
    """

    def __init__(self, *, preset: Literal["default", "paper"] = "default", random_state: int = 0, **hyperparameters):
        self.preset = preset
        # hyperparameters left as None take the preset's value
        self.params = _params.hyperparameters(preset, hyperparameters)
        self.random_state = int(random_state)
        self.network_ = None
        self.batch_key_, self.batches_, self.batch_log_means_ = None, None, None

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
        batch_key: str | None = None,
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
            Raise instead of warn when values are not integers (negative, NaN or infinite values always raise
            ``ValueError``). CSC input is converted to CSR once (a copy of its non-zeros, freed on return).
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
        batch_key
            Column of ``data.obs`` (AnnData only) naming each cell's batch (sample, plate, technology). Each
            batch becomes a one-hot input of every block beside the library size; predictor genes are chosen from
            correlations pooled within batches (each batch centred on its own means, so genes that only differ
            between batches do not look related); training and validation cells are drawn within each batch in
            its share; the neighbourhood is searched on PCs of per-batch-centred data. Every batch needs at least
            :data:`~scdeepimpute._batches.MIN_BATCH_CELLS` training cells (``ValueError`` otherwise, as for an
            unknown key or missing labels). The key and the batches are saved with the model; predict with
            ``batch=`` (:meth:`predict`).

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
        codes = categories = None
        if batch_key is not None:
            from ._batches import fit_codes

            codes, categories = fit_codes(data, batch_key)
        # dask input: its training cells are checked once read
        X, names = counts_and_names(data, layer=layer, var_names=var_names, strict=check_counts)
        return self._fit_matrix(
            X,
            names,
            genes=genes,
            train_size=train_size,
            check_counts=check_counts,
            progress=progress,
            strategy=strategy,
            batches=None if batch_key is None else (batch_key, codes, categories),
        )

    def _fit_matrix(
        self, X, names: pd.Index, *, genes, train_size, check_counts: bool, progress, strategy=None, batches=None
    ) -> DeepImpute:
        """:meth:`fit` on a matrix from :func:`counts_and_names` (checked once); ``self`` changes only on success.

        ``batches``: ``None`` or ``(batch_key, codes, categories)`` (:func:`~scdeepimpute._batches.fit_codes`).
        """
        from ._backend import import_keras, resolve_strategy
        from ._training import network_and_trainer

        strategy = resolve_strategy(strategy)

        rng = check_random_state(self.random_state)
        p = self.params
        t0 = time.perf_counter()

        batch_key, codes, categories = (None, None, None) if batches is None else batches
        if codes is None:
            cells = training_cells(X.shape[0], train_size, rng)
        else:
            from ._batches import check_batch_sizes, stratified_cells

            cells = stratified_cells(codes, train_size, rng)
            check_batch_sizes(codes[cells], categories, batch_key)
            codes = codes[cells]  # from here on: the batch of each training cell
        n_val = max(1, round(p["validation_fraction"] * cells.size))
        if cells.size < MIN_CELLS or cells.size - n_val < max(n_val, 10):
            msg = (
                f"DeepImpute needs at least {MIN_CELLS} cells to split training and validation cells "
                f"(validation_fraction={p['validation_fraction']}); got {cells.size}."
            )
            raise ValueError(msg)
        Xfit = X[cells] if cells.size < X.shape[0] else X
        if is_dask(Xfit):  # out of core: only the training cells are read into memory, then checked
            Xfit, _ = counts_and_names(to_memory(Xfit), var_names=names, strict=check_counts, what="the training cells")
        hidden = None
        if p["neighbors"] > 0:  # hide calibration entries from training and from the neighbourhood
            from ._neighbors import calibration_entries, calibration_rng, hide

            hidden = calibration_entries(Xfit, calibration_rng(self.random_state))
            Xfit = hide(Xfit, hidden)
        mean, var, detected = gene_stats(Xfit)  # counts are checked non-negative: non-zero = detected
        zero_fraction = 1.0 - detected
        gene_idx = None if genes is None else gene_indices(names, genes)
        split = split_targets(mean, var, min_vmr=p["min_vmr"], subset_size=p["subset_size"], genes=gene_idx, rng=rng)
        predictors = select_predictors(Xfit, split.blocks, mean, var, n_predictors=p["n_predictors"], codes=codes)
        logg.info(
            f"    {split.targets.size} target genes in {len(split.blocks)} blocks "
            f"({split.filled.size} added to fill the last block), "
            f"{int(np.mean([len(q) for q in predictors]))} inputs per block on average"
        )

        _, keras = import_keras()
        from ._layout import BlockLayout

        keras.utils.set_random_seed(self.random_state)
        n_batches = 0 if categories is None else len(categories)
        layout = BlockLayout.from_blocks(split.blocks, predictors, n_extra=int(p["library_size"]) + n_batches)
        net, trainer = network_and_trainer(layout, p, self.random_state, strategy=strategy)
        if codes is None:
            order = rng.permutation(cells.size)
            val_rows, train_rows = np.sort(order[:n_val]), np.sort(order[n_val:])
        else:
            from ._batches import stratified_split

            val_rows, train_rows = stratified_split(codes, p["validation_fraction"], rng)
        log_max = float(np.log1p(max_value(Xfit)))
        log_lib = log_library(Xfit)
        library_mean = float(log_lib.mean())
        covariates = _covariates(log_lib - library_mean if p["library_size"] else None, codes, n_batches)

        load_rows = batch_loader(Xfit, layout, covariates)
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
        # trained: the fitted state is built on a copy (calibration reads it), and only then becomes self's, so a
        # failure anywhere above leaves a fresh model unfitted and a refitted one as it was
        fitted = copy.copy(self)
        fitted.var_names_ = names
        fitted.blocks_ = split.blocks
        fitted.predictors_ = predictors
        fitted.selected_ = split.selected
        fitted.layout_ = layout
        fitted._trainer = trainer
        fitted.network_ = net
        fitted.history_ = history
        fitted.log_max_ = log_max
        fitted.zero_fraction_ = zero_fraction
        fitted.library_mean_ = library_mean
        fitted.n_cells_fit_ = int(cells.size)
        fitted.batch_key_, fitted.batches_ = batch_key, categories
        fitted.batch_log_means_ = None if codes is None else _batch_log_means(Xfit, layout.columns, codes, n_batches)
        fitted.neighbor_weight_, fitted.calibration_ = 0.0, None
        if hidden is not None:
            fitted._calibrate(Xfit, hidden, codes)
        fitted.dispersion_ = None  # the rate below is the model's alone
        if p["detection_head"]:
            rows = val_rows[:DISPERSION_CELLS]
            fitted.dispersion_ = fitted._dispersion(Xfit[rows], None if codes is None else codes[rows])
        fitted.fit_time_ = time.perf_counter() - t0
        self.__dict__.update(fitted.__dict__)
        return self

    def _dispersion(self, X, codes=None) -> np.ndarray:
        """Per gene (NaN off target) spread of the counts of ``X`` (cells not trained on) around the model's rate.

        ``codes``: the cells' batch codes (a model fitted with batches), each predicted for its own batch.
        """
        from ._fills import gene_dispersion

        target_genes = self._target_genes()
        rate = self._impute_matrix(X, self.var_names_, policy="all", fills=("expected",), own=codes, target=codes)
        rate = rate["expected"]
        dispersion = np.full(self.var_names_.size, np.nan)
        dispersion[target_genes] = gene_dispersion(dense_rows(X, slice(None))[:, target_genes], rate[:, target_genes])
        return dispersion

    def _calibrate(self, Xfit, hidden, codes=None) -> None:
        """Choose ``neighbor_weight_`` and fill ``calibration_`` on the ``hidden`` entries of the training cells."""
        from ._neighbors import calibrate_model

        self.neighbor_weight_, self.calibration_ = calibrate_model(
            self, Xfit, hidden, rows_per_chunk=PREDICT_ROWS, codes=codes
        )

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
        check_counts: bool = False,
        batch: str | None = None,
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
        check_counts
            As in :meth:`fit`: raise instead of warn when values are not integers (negative, NaN or infinite
            values always raise ``ValueError``).
        batch
            Models fitted with ``batch_key`` only (``ValueError`` otherwise). ``None``: each cell is predicted for
            its own batch, read from ``data.obs[batch_key]`` (the imputed values keep each batch's character: use
            it to fill dropouts while keeping the data as measured). A fitted batch's name: every cell is predicted
            as if it had been measured in that reference batch (the network's batch input is that batch, and its
            input genes are moved to that batch's mean log1p level), which moves the imputed zeros of all batches
            onto one batch's scale: use it to lessen
            the batch effect in the imputed values (with ``policy="restore"`` the observed counts are kept, so only
            the zeros move). ``ValueError`` for a batch the model never saw.

        Returns
        -------
        numpy.ndarray
            Counts with the same shape as the input; non-target genes are copied unchanged.
        """
        if fill is None:
            fill = default_fills(self.params["detection_head"])[0]
        out = self.impute(
            data, layer=layer, var_names=var_names, policy=policy, fills=(fill,), check_counts=check_counts, batch=batch
        )
        return out[fill]

    def impute(
        self,
        data,
        *,
        layer: str | None = None,
        var_names: Sequence[str] | None = None,
        policy: Policy = "restore",
        fills: Sequence[Fill] = ("expected", "detected"),
        check_counts: bool = False,
        batch: str | None = None,
    ) -> dict[str, np.ndarray]:
        """Like :meth:`predict`, for several fills computed in one pass; returns ``{fill: matrix}``."""
        from ._batches import predict_codes

        self._check_fitted()
        check_fills(fills, policy, detection_head=self.params["detection_head"])
        own, target = predict_codes(self, data, data.shape[0], batch)
        X, names = counts_and_names(data, layer=layer, var_names=var_names, strict=check_counts)
        return self._impute_matrix(X, names, policy=policy, fills=fills, own=own, target=target)

    def _impute_matrix(
        self, X, names: pd.Index, *, policy: Policy, fills, own=None, target=None, totals=None
    ) -> dict[str, np.ndarray]:
        """:meth:`impute` on a matrix from :func:`counts_and_names` (callers check its values once).

        ``own``, ``target``: the cells' batch codes and those they are predicted for
        (:func:`~scdeepimpute._batches.predict_codes`); ``target`` is required by a model fitted with batches.
        ``totals``: each cell's total count for the ``"lognorm"`` fill, when ``X`` holds only some of its genes.
        """
        self._check_fitted()
        check_fills(fills, policy, detection_head=self.params["detection_head"])
        if self.batch_key_ is not None and target is None:
            msg = (
                f"the model was fitted with batch_key={self.batch_key_!r}: impute an AnnData with that obs column, "
                "or give batch=<category>."
            )
            raise ValueError(msg)
        if not names.equals(self.var_names_):
            return self._impute_transfer(X, names, policy=policy, fills=fills, own=own, target=target)
        target_genes = self._target_genes()
        zero_fraction = self._target_zero_fraction()
        neighbourhood = self._neighbourhood(X, target_genes, own=own, target=target)
        out = {f: np.empty(X.shape, dtype=np.float32) for f in fills}
        for start in range(0, X.shape[0], PREDICT_ROWS):
            stop = min(start + PREDICT_ROWS, X.shape[0])
            raw = dense_rows(X, slice(start, stop))
            value, prob = self._heads(
                raw, None if target is None else target[start:stop], None if own is None else own[start:stop]
            )
            rows = {f: values[start:stop] for f, values in out.items()}
            fill_chunk(
                rows,
                raw,
                target_genes,
                value,
                prob,
                zero_fraction=zero_fraction,
                log_max=self.log_max_,
                policy=policy,
                neighbourhood=None if neighbourhood is None else neighbourhood.log1p_if_detected(slice(start, stop)),
                weight=self.neighbor_weight_,
                totals=None if totals is None else totals[start:stop],
                dispersion=None if self.dispersion_ is None else self.dispersion_[target_genes],
            )
        return out

    def _target_genes(self) -> np.ndarray:
        """Column of every output of the network that holds a target, in output order."""
        layout = self.layout_
        return layout.columns[layout.outputs.ravel()[layout.outputs.ravel() != layout.pad]]

    def _target_zero_fraction(self) -> np.ndarray | None:
        return self.zero_fraction_[self._target_genes()] if self.params["detection_head"] else None

    def _heads(
        self, raw: np.ndarray, codes: np.ndarray | None = None, own: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Run the network: value (log1p) and detection outputs for dense counts ``raw`` (every gene), targets only.

        ``codes``: the batch each row is predicted for (models fitted with batches); ``own``: the rows' own batches.
        A row predicted for another batch than its own reads its inputs moved to that batch: each input gene's
        log1p value shifted by the difference of the two batches' mean log1p in the training cells (kept >= 0).
        """
        layout = self.layout_
        valid = (layout.outputs != layout.pad).ravel()  # the network's output slots that hold a target
        log_lib = None
        if self.params["library_size"]:
            log_lib = np.log1p(raw.sum(axis=1, dtype=np.float64)) - self.library_mean_
        covariates = _covariates(log_lib, codes, 0 if self.batches_ is None else len(self.batches_))
        data = batch(raw, layout, covariates)
        if codes is not None and own is not None and np.any(codes != own):
            n_cols = layout.columns.size
            shift = self.batch_log_means_[codes] - self.batch_log_means_[own]
            np.maximum(data[:, :n_cols] + shift.astype(np.float32), 0.0, out=data[:, :n_cols])
        value, prob = self._trainer.predict(data)
        value = value.reshape(raw.shape[0], -1)[:, valid]
        return value, None if prob is None else prob.reshape(raw.shape[0], -1)[:, valid]

    def _neighbourhood(self, X, target_genes: np.ndarray, *, own=None, target=None):
        """Build the neighbourhood of the cells of ``X`` (the data imputed); ``None`` where it has no weight."""
        from ._neighbors import model_neighbourhood

        return model_neighbourhood(self, X, target_genes, own=own, target=target)

    #: Largest fraction of the model's input genes that may be missing from new data.
    max_missing_fraction = 0.5

    def _impute_transfer(self, X, names: pd.Index, *, policy: Policy, fills, own=None, target=None):
        """Impute data whose genes differ from the training genes (:func:`~scdeepimpute._transfer.impute_transfer`)."""
        from ._transfer import impute_transfer

        return impute_transfer(self, X, names, policy=policy, fills=fills, own=own, target=target)

    # ---------------------------------------------------------- persistence
    def save(self, path: str | Path, *, overwrite: bool = False) -> None:
        """Save to a new or empty folder: ``model.weights.h5`` (Keras) and ``config.json`` (genes, blocks, parameters).

        ``overwrite=True`` replaces a model saved there before (without it: ``ValueError``); a folder holding anything
        else, or a file, is never replaced. Written to a temporary folder and renamed into place: an error or Ctrl-C
        while saving leaves no half model and the replaced model intact.
        """
        self._check_fitted()
        _persist.save(self, path, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | Path) -> DeepImpute:
        """Load a model written by :meth:`save` (no pickle); ``ValueError`` naming a damaged or mismatched file."""
        return _persist.load(cls, path)

    def __repr__(self) -> str:
        state = "unfitted" if self.network_ is None else f"{len(self.blocks_)} blocks, {self.targets_.size} targets"
        return f"DeepImpute(preset={self.preset!r}, {state})"


def _covariates(log_lib: np.ndarray | None, codes: np.ndarray | None, n_batches: int) -> np.ndarray | None:
    """Per-cell inputs of every block: the centred log library size (if any), then the batch one-hot (if any)."""
    if codes is None:
        if n_batches:  # a model with batches always gets them: callers pass the codes
            msg = "a model fitted with batches needs each cell's batch code."
            raise ValueError(msg)
        return None if log_lib is None else log_lib[:, None]
    from ._batches import one_hot

    hot = one_hot(np.asarray(codes), n_batches)
    return hot if log_lib is None else np.concatenate([log_lib[:, None], hot], axis=1)


def _batch_log_means(X, columns: np.ndarray, codes: np.ndarray, n_batches: int) -> np.ndarray:
    """Mean log1p count of each of ``columns`` in each batch (batches x columns, float64)."""
    out = np.zeros((n_batches, columns.size), dtype=np.float64)
    for b in range(n_batches):
        for start in range(0, int((codes == b).sum()), PREDICT_ROWS):
            rows = np.flatnonzero(codes == b)[start : start + PREDICT_ROWS]
            out[b] += np.log1p(dense_rows(X, rows, columns, dtype=np.float64)).sum(axis=0)
        out[b] /= max(int((codes == b).sum()), 1)
    return out
