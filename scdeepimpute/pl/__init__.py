"""Plots of the paper's evaluation (matplotlib; each function returns its figure, nothing is shown)."""

from __future__ import annotations

from ._benchmark import de_roc, masked_mse, masked_scatter, metric_bars, umap_panels
from ._null import null_check
from ._reliability import reliability

__all__ = ["de_roc", "masked_mse", "masked_scatter", "metric_bars", "umap_panels"]
__all__ += ["null_check", "reliability"]
