"""The Splat model of Splatter (Zappia et al., Genome Biology 2017): its parameters and its draws, in numpy.

:func:`~scdeepimpute.datasets.simulate` and :func:`~scdeepimpute.datasets.simulate_chunks` (``_simulate.py``) are
the public entry points; this module holds what they share: Splatter's defaults, the named presets, and
:class:`_Model`, which draws genes and cells once and then counts for any range of cells.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import sparse, special

from .._utils import check_random_state

if TYPE_CHECKING:
    from anndata import AnnData

#: Splatter's ``SplatParams`` defaults (``R/AllClasses.R``), under Python names.
SPLAT_DEFAULTS: dict[str, object] = {
    "n_obs": 100,
    "n_vars": 10000,
    "group_prob": (1.0,),
    "mean_shape": 0.6,
    "mean_rate": 0.3,
    "lib_loc": 11.0,
    "lib_scale": 0.2,
    "out_prob": 0.05,
    "out_fac_loc": 4.0,
    "out_fac_scale": 0.5,
    "de_prob": 0.1,
    "de_down_prob": 0.5,
    "de_fac_loc": 0.1,
    "de_fac_scale": 0.4,
    "bcv_common": 0.1,
    "bcv_df": 60.0,
    "dropout_type": "none",
    "dropout_mid": 0.0,
    "dropout_shape": -1.0,
}

#: Named parameter sets; explicit arguments to :func:`simulate` override them.
PRESETS: dict[str, dict[str, object]] = {
    # DeepImpute paper, Methods ("Availability of data and materials") and the authors'
    # ``simulation/splatter_sim.R``: nGenes=4000, batchCells=2000, five groups,
    # dropout.type="experiment", dropout.mid=1, dropout.shape=-0.5.
    "paper": {
        "n_obs": 2000,
        "n_vars": 4000,
        "group_prob": (0.1, 0.1, 0.2, 0.2, 0.4),
        "dropout_type": "experiment",
        "dropout_mid": 1.0,
        "dropout_shape": -0.5,
    },
}


def _lnorm_factors(rng: np.random.Generator, n: int, sel_prob: float, neg_prob: float, loc: float, scale: float):
    """Splatter's ``getLNormFactors``: factors of 1 except for a random selection drawn log-normally.

    A selected factor is ``f ** d`` with ``f ~ LogNormal(loc, scale)`` and ``d = -1`` with probability
    ``neg_prob`` (the direction is flipped where ``f < 1``, so ``neg_prob`` is the probability of a
    factor below one).
    """
    selected = rng.random(n) < sel_prob
    n_sel = int(selected.sum())
    direction = np.where(rng.random(n_sel) < neg_prob, -1.0, 1.0)
    facs = rng.lognormal(loc, scale, n_sel)
    direction[facs < 1] *= -1
    out = np.ones(n)
    out[selected] = facs**direction
    return out


def _per_group(value, n_groups: int, name: str) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if arr.size == 1:
        return np.repeat(arr, n_groups)
    if arr.size != n_groups:
        msg = f"`{name}` has {arr.size} values but there are {n_groups} groups; pass one value or one per group."
        raise ValueError(msg)
    return arr


def _resolve(preset: str | None, given: Mapping[str, object]) -> dict[str, object]:
    params = dict(SPLAT_DEFAULTS)
    if preset is not None:
        if preset not in PRESETS:
            msg = f"unknown preset {preset!r}; choose one of {sorted(PRESETS)} or None (Splatter defaults)."
            raise ValueError(msg)
        params.update(PRESETS[preset])
    params.update({k: v for k, v in given.items() if v is not None})
    return params


class _Model:
    """The gene- and cell-level draws of one simulation (steps 1-4 and the BCV's chi-square of step 6).

    Drawn first, in this order, from the seed's stream; the per-entry draws of steps 6-8 follow, either from
    the same stream (one chunk) or from one child stream per chunk (``chunks``), so a chunked simulation has
    the same genes, groups and library sizes as the unchunked one and only its counts differ.
    """

    def __init__(self, p: dict[str, object], random_state) -> None:
        n_cells, n_genes = int(p["n_obs"]), int(p["n_vars"])
        if n_cells < 1 or n_genes < 1:
            msg = f"need at least one cell and one gene, got n_obs={n_cells}, n_vars={n_genes}."
            raise ValueError(msg)
        probs = np.atleast_1d(np.asarray(p["group_prob"], dtype=np.float64))
        if probs.ndim != 1 or np.any(probs < 0) or probs.sum() <= 0:
            msg = f"`group_prob` must be non-negative with a positive sum, got {probs.tolist()}."
            raise ValueError(msg)
        probs = probs / probs.sum()
        n_groups = probs.size
        if p["dropout_type"] not in ("none", "experiment", "group"):
            msg = f"`dropout_type` must be 'none', 'experiment' or 'group', got {p['dropout_type']!r}."
            raise ValueError(msg)
        self.p, self.probs, self.n_cells, self.n_genes, self.n_groups = p, probs, n_cells, n_genes, n_groups
        self.rng = rng = check_random_state(random_state)

        # 1. groups (splatSimulate), 2. library sizes (splatSimLibSizes)
        self.groups = rng.choice(n_groups, size=n_cells, p=probs)
        self.lib_sizes = rng.lognormal(float(p["lib_loc"]), float(p["lib_scale"]), n_cells)

        # 3. gene means with expression outliers (splatSimGeneMeans)
        self.base_means = rng.gamma(float(p["mean_shape"]), 1.0 / float(p["mean_rate"]), n_genes)
        self.out_facs = _lnorm_factors(
            rng, n_genes, float(p["out_prob"]), 0.0, float(p["out_fac_loc"]), float(p["out_fac_scale"])
        )
        is_outlier = self.out_facs != 1
        self.gene_means = self.base_means.copy()
        self.gene_means[is_outlier] = np.median(self.base_means) * self.out_facs[is_outlier]

        # 4. group DE factors (splatSimGroupDE); a single group gets no DE ("single" mode)
        self.de_facs = np.ones((n_groups, n_genes))
        if n_groups > 1:
            de_p = _per_group(p["de_prob"], n_groups, "de_prob")
            de_down = _per_group(p["de_down_prob"], n_groups, "de_down_prob")
            de_loc = _per_group(p["de_fac_loc"], n_groups, "de_fac_loc")
            de_scale = _per_group(p["de_fac_scale"], n_groups, "de_fac_scale")
            for g in range(n_groups):
                self.de_facs[g] = _lnorm_factors(rng, n_genes, de_p[g], de_down[g], de_loc[g], de_scale[g])

        # 6. (gene part) one chi-square draw per gene for the BCV
        self.bcv_common, bcv_df = float(p["bcv_common"]), float(p["bcv_df"])
        self.bcv_gene = np.sqrt(bcv_df / rng.chisquare(bcv_df, n_genes)) if np.isfinite(bcv_df) else None

        # 8. (cell part) dropout midpoint and shape per cell
        self.mid_c = self.shape_c = None
        if p["dropout_type"] == "experiment":
            mid = np.atleast_1d(np.asarray(p["dropout_mid"], dtype=np.float64))
            shape = np.atleast_1d(np.asarray(p["dropout_shape"], dtype=np.float64))
            if mid.size != 1 or shape.size != 1:
                msg = "dropout_type='experiment' needs a single `dropout_mid` and `dropout_shape`."
                raise ValueError(msg)
            self.mid_c, self.shape_c = np.full(n_cells, mid[0]), np.full(n_cells, shape[0])
        elif p["dropout_type"] == "group":
            self.mid_c = _per_group(p["dropout_mid"], n_groups, "dropout_mid")[self.groups]
            self.shape_c = _per_group(p["dropout_shape"], n_groups, "dropout_shape")[self.groups]

    def chunks(self, chunk_size: int) -> Iterator[tuple[int, int, np.random.Generator]]:
        """``(start, stop, generator)`` per chunk of ``chunk_size`` cells, one child stream each."""
        if int(chunk_size) < 1:
            msg = f"`chunk_size` must be a positive number of cells, got {chunk_size}."
            raise ValueError(msg)
        chunk_size = int(chunk_size)
        starts = range(0, self.n_cells, chunk_size)
        for start, rng in zip(starts, self.rng.spawn(len(starts)), strict=True):
            yield start, min(start + chunk_size, self.n_cells), rng

    def rows(self, start: int, stop: int, rng: np.random.Generator) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
        """Observed and true counts (CSR, float32) of cells ``start:stop``: steps 5-8."""
        # 5. cell means (splatSimGroupCellMeans): cells x genes
        cell_means = self.gene_means[None, :] * self.de_facs[self.groups[start:stop]]
        cell_means /= cell_means.sum(axis=1, keepdims=True)
        cell_means *= self.lib_sizes[start:stop, None]

        # 6. BCV-adjusted means (splatSimBCVMeans)
        bcv = self.bcv_common + 1.0 / np.sqrt(cell_means)
        if self.bcv_gene is not None:
            bcv = bcv * self.bcv_gene[None, :]
        bcv2 = bcv**2
        lam = rng.gamma(1.0 / bcv2, cell_means * bcv2)
        del bcv, bcv2, cell_means

        # 7. true counts (splatSimTrueCounts)
        true_counts = rng.poisson(lam).astype(np.float32)

        # 8. dropout (splatSimDropout)
        if self.mid_c is None:
            counts = true_counts
        else:
            with np.errstate(divide="ignore"):
                eta = np.log(lam)
            # Splatter's logistic(eta, x0, k) = 1 / (1 + exp(-k (eta - x0)))
            with np.errstate(invalid="ignore"):
                drop_prob = special.expit(self.shape_c[start:stop, None] * (eta - self.mid_c[start:stop, None]))
            drop_prob = np.nan_to_num(drop_prob, nan=1.0)
            keep = rng.random(lam.shape) >= drop_prob
            counts = true_counts * keep
            del eta, drop_prob, keep
        return sparse.csr_matrix(counts, dtype=np.float32), sparse.csr_matrix(true_counts, dtype=np.float32)

    def anndata(self, X, true_counts, cells: slice, *, preset, random_state) -> AnnData:
        import anndata as ad

        group_names = [f"Group{i + 1}" for i in range(self.n_groups)]
        obs = pd.DataFrame(
            {
                "group": pd.Categorical.from_codes(self.groups[cells], categories=group_names),
                "exp_lib_size": self.lib_sizes[cells],
            },
            index=pd.Index([f"Cell{i + 1}" for i in range(cells.start, cells.stop)]),
        )
        var = pd.DataFrame(
            {"base_gene_mean": self.base_means, "outlier_factor": self.out_facs, "gene_mean": self.gene_means},
            index=pd.Index([f"Gene{i + 1}" for i in range(self.n_genes)]),
        )
        if self.n_groups > 1:
            for g, name in enumerate(group_names):
                var[f"de_fac_{name}"] = self.de_facs[g]
            for g, name in enumerate(group_names):
                var[f"is_de_{name}"] = self.de_facs[g] != 1

        adata = ad.AnnData(X=X, obs=obs, var=var)
        adata.layers["true_counts"] = true_counts
        params = {
            k: (np.asarray(v, dtype=np.float64) if isinstance(v, (list, tuple, np.ndarray)) else v)
            for k, v in self.p.items()
        }
        params["group_prob"] = self.probs
        params["preset"] = "none" if preset is None else preset
        if isinstance(random_state, (int, np.integer)):
            params["random_state"] = int(random_state)
        adata.uns["simulate"] = {"params": params}
        return adata
