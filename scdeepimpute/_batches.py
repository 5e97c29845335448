"""Batches (``batch_key=``): labels to codes, one-hot covariates, the split balanced over batches.

A model fitted with ``batch_key`` learns each batch as a one-hot covariate beside the library size; the
predictor genes come from correlations pooled within batches (:mod:`scdeepimpute._selection`), the training
and validation cells are drawn within each batch in its share, and the neighbourhood is searched on PCs of
per-batch-centred data (:mod:`scdeepimpute._neighbors`). A cell predicted for another (reference) batch reads its
input genes moved to that batch's mean log1p level.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Fewest training cells a batch may have: it must give validation cells, training cells and a within-batch
#: variance of its own.
MIN_BATCH_CELLS = 10


def batch_labels(adata, batch_key: str) -> pd.Series:
    """``adata.obs[batch_key]`` as strings; ``ValueError`` for a non-AnnData, an unknown key or missing labels."""
    obs = getattr(adata, "obs", None)
    if obs is None:
        msg = f"batch_key={batch_key!r} reads adata.obs: pass an AnnData (a matrix has no obs)."
        raise ValueError(msg)
    if batch_key not in obs.columns:
        available = ", ".join(map(repr, obs.columns[:20])) or "none"
        msg = f"batch_key={batch_key!r} is not a column of adata.obs (columns: {available})."
        raise ValueError(msg)
    values = obs[batch_key]
    missing = int(pd.isna(values).sum())
    if missing:
        msg = f"adata.obs[{batch_key!r}] has {missing} missing (NaN) labels; give every cell a batch."
        raise ValueError(msg)
    return values.astype(str)


def fit_codes(adata, batch_key: str) -> tuple[np.ndarray, list[str]]:
    """Return the batch code of every cell and the sorted batch categories, read from ``adata.obs[batch_key]``."""
    labels = batch_labels(adata, batch_key)
    cat = pd.Categorical(labels)
    return cat.codes.astype(np.int64), [str(c) for c in cat.categories]


def check_batch_sizes(codes: np.ndarray, categories: list[str], batch_key: str) -> None:
    """``ValueError`` naming every batch with fewer than :data:`MIN_BATCH_CELLS` (training) cells."""
    counts = np.bincount(codes, minlength=len(categories))
    small = [f"{categories[b]!r} ({counts[b]})" for b in np.flatnonzero(counts < MIN_BATCH_CELLS)]
    if small:
        msg = (
            f"batch_key={batch_key!r}: batch {', '.join(small)} has fewer than {MIN_BATCH_CELLS} training cells; "
            "merge it with another batch or drop its cells."
        )
        raise ValueError(msg)


def codes_for(categories: list[str], labels, batch_key: str) -> np.ndarray:
    """Codes of ``labels`` among the fitted ``categories``; ``ValueError`` naming batches the model never saw."""
    labels = pd.Index(np.asarray(labels, dtype=str))
    codes = pd.Index(categories).get_indexer(labels)
    if (codes < 0).any():
        unseen = sorted(set(labels[codes < 0]))
        msg = (
            f"batch {', '.join(map(repr, unseen[:5]))} of {batch_key!r} was not seen in fit (fitted batches: "
            f"{', '.join(map(repr, categories))}); predict it as a fitted batch with batch=<category>."
        )
        raise ValueError(msg)
    return codes.astype(np.int64)


def one_hot(codes: np.ndarray, n_batches: int) -> np.ndarray:
    """Cells x batches float64 one-hot matrix of ``codes``."""
    out = np.zeros((codes.size, n_batches), dtype=np.float64)
    out[np.arange(codes.size), codes] = 1.0
    return out


def stratified_cells(codes: np.ndarray, train_size, rng: np.random.Generator) -> np.ndarray:
    """Training cells: every batch gives its share of ``train_size`` (a fraction or number), at least one cell."""
    from ._utils import training_cells

    n = codes.size
    if train_size is None:
        return np.arange(n)
    k = training_cells(n, train_size, rng).size  # validates train_size, and gives the total
    chosen = []
    for b in np.unique(codes):
        members = np.flatnonzero(codes == b)
        take = min(members.size, max(1, round(k * members.size / n)))
        chosen.append(rng.choice(members, size=take, replace=False))
    return np.sort(np.concatenate(chosen))


def stratified_split(codes: np.ndarray, validation_fraction: float, rng: np.random.Generator):
    """Split positions into ``codes`` into validation and training rows, each batch by ``validation_fraction``."""
    val = []
    for b in np.unique(codes):
        members = np.flatnonzero(codes == b)
        n_val = max(1, round(validation_fraction * members.size))
        val.append(rng.permutation(members)[:n_val])
    val_rows = np.sort(np.concatenate(val))
    train_rows = np.setdiff1d(np.arange(codes.size), val_rows)
    return val_rows, train_rows


def predict_codes(model, data, n_cells: int, batch: str | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(own, target)`` batch codes of the cells of ``data`` for a prediction with ``batch``.

    ``own`` are the cells' own batches (from ``data.obs[model.batch_key_]``; ``None`` where ``data`` has no
    such column and ``batch`` is given), ``target`` the batch each cell is predicted for: ``own``, or the
    reference ``batch`` for every cell. Both ``None`` for a model fitted without batches.
    """
    key = model.batch_key_
    if key is None:
        if batch is not None:
            msg = f"batch={batch!r} needs a model fitted with batch_key; this one was fitted without batches."
            raise ValueError(msg)
        return None, None
    obs = getattr(data, "obs", None)
    own = None
    if obs is not None and key in obs.columns:
        own = codes_for(model.batches_, batch_labels(data, key), key)
    elif batch is None:
        where = "adata.obs" if obs is not None else "a matrix (no obs)"
        msg = (
            f"the model was fitted with batch_key={key!r}, which {where} lacks: add the column, or predict every "
            f"cell as one fitted batch with batch=<category> (one of {', '.join(map(repr, model.batches_))})."
        )
        raise ValueError(msg)
    if batch is None:
        return own, own
    target = codes_for(model.batches_, [batch], key)[0]
    return own, np.full(n_cells, target, dtype=np.int64)


def batch_info(model) -> dict:
    """Return what ``adata.uns[key_added]`` records about batches: the key and the fitted categories."""
    return {"batch_key": model.batch_key_, "batches": list(model.batches_ or [])}
