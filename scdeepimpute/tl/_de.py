"""The paper's differential-expression benchmark: t-test DE calls scored against known DE genes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from sklearn import metrics

from .. import _logging as logg
from ._cluster import _work_copy

if TYPE_CHECKING:
    from anndata import AnnData


def de_scores(  # noqa: PLR0913
    adata: AnnData,
    *,
    layer: str | None = None,
    groupby: str = "group",
    truth_prefix: str = "is_de_",
    n_genes: int = 500,
    unranked: Literal["zero", "drop"] = "zero",
    rankby_abs: bool = False,
) -> dict[str, object]:
    """ROC AUC of t-test DE calls against known DE genes (paper Fig. 5c).

    On a copy of ``layer`` (counts scale): :func:`scanpy.pp.normalize_total` (1e4) →
    :func:`~scanpy.pp.log1p` → :func:`scanpy.tl.rank_genes_groups` (``method="t-test"``, one group vs the
    rest, Benjamini-Hochberg). For each group the top ``n_genes`` genes are kept and scored
    ``1 - pvals_adj``; the (group, gene) pairs of all groups are pooled and scored with
    :func:`sklearn.metrics.roc_auc_score` against ``var[f'{truth_prefix}{group}']``.

    Genes outside a group's top list: with ``unranked="zero"`` (default) they are kept with score 0, so
    every (group, gene) pair counts and a method cannot gain by ranking few genes; with
    ``unranked="drop"`` only the ranked pairs are scored, as in the authors' ``plot_DEGs.py``.
    ``rankby_abs=False`` ranks by the t statistic (up-regulated genes first), scanpy's default and the
    authors' setting.

    Parameters
    ----------
    adata
        Annotated data with true DE flags in ``var`` (e.g. from :func:`scdeepimpute.datasets.simulate`).
    layer
        Layer to test (counts scale); ``None`` uses ``X``.
    groupby
        ``obs`` column with the groups.
    truth_prefix
        Prefix of the boolean ``var`` columns flagging DE genes per group.
    n_genes
        Genes kept per group.
    unranked
        ``"zero"`` or ``"drop"`` (see above).
    rankby_abs
        Rank by the absolute t statistic.

    Returns
    -------
    dict with ``auc`` (pooled), ``auc_per_group`` (dict), ``fpr`` and ``tpr`` (ROC curve arrays),
    ``table`` (:class:`pandas.DataFrame` with ``group``, ``gene``, ``score``, ``is_de``, ``ranked``) and
    ``params``.

    Examples
    --------
    >>> import scdeepimpute as sdi
    >>> adata = sdi.datasets.simulate(n_obs=300, n_vars=500, group_prob=[0.5, 0.5], random_state=0)
    >>> res = sdi.tl.de_scores(adata, n_genes=100)
    >>> 0.5 < res["auc"] <= 1
    True
    """
    import scanpy as sc

    if unranked not in ("zero", "drop"):
        msg = f"`unranked` must be 'zero' or 'drop', got {unranked!r}."
        raise ValueError(msg)
    groups = pd.Series(adata.obs[groupby]).astype("category")
    names = [str(g) for g in groups.cat.categories]
    missing = [f"{truth_prefix}{g}" for g in names if f"{truth_prefix}{g}" not in adata.var]
    if missing:
        msg = (
            f"no true DE flags for groups: {missing} not in adata.var "
            f"(expected boolean columns '{truth_prefix}<group>')."
        )
        raise KeyError(msg)
    start = logg.info(f"DE t-test on {'X' if layer is None else layer!r} ({len(names)} groups)")
    work = _work_copy(adata, layer)
    work.obs[groupby] = groups.to_numpy()
    sc.pp.normalize_total(work, target_sum=1e4)
    sc.pp.log1p(work)
    n_keep = int(min(n_genes, work.n_vars))
    sc.tl.rank_genes_groups(
        work,
        groupby,
        method="t-test",
        corr_method="benjamini-hochberg",
        n_genes=n_keep,
        rankby_abs=rankby_abs,
    )
    rg = work.uns["rank_genes_groups"]
    frames = []
    for g in names:
        ranked = pd.Series(1.0 - np.asarray(rg["pvals_adj"][g], dtype=np.float64), index=np.asarray(rg["names"][g]))
        ranked = ranked.fillna(0.0)  # NaN p-values (constant genes) count as uncalled
        truth = adata.var[f"{truth_prefix}{g}"].astype(bool)
        score = pd.Series(0.0, index=adata.var_names)
        score[ranked.index] = ranked.to_numpy()
        is_ranked = adata.var_names.isin(ranked.index)
        frames.append(
            pd.DataFrame(
                {
                    "group": g,
                    "gene": adata.var_names,
                    "score": score.to_numpy(),
                    "is_de": truth.to_numpy(),
                    "ranked": is_ranked,
                }
            )
        )
    table = pd.concat(frames, ignore_index=True)
    used = table if unranked == "zero" else table[table["ranked"]]

    def _auc(df: pd.DataFrame) -> float:
        if df["is_de"].nunique() < 2:
            return float("nan")
        return float(metrics.roc_auc_score(df["is_de"], df["score"]))

    fpr, tpr, _ = (
        metrics.roc_curve(used["is_de"], used["score"]) if used["is_de"].nunique() == 2 else (np.zeros(0),) * 3
    )
    out = {
        "auc": _auc(used),
        "auc_per_group": {g: _auc(used[used["group"] == g]) for g in names},
        "fpr": fpr,
        "tpr": tpr,
        "table": table,
        "params": {
            "layer": "X" if layer is None else layer,
            "groupby": groupby,
            "n_genes": n_keep,
            "unranked": unranked,
            "rankby_abs": rankby_abs,
            "method": "t-test",
            "corr_method": "benjamini-hochberg",
        },
    }
    logg.info(f"    finished: AUC {out['auc']:.3f}", time=start)
    return out
