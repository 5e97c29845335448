"""Figures of the paper's evaluation (Figs. 2, 4, 5), in matplotlib; every function returns its figure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from ..tl._masking import values_at

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _grid(n: int, *, ncols: int, size: float = 3.2, ax: Axes | None = None):
    import matplotlib.pyplot as plt

    if ax is not None:
        if n != 1:
            msg = "`ax` can only be given for a single panel."
            raise ValueError(msg)
        return ax.figure, [ax]
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    axes = axes.ravel()
    for extra in axes[n:]:
        extra.set_visible(False)
    return fig, list(axes[:n])


def masked_scatter(
    adata: AnnData,
    *,
    layers: str | Sequence[str] = "imputed",
    mask_key: str = "masked",
    kind: Literal["hexbin", "scatter"] = "hexbin",
    ncols: int = 4,
    ax: Axes | None = None,
) -> Figure:
    """Truth vs imputed value of every masked entry, one panel per layer (paper Fig. 2a).

    Both axes are ``log1p`` counts; each panel's title gives the MSE and Pearson's r
    (:func:`scdeepimpute.tl.masked_scores`).

    Parameters
    ----------
    adata
        Annotated data after :func:`scdeepimpute.tl.mask` and imputation.
    layers
        Layers with imputed counts.
    mask_key
        ``uns`` key of the mask.
    kind
        ``"hexbin"`` (log-scaled density) or ``"scatter"``.
    ncols
        Panels per row.
    ax
        Axes to draw a single panel into.

    Returns
    -------
    The :class:`~matplotlib.figure.Figure`.

    Examples
    --------
    >>> import anndata as ad
    >>> import scdeepimpute as sdi
    >>> adata = sdi.datasets.simulate(n_obs=200, n_vars=300, random_state=0)
    >>> sdi.tl.mask(adata)
    >>> adata.layers["nzmean"] = sdi.tl.impute_nzmean(ad.AnnData(adata.layers["masked"]))
    >>> fig = sdi.pl.masked_scatter(adata, layers=["masked", "nzmean"])
    """
    from ..tl import masked_scores

    layers = [layers] if isinstance(layers, str) else list(layers)
    m = adata.uns[mask_key]
    truth = np.log1p(np.asarray(m["values"], dtype=np.float64))
    fig, axes = _grid(len(layers), ncols=ncols, ax=ax)
    hi = float(truth.max()) if truth.size else 1.0
    for a, layer in zip(axes, layers, strict=True):
        X = adata.X if layer in (None, "X") else adata.layers[layer]
        imp = np.log1p(np.clip(values_at(X, np.asarray(m["obs_idx"]), np.asarray(m["var_idx"])), 0, None))
        hi = max(hi, float(imp.max()) if imp.size else 0.0)
        if kind == "hexbin":
            a.hexbin(truth, imp, gridsize=40, bins="log", mincnt=1, cmap="viridis")
        else:
            a.scatter(truth, imp, s=3, alpha=0.3, rasterized=True)
        s = masked_scores(adata, layer=layer, mask_key=mask_key)
        a.set_title(f"{layer}\nMSE {s['mse']:.3f}, r {s['pearson']:.3f}", fontsize=9)
        a.set_xlabel("truth, log1p")
        a.set_ylabel("imputed, log1p")
    for a in axes:
        a.plot([0, hi], [0, hi], color="0.5", lw=0.8, ls="--")
        a.set_xlim(0, hi * 1.02)
        a.set_ylim(0, hi * 1.02)
    fig.tight_layout()
    return fig


def masked_mse(
    scores: Mapping[str, Mapping[str, object]],
    *,
    axis: Literal["gene", "cell", "both"] = "both",
    ax: Axes | None = None,
) -> Figure:
    """Distributions of the per-gene and per-cell MSE by method (paper Fig. 2b).

    Parameters
    ----------
    scores
        Method → output of :func:`scdeepimpute.tl.masked_scores` (or :func:`~scdeepimpute.tl.masked_metrics`).
    axis
        ``"gene"``, ``"cell"`` or ``"both"`` (two panels).
    ax
        Axes for a single panel.

    Returns
    -------
    The :class:`~matplotlib.figure.Figure`.

    Examples
    --------
    >>> import scdeepimpute as sdi
    >>> adata = sdi.datasets.simulate(n_obs=200, n_vars=300, random_state=0)
    >>> sdi.tl.mask(adata)
    >>> fig = sdi.pl.masked_mse({"none": sdi.tl.masked_scores(adata, layer="masked")})
    """
    which = ["gene", "cell"] if axis == "both" else [axis]
    fig, axes = _grid(len(which), ncols=2, size=max(3.2, 0.8 * len(scores) + 1.5), ax=ax)
    names = list(scores)
    for a, w in zip(axes, which, strict=True):
        data = []
        for n in names:
            v = np.asarray(scores[n][f"mse_per_{w}"], dtype=np.float64)
            data.append(v[np.isfinite(v)])
        a.boxplot(data, showfliers=False)
        a.set_xticks(range(1, len(names) + 1), names, rotation=45, ha="right")
        a.set_ylabel(f"MSE per {w} (log1p)")
        a.set_title(f"per {w}", fontsize=9)
    fig.tight_layout()
    return fig


def metric_bars(
    df: pd.DataFrame,
    *,
    metrics: Sequence[str] | None = None,
    ncols: int = 4,
) -> Figure:
    """One bar chart per metric with one bar per method, from :func:`scdeepimpute.tl.compare`.

    Parameters
    ----------
    df
        Tidy table with ``method``, ``metric``, ``value`` (and optionally ``dataset``: bars grouped by it).
    metrics
        Metrics to show (default: all, in table order).
    ncols
        Panels per row.

    Returns
    -------
    The :class:`~matplotlib.figure.Figure`.

    Examples
    --------
    >>> import pandas as pd
    >>> import scdeepimpute as sdi
    >>> df = pd.DataFrame({"method": ["a", "b"], "metric": ["ari", "ari"], "value": [0.5, 0.9]})
    >>> fig = sdi.pl.metric_bars(df)
    """
    metrics = list(dict.fromkeys(df["metric"])) if metrics is None else list(metrics)
    fig, axes = _grid(len(metrics), ncols=ncols)
    methods = list(dict.fromkeys(df["method"]))
    datasets = list(dict.fromkeys(df["dataset"])) if "dataset" in df else [None]
    width = 0.8 / len(datasets)
    x = np.arange(len(methods))
    for a, met in zip(axes, metrics, strict=True):
        sub = df[df["metric"] == met]
        for i, ds in enumerate(datasets):
            part = sub if ds is None else sub[sub["dataset"] == ds]
            vals = part.set_index("method")["value"].reindex(methods).to_numpy(dtype=np.float64)
            a.bar(x + (i - (len(datasets) - 1) / 2) * width, vals, width=width, label=ds)
        a.set_xticks(x, methods, rotation=45, ha="right")
        a.set_title(met, fontsize=9)
    if datasets != [None]:
        axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def umap_panels(
    adata: AnnData,
    *,
    keys: Sequence[str],
    color: str,
    ncols: int = 4,
    size: float = 3.0,
) -> Figure:
    """UMAPs of several runs of :func:`scdeepimpute.tl.cluster` side by side, coloured by ``obs[color]``.

    Parameters
    ----------
    adata
        Annotated data with ``obsm[f'X_umap_{key}']`` for each key.
    keys
        Run names (layer names or ``key_added``).
    color
        Categorical ``obs`` column (e.g. the known labels or ``f'leiden_{key}'``).
    ncols
        Panels per row.
    size
        Panel size in inches.

    Returns
    -------
    The :class:`~matplotlib.figure.Figure`.

    Examples
    --------
    >>> import scdeepimpute as sdi
    >>> adata = sdi.datasets.simulate(n_obs=200, n_vars=500, group_prob=[0.5, 0.5], random_state=0)
    >>> sdi.tl.cluster(adata, labels_key="group")
    >>> fig = sdi.pl.umap_panels(adata, keys=["X"], color="group")
    """
    import matplotlib.pyplot as plt

    cats = pd.Series(adata.obs[color]).astype("category")
    codes = cats.cat.codes.to_numpy()
    cmap = plt.get_cmap("tab10" if len(cats.cat.categories) <= 10 else "tab20")
    fig, axes = _grid(len(keys), ncols=ncols, size=size)
    for a, key in zip(axes, keys, strict=True):
        emb = np.asarray(adata.obsm[f"X_umap_{key}"])
        a.scatter(emb[:, 0], emb[:, 1], c=cmap(codes % cmap.N), s=2, rasterized=True)
        a.set_title(key, fontsize=9)
        a.set_xticks([])
        a.set_yticks([])
    handles = [
        plt.Line2D([], [], marker="o", ls="", color=cmap(i % cmap.N), label=str(c))
        for i, c in enumerate(cats.cat.categories)
    ]
    axes[-1].legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5), frameon=False)
    fig.tight_layout()
    return fig


def de_roc(results: Mapping[str, Mapping[str, object]], *, ax: Axes | None = None) -> Figure:
    """ROC curves of the DE benchmark (paper Fig. 5c), one line per method, AUC in the legend.

    Parameters
    ----------
    results
        Method → output of :func:`scdeepimpute.tl.de_scores`.
    ax
        Axes to draw into.

    Returns
    -------
    The :class:`~matplotlib.figure.Figure`.

    Examples
    --------
    >>> import scdeepimpute as sdi
    >>> adata = sdi.datasets.simulate(n_obs=200, n_vars=300, group_prob=[0.5, 0.5], random_state=0)
    >>> fig = sdi.pl.de_roc({"raw": sdi.tl.de_scores(adata, n_genes=50)})
    """
    fig, (a,) = _grid(1, ncols=1, size=4.0, ax=ax)
    for name, r in results.items():
        a.step(r["fpr"], r["tpr"], where="post", label=f"{name} (AUC {r['auc']:.3f})")
    a.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls="--")
    a.set_xlabel("false positive rate")
    a.set_ylabel("true positive rate")
    a.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig
