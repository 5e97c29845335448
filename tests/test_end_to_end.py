"""End to end on real data: imputation must recover masked non-zeros better than leaving them at zero."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
from scipy import sparse

import scdeepimpute as sdi

from .conftest import shared_file


def _mask_nonzeros(X: sparse.csr_matrix, n: int, seed: int):
    """Set ``n`` random non-zero entries to zero; return the masked matrix, their positions and true values."""
    rng = np.random.default_rng(seed)
    coo = X.tocoo()
    pick = rng.choice(coo.nnz, size=n, replace=False)
    rows, cols, truth = coo.row[pick], coo.col[pick], coo.data[pick]
    masked = X.tolil(copy=True)
    masked[rows, cols] = 0
    return masked.tocsr(), rows, cols, truth


def _masked_errors(adata: ad.AnnData, n_mask: int, **kwargs):
    masked, rows, cols, truth = _mask_nonzeros(adata.X.tocsr(), n_mask, seed=0)
    adata = ad.AnnData(masked, var=adata.var[[]].copy())
    sdi.pp.deepimpute(adata, **kwargs)
    truth = np.log1p(truth)
    errors = {"zeros": float(np.mean(truth**2))}
    for key in ("imputed", "imputed_detected"):
        if key in adata.layers:
            errors[key] = float(np.mean((np.log1p(adata.layers[key][rows, cols]) - truth) ** 2))
    return errors


def test_bundled_example_end_to_end():
    adata = sdi.datasets.example()
    assert adata.shape == (2100, 886)
    assert "cell_type" in adata.obs
    errors = _masked_errors(adata, 400, max_epochs=15, random_state=0)
    # the value-if-detected fill must clearly beat leaving the masked counts at zero
    assert errors["imputed_detected"] < 0.5 * errors["zeros"], errors
    assert errors["imputed"] < errors["zeros"], errors


@pytest.mark.shared
def test_mouse1m_slice_paper_preset():
    full = ad.read_h5ad(shared_file("mouse1m_10k", "mouse1m_10k.h5ad"))
    adata = full[:2000].copy()
    adata.var_names_make_unique()
    adata = adata[:, np.asarray((adata.X > 0).mean(0)).ravel() >= 0.05].copy()
    errors = _masked_errors(adata, 300, preset="paper", max_epochs=30, min_vmr=0.0, learning_rate=1e-3)
    assert errors["imputed"] < 0.5 * errors["zeros"], errors
