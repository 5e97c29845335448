"""``scdeepimpute.pp.deepimpute``: the one-line scanpy entry point."""

from __future__ import annotations

import time
from collections.abc import Sequence
from importlib.metadata import version
from typing import TYPE_CHECKING, Literal

import numpy as np

from . import _logging as logg
from ._fills import Fill, Policy, check_fills, default_fills, output_names
from ._input import counts_and_names
from ._model import DeepImpute
from ._params import takes_hyperparameters
from ._utils import is_dask

if TYPE_CHECKING:
    import tensorflow as tf
    from anndata import AnnData


@takes_hyperparameters
def deepimpute(
    adata: AnnData,
    *,
    layer: str | None = None,
    key_added: str = "imputed",
    preset: Literal["default", "paper"] = "default",
    genes: Sequence[str] | None = None,
    policy: Policy = "restore",
    fills: Sequence[Fill] | None = None,
    train_size: float | int | None = None,
    model: DeepImpute | None = None,
    check_counts: bool = False,
    n_jobs: int | None = None,
    strategy: tf.distribute.Strategy | Literal["mirrored"] | None = None,
    random_state: int = 0,
    batch_key: str | None = None,
    batch: str | None = None,
    copy: bool = False,
    **hyperparameters,
) -> AnnData | None:
    """Impute dropouts with DeepImpute :cite:p:`Arisdakessian2019`.

    Trains a :class:`~scdeepimpute.DeepImpute` model on the raw counts in ``adata.X`` (or
    ``layer``) and writes the imputed counts to ``adata.layers[key_added]``. ``adata.X`` and every
    other layer are left untouched; observed non-zero counts are kept exactly (``policy="restore"``).

    With the default preset two layers come from one fit:

    ``adata.layers[key_added]``
        zeros replaced by the *expected* expression, P(detected) x value-if-detected. Use it for
        clustering, UMAP and DE (``sc.pp.normalize_total(adata, layer="imputed")`` then ``log1p``).
    ``adata.layers[f"{key_added}_detected"]``
        zeros replaced by the value the gene would have *if detected* (the paper's semantics):
        the best estimate of a dropped count, but it fills every zero with a detection-level
        value, which blurs cell types; use it to recover values, not to cluster.

    ``fills=("expected", "detected", "lognorm")`` adds

    ``adata.layers[f"{key_added}_lognorm"]``
        the expected *log-normalised* expression, E[log1p(1e4 x Y / total)] for every entry of a target gene
        under a Poisson draw Y from the model's rate (observed values are not kept): already normalised
        and log-transformed, so use it directly for PCA, gene-gene plots and log-space comparisons (do not
        normalise it again). Averaging the logarithm, rather than taking the log of the expected count, shrinks
        rarely detected values toward zero as a replicate measurement would show them.

    ``preset="paper"`` runs the published method (one layer, with the paper's semantics).

    Dask input: when ``X``/``layer`` is a dask array chunked along cells (e.g. from
    :func:`scdeepimpute.dask.read_lazy`), only the ``train_size`` training cells are read into
    memory (all cells if ``None``) and the layers are *lazy* dask arrays; compute or write them
    together (see :mod:`scdeepimpute.dask`) so that the network runs once per chunk.

    Parameters
    ----------
    adata
        Annotated data matrix with raw counts (cells x genes), dense or sparse, integer or float.
    layer
        Layer holding the raw counts; ``None`` uses ``adata.X``.
    key_added
        Name of the output layer (and prefix of the ``var`` columns and ``uns`` entry).
    preset
        ``"default"`` (tuned) or ``"paper"`` (published hyperparameters); supplies every hyperparameter left as
        ``None`` (see :class:`~scdeepimpute.DeepImpute`).
    {hyperparameters}
    genes
        Impute these genes instead of those passing ``min_vmr``.
    policy
        ``"restore"`` (replace zeros only), ``"all"`` (model output for every entry of a target gene)
        or ``"max"`` (the larger of observed and predicted); the ``"lognorm"`` layer ignores it.
    fills
        Layers to write, from ``"expected"``, ``"detected"`` and ``"lognorm"`` (the first is named ``key_added``,
        the others ``f"{key_added}_{fill}"``); ``None``: ``("expected", "detected")`` with a detection head,
        ``("detected",)`` without.
    train_size
        Train on a random subset of cells (fraction or number); all cells are imputed.
    model
        A fitted :class:`~scdeepimpute.DeepImpute` to use instead of training one; the training arguments
        (hyperparameters, ``preset``, ``genes``, ``train_size``, ``random_state``, ``strategy``) must then be
        left at their defaults (``ValueError`` otherwise).
    check_counts
        Raise (instead of warn) when the input holds non-integer values; negative, NaN or infinite values
        always raise ``ValueError``.
    n_jobs
        TensorFlow threads (only effective before TensorFlow starts); ``None`` keeps its default.
    strategy
        Train on several devices (e.g. ``"mirrored"``: every visible GPU), as in
        :meth:`DeepImpute.fit <scdeepimpute.DeepImpute.fit>`; in-memory input only, not with ``model=``.
    random_state
        Seed; the same seed on the same machine gives the same result.
    batch_key
        Column of ``adata.obs`` naming each cell's batch: batch-aware training, as in
        :meth:`DeepImpute.fit <scdeepimpute.DeepImpute.fit>` (in-memory input only). With ``model=``, leave it
        ``None`` (the model's own key is read from ``adata.obs``) or give the model's key.
    batch
        With batches: ``None`` imputes each cell for its own batch; a batch name imputes every cell as if measured
        in that reference batch, to lessen the batch effect in the imputed values (see
        :meth:`DeepImpute.predict <scdeepimpute.DeepImpute.predict>`).
    copy
        Return a modified copy instead of writing to ``adata``.

    Returns
    -------
    ``None`` if ``copy=False``, else a new :class:`~anndata.AnnData`. Sets:

    ``adata.layers[key_added]`` : :class:`numpy.ndarray` (float32)
        Imputed counts, same shape as the input (a lazy dask array for dask input).
    ``adata.layers[f"{key_added}_detected"]`` : :class:`numpy.ndarray` (float32)
        Value-if-detected fill (models with a detection head).
    ``adata.var[f"{key_added}_target"]`` : bool
        Whether the gene was imputed.
    ``adata.var[f"{key_added}_block"]`` : int
        Sub-network of the gene (-1 if not imputed).
    ``adata.var[f"{key_added}_reliability"]`` : float
        With a neighbourhood (``neighbors > 0``): the gene's MSE (log1p, lower is better) estimated from the
        non-zeros hidden inside the fit, shrunk toward genes of similar spread and detection (at most 10 entries
        per gene are too few alone); NaN where the gene had none (fewer than 10 non-zeros, or not imputed).
        Keep the genes imputed well with e.g. ``adata.var[f"{key_added}_reliability"] <= t``; see
        :func:`scdeepimpute.pl.reliability`.
    ``adata.uns[key_added]`` : dict
        ``params``, training summary (``epochs``, ``loss``,
        ``val_loss``, ``best_epoch``), timing; with a
        neighbourhood also ``self_estimate``: the masked MSE and Pearson r (log1p, value if detected) on the
        non-zeros hidden inside the fit (``n_masked``, ``scheme``) and the ``neighbor_weight`` chosen there, an
        estimate of the accuracy on these data. With batches also ``params["batch_key"]``, ``batches`` (the
        fitted batch names) and ``batch`` (the reference batch imputed for, or ``"own"``).

    Examples
    --------
    >>> import scanpy as sc
    >>> import scdeepimpute as sdi
    >>> adata = sdi.datasets.example()
    >>> sdi.pp.deepimpute(adata, max_epochs=5)  # doctest: +SKIP
    >>> sc.pp.normalize_total(adata, layer="imputed")  # doctest: +SKIP
    """
    start = logg.info("running DeepImpute")
    t0 = time.perf_counter()
    pretrained = model is not None
    if pretrained:
        _refuse_training_arguments(
            hyperparameters, train_size=train_size, genes=genes, strategy=strategy, preset=preset, seed=random_state
        )
    if fills is not None:
        fills = (fills,) if isinstance(fills, str) else tuple(fills)
        if not fills or len(set(fills)) != len(fills):
            msg = f"`fills` must name at least one fill, each once; got {fills!r}."
            raise ValueError(msg)
    if key_added == layer:
        msg = f"key_added={key_added!r} is the input layer; choose another name so the raw counts are kept."
        raise ValueError(msg)
    if pretrained and batch_key is not None and batch_key != model.batch_key_:
        msg = f"batch_key={batch_key!r} differs from the model's ({model.batch_key_!r}); leave it out with model=."
        raise ValueError(msg)
    fit_batches = None
    if not pretrained and batch_key is not None:
        from ._batches import fit_codes

        fit_batches = (batch_key, *fit_codes(adata, batch_key))
    X, names = counts_and_names(adata, layer=layer, strict=check_counts)

    from ._backend import set_threads

    set_threads(n_jobs)
    if strategy is not None and is_dask(X):
        msg = (
            "strategy applies to training on in-memory data; for dask input, fit a model with "
            "DeepImpute.fit(adata, strategy=...) and pass it as model=."
        )
        raise ValueError(msg)
    if batch_key is not None and is_dask(X):
        msg = "batch_key is not supported for dask input yet; load the data into memory."
        raise ValueError(msg)
    if model is None:
        model = DeepImpute(preset=preset, random_state=random_state, **hyperparameters)
        # now, not after training
        check_fills(() if fills is None else fills, policy, detection_head=model.params["detection_head"])
        if is_dask(X):  # validates the chunking; only the training cells are read (and checked)
            from .dask import fit as fit_dask

            fit_dask(model, X, var_names=names, genes=genes, train_size=train_size, check_counts=check_counts)
        else:  # X was checked above: the unchecked fit
            model._fit_matrix(
                X,
                names,
                genes=genes,
                train_size=train_size,
                check_counts=check_counts,
                progress=None,
                strategy=strategy,
                batches=fit_batches,
            )
    from ._batches import batch_info, predict_codes

    own, target = predict_codes(model, adata, adata.n_obs, batch)
    if target is not None and is_dask(X):
        msg = "a model fitted with batches cannot impute dask input yet; load the data into memory."
        raise ValueError(msg)
    fills = default_fills(model.params["detection_head"]) if fills is None else fills
    check_fills(fills, policy, detection_head=model.params["detection_head"])
    if is_dask(X):  # lazy layers: the model's impute mapped over row chunks
        from .dask import impute as impute_dask

        result = impute_dask(model, X, var_names=names, policy=policy, fills=fills, check_counts=check_counts)
    else:
        result = model._impute_matrix(X, names, policy=policy, fills=fills, own=own, target=target)
    layer_of = output_names(fills, key_added)
    outputs = list(layer_of.values())

    # everything is computed: only now touch adata, so an error above leaves it unchanged
    if copy:
        adata = adata.copy()
    elif adata.is_view:
        adata._init_as_actual(adata.copy())
    for name in outputs:
        if name in adata.layers:
            logg.warning(f"overwriting existing layer {name!r}")
    for fill, name in layer_of.items():
        adata.layers[name] = result[fill]
    block_of = np.full(adata.n_vars, -1, dtype=np.int64)
    for k, block in enumerate(model.blocks_):
        found = adata.var_names.get_indexer(model.var_names_[block])  # by name: a pre-trained model may differ
        block_of[found[found >= 0]] = k
    adata.var[f"{key_added}_target"] = block_of >= 0
    adata.var[f"{key_added}_block"] = block_of
    calibration = model.calibration_
    if calibration is not None:
        from ._neighbors import CALIBRATION_SCHEME

        reliability = np.full(adata.n_vars, np.nan)
        found = adata.var_names.get_indexer(model.var_names_)
        reliability[found[found >= 0]] = calibration["gene_mse"][found >= 0]
        adata.var[f"{key_added}_reliability"] = reliability
    history = model.history_.to_dict()
    adata.uns[key_added] = {
        "params": {
            "layer": "X" if layer is None else layer,
            "preset": model.preset,
            "policy": policy,
            "random_state": model.random_state,
            "train_size": "all" if train_size is None else train_size,
            "pretrained": pretrained,
            **model.params,
        },
        "n_targets": int((block_of >= 0).sum()),
        "n_blocks": len(model.blocks_),
        "epochs": history["epochs"],
        "best_epoch": history["best_epoch"],
        "loss": history["loss"],
        "val_loss": history["val_loss"],
        "layers": outputs,
        "time_s": float(time.perf_counter() - t0),
        "version": version("scdeepimpute"),
    }
    if model.batch_key_ is not None:
        adata.uns[key_added]["params"]["batch_key"] = model.batch_key_
        adata.uns[key_added]["batches"] = batch_info(model)["batches"]
        adata.uns[key_added]["batch"] = "own" if batch is None else batch
    if calibration is not None:
        adata.uns[key_added]["self_estimate"] = {
            "masked_mse": calibration["blend_mse"],
            "masked_pearson": calibration["blend_pearson"],
            "n_masked": calibration["n_entries"],
            "neighbor_weight": calibration["neighbor_weight"],
            "scheme": CALIBRATION_SCHEME,
        }
    var_columns = ", ".join(
        repr(f"{key_added}_{c}") for c in ("target", "block", "reliability")[: 2 + (calibration is not None)]
    )
    logg.info(
        "    finished",
        time=start,
        deep=f"added\n    {', '.join(repr(o) for o in outputs)} (adata.layers)\n"
        f"    {var_columns} (adata.var)\n    {key_added!r} (adata.uns)",
    )
    return adata if copy else None


def _refuse_training_arguments(hyperparameters: dict, *, train_size, genes, strategy, preset, seed) -> None:
    """``ValueError`` naming every argument given with ``model=`` that only applies to training."""
    given = [k for k, v in hyperparameters.items() if v is not None]
    given += [k for k, v in (("train_size", train_size), ("genes", genes), ("strategy", strategy)) if v is not None]
    # a value equal to the default cannot be told from "not given", and is harmless
    given += [k for k, v, default in (("preset", preset, "default"), ("random_state", seed, 0)) if v != default]
    if given:
        msg = (
            f"model= is a trained model (pre-trained); {', '.join(given)} only apply when training: "
            "leave them out, or train a new model without model=."
        )
        raise ValueError(msg)
