"""Tools: the paper's evaluation (masking accuracy, clustering, DE, RNA-FISH) and method comparison."""

from __future__ import annotations

from ._cluster import cluster, clustering_metrics, clustering_scores
from ._compare import compare
from ._de import de_scores
from ._dropout_curve import fit_dropout_curve
from ._fish import fish_compare, gapdh_normalize, gini
from ._masking import (
    MaskResult,
    dropout_mask,
    mask,
    mask_counts,
    masked_metrics,
    masked_scores,
)
from ._mcv import mcv_scores, molecular_split
from ._methods import impute_deepimpute, impute_knn, impute_magic, impute_none, impute_nzmean
from ._null import corr_threshold, null_check, permute_genes

__all__ = [
    "MaskResult",
    "cluster",
    "clustering_metrics",
    "clustering_scores",
    "compare",
    "corr_threshold",
    "de_scores",
    "dropout_mask",
    "fish_compare",
    "fit_dropout_curve",
    "gapdh_normalize",
    "gini",
    "impute_deepimpute",
    "impute_knn",
    "impute_magic",
    "impute_none",
    "impute_nzmean",
    "mask",
    "mask_counts",
    "masked_metrics",
    "masked_scores",
    "mcv_scores",
    "molecular_split",
    "null_check",
    "permute_genes",
]
