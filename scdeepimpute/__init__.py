"""scdeepimpute: DeepImpute for scanpy and AnnData.

DeepImpute (Arisdakessian et al., Genome Biology 20:211, 2019) imputes dropouts in single-cell
RNA-seq counts with many small neural networks, each predicting a block of genes from the genes
most correlated with them.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from . import dask, datasets, pl, pp, tl
from ._model import DeepImpute

try:
    __version__ = version("scdeepimpute")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["DeepImpute", "__version__", "dask", "datasets", "pl", "pp", "tl"]
