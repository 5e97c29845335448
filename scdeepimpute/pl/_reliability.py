"""Figure of the per-gene reliability that ``pp.deepimpute`` writes: which genes were imputed well."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .._utils import get_matrix
from ._benchmark import _grid

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.figure import Figure


def reliability(
    adata: AnnData,
    *,
    key: str = "imputed",
    layer: str | None = None,
    threshold: float | None = None,
) -> Figure:
    """Per-gene reliability against the gene's detection rate, and the genes ranked by it.

    The reliability is ``adata.var[f"{key}_reliability"]``: the MSE (log1p) on the non-zeros that
    :func:`scdeepimpute.pp.deepimpute` hid from itself, so *lower is better*. Left panel: each imputed gene's
    reliability against the fraction of cells in which it is detected (log scale). Right panel: the genes
    sorted by it, the curve a cut-off is read from. Genes without a score (not imputed, or fewer than 10
    non-zeros) are left out.

    Parameters
    ----------
    adata
        Annotated data after :func:`scdeepimpute.pp.deepimpute` with a neighbourhood (the default preset).
    key
        ``key_added`` of that call.
    layer
        Layer with the raw counts the detection rate is taken from; ``None`` uses ``X``.
    threshold
        Draw this cut-off on both panels and give the number of genes at or below it.

    Returns
    -------
    The :class:`~matplotlib.figure.Figure`.

    Examples
    --------
    >>> import numpy as np
    >>> import anndata as ad
    >>> import scdeepimpute as sdi
    >>> X = np.random.default_rng(0).poisson(1.0, size=(50, 4)).astype(np.float32)
    >>> adata = ad.AnnData(X)
    >>> adata.var["imputed_reliability"] = [0.05, 0.1, np.nan, 0.4]  # as pp.deepimpute writes it
    >>> fig = sdi.pl.reliability(adata, threshold=0.2)
    """
    column = f"{key}_reliability"
    if column not in adata.var:
        msg = (
            f"adata.var has no {column!r}; run scdeepimpute.pp.deepimpute(adata, key_added={key!r}) with a "
            "neighbourhood (the default preset) first."
        )
        raise KeyError(msg)
    score = adata.var[column].to_numpy(dtype=np.float64)
    X = get_matrix(adata, layer)
    detected = np.asarray((X > 0).sum(axis=0), dtype=np.float64).ravel() / max(adata.n_obs, 1)
    ok = np.isfinite(score)
    if not ok.any():
        msg = f"adata.var[{column!r}] holds no finite score."
        raise ValueError(msg)
    fig, (left, right) = _grid(2, ncols=2)
    left.scatter(detected[ok], score[ok], s=6, alpha=0.5, linewidths=0)
    left.set(xscale="log", xlabel="fraction of cells detected", ylabel="reliability (hidden MSE, log1p)")
    ranked = np.sort(score[ok])
    right.plot(np.arange(1, ranked.size + 1), ranked)
    right.set(xlabel="genes, best first", ylabel="reliability (hidden MSE, log1p)")
    title = f"{ok.sum()} genes scored"
    if threshold is not None:
        for a in (left, right):
            a.axhline(float(threshold), color="0.3", lw=0.8, ls="--")
        title += f", {int((ranked <= threshold).sum())} at or below {threshold:.3g}"
    right.set_title(title, fontsize=9)
    left.set_title("lower is better", fontsize=9)
    fig.tight_layout()
    return fig
