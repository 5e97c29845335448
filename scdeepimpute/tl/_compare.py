"""Run several imputation methods over the same data and score them with the paper's metrics."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from scipy import sparse

from .. import _logging as logg
from .._utils import get_matrix, is_dask
from ._cluster import cluster, clustering_scores
from ._de import de_scores
from ._masking import masked_metrics
from ._mcv import mcv_scores, molecular_split
from ._methods import METHODS, _magic_available

if TYPE_CHECKING:
    from anndata import AnnData

Method = Callable[["AnnData"], np.ndarray]

#: Built-ins that accept ``random_state``.
_SEEDED = {"knn", "magic", "deepimpute"}


def _resolve_methods(methods, random_state: int, method_kwargs: Mapping[str, Mapping] | None) -> dict[str, Method]:
    if isinstance(methods, str):
        methods = [methods]
    if not isinstance(methods, Mapping):
        methods = {m: m for m in methods}
    method_kwargs = method_kwargs or {}
    out: dict[str, Method] = {}
    for name, m in methods.items():
        kw = dict(method_kwargs.get(name, {}))
        if isinstance(m, str):
            if m not in METHODS:
                msg = f"unknown method {m!r}; built-ins are {sorted(METHODS)}, or pass a callable."
                raise ValueError(msg)
            if m == "magic" and not _magic_available():
                logg.warning("skipping 'magic': the `magic` package is not installed (pip install magic-impute)")
                continue
            if m in _SEEDED:
                kw.setdefault("random_state", random_state)
            out[name] = partial(METHODS[m], **kw) if kw else METHODS[m]
        elif callable(m):
            out[name] = partial(m, **kw) if kw else m
        else:
            msg = f"method {name!r} must be a built-in name or a callable, got {type(m).__name__}."
            raise TypeError(msg)
    return out


def compare(  # noqa: PLR0913, PLR0912, PLR0915
    adata: AnnData,
    *,
    methods: Sequence[str] | Mapping[str, str | Method] = ("none", "nzmean", "knn", "magic", "deepimpute"),
    layer: str | None = None,
    mask_key: str | None = None,
    labels_key: str | None = None,
    de: bool | None = None,
    mcv: bool = False,
    truth_prefix: str = "is_de_",
    n_de_genes: int = 500,
    method_kwargs: Mapping[str, Mapping[str, object]] | None = None,
    random_state: int = 0,
    dataset: str | None = None,
    store: bool = False,
    key_added: str = "compare",
    on_error: Literal["raise", "warn"] = "raise",
) -> pd.DataFrame:
    """Compare imputation methods on one dataset with the paper's metrics.

    Each method gets the same input — an AnnData with the counts in ``X`` (the masked counts when
    ``mask_key`` is given) and the same ``obs_names``/``var_names`` — and returns imputed counts of the same
    shape. It is timed (wall clock, imputation only) and then scored:

    * ``mask_key``: MSE and Pearson's r on the masked entries (``log1p``; :func:`masked_metrics`);
    * ``labels_key``: ARI, AMI, FMI and the silhouettes in UMAP and PCA space (``silhouette``,
      ``silhouette_pca``) after :func:`cluster` (Leiden tuned to the number of labels; :func:`clustering_scores`);
    * ``de`` (default: when ``var`` has ``f'{truth_prefix}{group}'`` for every label): DE ROC AUC
      (:func:`de_scores` with ``groupby=labels_key``);
    * ``mcv``: molecular cross-validation. The observed counts (``layer`` when passed, else ``X``: with a
      mask from :func:`mask`, the counts before masking) are split once by :func:`molecular_split`
      (90% / 10%, ``random_state``), every method imputes the train part in a second run, and
      :func:`mcv_scores` gives ``mcv_mse`` (log-normalised space) and ``mcv_poisson`` (Poisson loss).
      Off by default because it doubles the imputation time.

    Built-in methods (by name): ``"none"``, ``"nzmean"`` (zeros → the gene's mean non-zero value),
    ``"knn"`` (kNN smoothing, k=15), ``"magic"`` (skipped with a warning when ``magic`` is not installed),
    ``"deepimpute"`` (:func:`scdeepimpute.pp.deepimpute`). Any callable ``f(adata) -> array`` works too.

    Parameters
    ----------
    adata
        Annotated data.
    methods
        Names of built-ins, or a mapping of display name → built-in name or callable.
    layer
        Counts to impute; default ``layers[mask_key]`` when that layer exists (as :func:`mask` writes it),
        else ``X`` (e.g. a simulation scored on its own dropouts with :func:`dropout_mask`).
    mask_key
        ``uns`` key of a mask from :func:`mask` or :func:`dropout_mask`.
    labels_key
        ``obs`` column with known labels for clustering (and the groups for DE).
    de
        Score DE; ``None`` = when the truth columns exist.
    mcv
        Also score by molecular cross-validation (a second imputation by every method; see above).
    truth_prefix
        Prefix of the boolean ``var`` columns with the true DE genes.
    n_de_genes
        Top genes per group for the DE score.
    method_kwargs
        Method name → extra keyword arguments.
    random_state
        Seed passed to seeded built-ins and to clustering.
    dataset
        Optional value for a ``dataset`` column.
    store
        Also write each method's output to ``adata.layers[f'{key_added}_{name}']`` (and the clustering
        to ``obs``/``obsm`` under that name; see :func:`cluster`).
    key_added
        Prefix for stored layers.
    on_error
        ``"raise"``, or ``"warn"`` to log a failing method and go on.

    Returns
    -------
    Tidy :class:`pandas.DataFrame` with columns ``method``, ``metric``, ``value`` (and ``dataset``);
    metrics include ``time_s`` (of the run on the full input).
    ``df.pivot(index="method", columns="metric", values="value")`` gives one row per method.

    Examples
    --------
    >>> import scdeepimpute as sdi
    >>> adata = sdi.datasets.simulate(n_obs=200, n_vars=300, group_prob=[0.5, 0.5], random_state=0)
    >>> sdi.tl.mask(adata, random_state=0)
    >>> df = sdi.tl.compare(adata, methods=["none", "nzmean"], mask_key="masked")
    >>> sorted(df["metric"].unique())
    ['mse', 'pearson', 'time_s']
    """
    if on_error not in ("raise", "warn"):
        msg = f"`on_error` must be 'raise' or 'warn', got {on_error!r}."
        raise ValueError(msg)
    mask = None
    mcv_layer = layer
    if mask_key is not None:
        if mask_key not in adata.uns or "obs_idx" not in adata.uns[mask_key]:
            msg = f"adata.uns[{mask_key!r}] holds no mask; run scdeepimpute.tl.mask first."
            raise KeyError(msg)
        mask = adata.uns[mask_key]
        if layer is None and mask_key in adata.layers:
            layer = mask_key
    X = get_matrix(adata, layer)
    if is_dask(X):
        X = X.compute()
    X = _float32(X)
    if de is None:
        de = labels_key is not None and all(
            f"{truth_prefix}{g}" in adata.var
            for g in pd.Series(adata.obs[labels_key]).astype("category").cat.categories
        )
    if de and labels_key is None:
        msg = "DE scoring needs the groups: pass `labels_key`."
        raise ValueError(msg)
    funcs = _resolve_methods(methods, random_state, method_kwargs)
    if mcv:
        mcv_train, mcv_test = molecular_split(adata, layer=mcv_layer, random_state=random_state)
        mcv_X = _float32(mcv_train.X)

    rows: list[tuple[str, str, float]] = []
    for name, f in funcs.items():
        start = logg.info(f"compare: running {name!r}")
        ran = _run_or_warn(name, f, X, adata, on_error=on_error)
        if ran is None:
            continue
        outputs, elapsed = ran
        if mcv:
            ran = _run_or_warn(name, f, mcv_X, adata, on_error=on_error, part=" on the MCV train part")
            train_outputs = {} if ran is None else ran[0]
        for out_name, Y in outputs.items():
            rows += _score(
                adata,
                out_name,
                Y,
                elapsed,
                mask=mask,
                labels_key=labels_key,
                de=de,
                truth_prefix=truth_prefix,
                n_de_genes=n_de_genes,
                random_state=random_state,
                store=store,
                key_added=key_added,
            )
            if mcv and out_name in train_outputs:
                m = mcv_scores(train_outputs[out_name], mcv_test)
                rows += [(out_name, "mcv_mse", m["mse"]), (out_name, "mcv_poisson", m["poisson"])]
        logg.info(f"    finished {name!r} ({elapsed:.1f} s imputation)", time=start)

    df = pd.DataFrame(rows, columns=["method", "metric", "value"])
    if dataset is not None:
        df.insert(0, "dataset", dataset)
    return df


def _float32(X):
    return sparse.csr_matrix(X, dtype=np.float32) if sparse.issparse(X) else np.asarray(X, dtype=np.float32)


def _run(name: str, f: Method, X, adata: AnnData) -> tuple[dict[str, np.ndarray], float]:
    """Run method ``f`` on a fresh AnnData holding ``X``: its outputs by display name, and the seconds taken."""
    import anndata as ad

    inp = ad.AnnData(X.copy())
    inp.obs_names = adata.obs_names
    inp.var_names = adata.var_names
    t0 = time.perf_counter()
    result = f(inp)
    elapsed = time.perf_counter() - t0
    outputs = {f"{name}_{k}": v for k, v in result.items()} if isinstance(result, Mapping) else {name: result}
    return {k: _as_dense(k, v, adata.shape) for k, v in outputs.items()}, elapsed


def _run_or_warn(
    name: str, f: Method, X, adata: AnnData, *, on_error: str, part: str = ""
) -> tuple[dict[str, np.ndarray], float] | None:
    """:func:`_run`, or None after a warning when the method fails and ``on_error="warn"``."""
    try:
        return _run(name, f, X, adata)
    except Exception as e:
        if on_error == "raise":
            raise
        logg.warning(f"compare: method {name!r} failed{part}: {type(e).__name__}: {e}")
        return None


def _as_dense(name: str, Y, shape: tuple[int, int]) -> np.ndarray:
    if hasattr(Y, "compute"):
        Y = Y.compute()
    Y = np.asarray(Y.toarray() if sparse.issparse(Y) else Y, dtype=np.float32)
    if Y.shape != tuple(shape):
        msg = f"method {name!r} returned shape {Y.shape}, expected {tuple(shape)}."
        raise ValueError(msg)
    return Y


def _score(  # noqa: PLR0913
    adata: AnnData,
    name: str,
    Y: np.ndarray,
    elapsed: float,
    *,
    mask,
    labels_key: str | None,
    de: bool,
    truth_prefix: str,
    n_de_genes: int,
    random_state: int,
    store: bool,
    key_added: str,
) -> list[tuple[str, str, float]]:
    import anndata as ad

    rows: list[tuple[str, str, float]] = [(name, "time_s", elapsed)]
    if mask is not None:
        obs_idx, var_idx = np.asarray(mask["obs_idx"]), np.asarray(mask["var_idx"])
        m = masked_metrics(mask["values"], Y[obs_idx, var_idx])
        rows += [(name, "mse", m["mse"]), (name, "pearson", m["pearson"])]
    if labels_key is not None or de:
        out_key = f"{key_added}_{name}"
        tmp = ad.AnnData(Y, obs=adata.obs[[labels_key]].copy(), var=adata.var.copy())
        if labels_key is not None:
            cluster(tmp, labels_key=labels_key, random_state=random_state, key_added=out_key)
            for k, v in clustering_scores(tmp, labels_key=labels_key, key=out_key).items():
                rows.append((name, k, v))
        if de:
            res = de_scores(tmp, groupby=labels_key, truth_prefix=truth_prefix, n_genes=n_de_genes)
            rows.append((name, "de_auc", res["auc"]))
        if store and labels_key is not None:
            adata.obs[f"leiden_{out_key}"] = tmp.obs[f"leiden_{out_key}"].to_numpy()
            adata.obsm[f"X_umap_{out_key}"] = tmp.obsm[f"X_umap_{out_key}"]
            adata.obsm[f"X_pca_{out_key}"] = tmp.obsm[f"X_pca_{out_key}"]
            adata.uns[f"cluster_{out_key}"] = tmp.uns[f"cluster_{out_key}"]
    if store:
        adata.layers[f"{key_added}_{name}"] = Y
    return rows
