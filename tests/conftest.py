from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import anndata as ad
import numpy as np
import pytest
import scanpy as sc
from scipy import sparse

SHARED = Path(__file__).resolve().parents[2] / "shared"
SHARED_DATA = SHARED / "data"

sc.settings.verbosity = 0

#: Small, fast hyperparameters for unit tests (the method is the same, only smaller).
FAST = {"hidden_units": 16, "max_epochs": 3, "subset_size": 16, "batch_size": 32}


def shared_file(*parts: str) -> Path:
    """Path into ../shared/data, or skip the test when the checkout has no ../shared."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not available (tests that read ../shared skip without it)")
    return path


def make_counts(n_cells: int = 120, n_genes: int = 40, *, seed: int = 0, n_types: int = 3) -> np.ndarray:
    """Correlated counts: a few cell types with their own gene means, Poisson-Gamma noise, many zeros."""
    rng = np.random.default_rng(seed)
    types = rng.integers(n_types, size=n_cells)
    base = rng.gamma(0.6, 2.0, size=n_genes)
    fold = rng.lognormal(0.0, 1.0, size=(n_types, n_genes))
    size = rng.lognormal(0.0, 0.3, size=n_cells)
    mu = base[None, :] * fold[types] * size[:, None]
    return rng.poisson(rng.gamma(2.0, mu / 2.0)).astype(np.float32)


@pytest.fixture
def counts() -> np.ndarray:
    return make_counts()


@pytest.fixture
def adata(counts) -> ad.AnnData:
    a = ad.AnnData(sparse.csr_matrix(counts))
    a.var_names = [f"gene{i}" for i in range(a.n_vars)]
    a.obs_names = [f"cell{i}" for i in range(a.n_obs)]
    return a
