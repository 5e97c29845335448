"""Deprecated alias of :mod:`scdeepimpute.dask`, the out-of-core path (importing it warns).

``from scdeepimpute import experimental as sdx`` keeps working; write ``import scdeepimpute.dask as sdd``.
"""

from __future__ import annotations

import warnings

from ..dask import fit, impute, impute_to_zarr, output_names, read_lazy, store, to_memory

warnings.warn(
    "scdeepimpute.experimental is now scdeepimpute.dask (same functions); "
    "import scdeepimpute.dask instead, the old name will be removed.",
    FutureWarning,
    stacklevel=2,
)

__all__ = ["fit", "impute", "impute_to_zarr", "output_names", "read_lazy", "store", "to_memory"]
