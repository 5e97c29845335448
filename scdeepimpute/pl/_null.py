"""Figure of the null check: what each imputation method invented on data with no structure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ._benchmark import _grid

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

_LABELS = {
    "spurious_corr": "fraction of gene pairs\nwith significant |r|",
    "de_calls_random": "DE genes, random halves",
    "de_calls_kmeans": "DE genes, k-means halves",
    "kmeans_depth_corr": "k-means halves vs depth,\n|Spearman rho|",
}


def null_check(df: pd.DataFrame, *, metrics: Sequence[str] | None = None, ncols: int = 3) -> Figure:
    """Bars of the spurious correlations and DE calls per method, one colour per null kind.

    A dashed line marks each metric's value under the null for raw counts (``null_level``) where it has
    one; the raw counts (``"none"``) are drawn first as the reference.

    Parameters
    ----------
    df
        Output of :func:`scdeepimpute.tl.null_check`.
    metrics
        Metrics to show (default: the spurious correlations and the two DE counts).
    ncols
        Panels per row.

    Returns
    -------
    The :class:`~matplotlib.figure.Figure`.

    Examples
    --------
    >>> import pandas as pd
    >>> import scdeepimpute as sdi
    >>> df = pd.DataFrame(
    ...     {
    ...         "kind": ["permuted"] * 2,
    ...         "method": ["none", "knn"],
    ...         "metric": ["spurious_corr"] * 2,
    ...         "value": [0.001, 0.2],
    ...         "null_level": [0.001] * 2,
    ...     }
    ... )
    >>> fig = sdi.pl.null_check(df)
    """
    missing = {"kind", "method", "metric", "value"} - set(df.columns)
    if missing:
        msg = f"`df` lacks columns {sorted(missing)}; pass the output of scdeepimpute.tl.null_check."
        raise ValueError(msg)
    if metrics is None:
        metrics = [m for m in ("spurious_corr", "de_calls_random", "de_calls_kmeans") if m in set(df["metric"])]
    metrics = list(metrics)
    unknown = [m for m in metrics if m not in set(df["metric"])]
    if unknown:
        msg = f"metrics {unknown} not in the table (it has {sorted(set(df['metric']))})."
        raise ValueError(msg)
    methods = list(dict.fromkeys(df["method"]))
    if "none" in methods:
        methods = ["none", *(m for m in methods if m != "none")]
    kinds = list(dict.fromkeys(df["kind"]))
    fig, axes = _grid(len(metrics), ncols=ncols, size=max(3.2, 0.45 * len(methods) + 1.5))
    width = 0.8 / len(kinds)
    x = np.arange(len(methods))
    for a, met in zip(axes, metrics, strict=True):
        sub = df[df["metric"] == met]
        for i, k in enumerate(kinds):
            vals = sub[sub["kind"] == k].set_index("method")["value"].reindex(methods).to_numpy(dtype=np.float64)
            a.bar(x + (i - (len(kinds) - 1) / 2) * width, vals, width=width, label=k)
        if "null_level" in sub:
            levels = sub["null_level"].dropna().unique()
            for lev in levels:
                a.axhline(float(lev), color="0.3", lw=0.8, ls="--")
        a.set_xticks(x, methods, rotation=45, ha="right")
        a.set_title(_LABELS.get(met, met), fontsize=9)
    axes[0].legend(fontsize=7, title="null", title_fontsize=7)
    fig.tight_layout()
    return fig
