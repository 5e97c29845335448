"""Gene transfer: a fitted model imputes data whose genes differ from those it was trained on."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import sparse

from . import _logging as logg

if TYPE_CHECKING:
    from ._fills import Policy
    from ._model import DeepImpute


def impute_transfer(
    model: DeepImpute, X, names: pd.Index, *, policy: Policy, fills, own=None, target=None
) -> dict[str, np.ndarray]:
    """Impute ``X`` with ``model`` when its genes differ from the training genes, aligning them by name.

    Genes the model reads but ``data`` lacks are treated as zero (warning with their number; an error when more
    than the model's ``max_missing_fraction`` are missing). Genes of ``data`` unknown to the model pass through
    unchanged. ``own``/``target``: the cells' batch codes, as in ``DeepImpute._impute_matrix``.
    """
    if not names.is_unique:
        msg = "var_names of `data` are not unique; call adata.var_names_make_unique() first."
        raise ValueError(msg)
    position = names.get_indexer(model.var_names_)  # for every model gene, its column in data or -1
    used = model.layout_.columns
    missing = int((position[used] < 0).sum())
    if missing > model.max_missing_fraction * used.size:
        msg = (
            f"{missing} of the {used.size} genes the model reads are missing from `data` "
            f"(more than {model.max_missing_fraction:.0%}); the model does not fit these data."
        )
        raise ValueError(msg)
    if missing:
        logg.warning(f"{missing} of the {used.size} genes the model reads are missing from `data`; using 0 for them.")
    present = np.flatnonzero(position >= 0)
    select = sparse.csr_matrix(
        (np.ones(present.size, np.float32), (position[present], present)), shape=(names.size, model.var_names_.size)
    )
    aligned = X @ select  # cells x model genes, zeros where missing
    totals = np.asarray(X.sum(axis=1, dtype=np.float64)).ravel()  # "lognorm" normalises by the data's own genes
    result = model._impute_matrix(
        aligned, model.var_names_, policy=policy, fills=fills, own=own, target=target, totals=totals
    )
    out = {}
    for fill, values in result.items():
        # always a new array: for dense float32 input dense_rows(X) would be the caller's own matrix
        full = X.toarray().astype(np.float32, copy=False) if sparse.issparse(X) else np.array(X, dtype=np.float32)
        if fill == "lognorm":
            from ._fills import log_normalize

            full = log_normalize(full, totals)
        full[:, position[present]] = values[:, present]
        out[fill] = full
    return out
