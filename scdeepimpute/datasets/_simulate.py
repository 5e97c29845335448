"""Splatter's "Splat" simulation (Zappia et al., Genome Biology 2017) in numpy."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from scipy import sparse

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


def _logistic(x: np.ndarray, x0, k) -> np.ndarray:
    """Splatter's ``logistic(x, x0, k) = 1 / (1 + exp(-k (x - x0)))``."""
    with np.errstate(over="ignore", invalid="ignore"):
        return 1.0 / (1.0 + np.exp(-k * (x - x0)))


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


def simulate(  # noqa: PLR0913
    *,
    preset: Literal["paper"] | None = None,
    n_obs: int | None = None,
    n_vars: int | None = None,
    group_prob: Sequence[float] | None = None,
    mean_shape: float | None = None,
    mean_rate: float | None = None,
    lib_loc: float | None = None,
    lib_scale: float | None = None,
    out_prob: float | None = None,
    out_fac_loc: float | None = None,
    out_fac_scale: float | None = None,
    de_prob: float | Sequence[float] | None = None,
    de_down_prob: float | Sequence[float] | None = None,
    de_fac_loc: float | Sequence[float] | None = None,
    de_fac_scale: float | Sequence[float] | None = None,
    bcv_common: float | None = None,
    bcv_df: float | None = None,
    dropout_type: Literal["none", "experiment", "group"] | None = None,
    dropout_mid: float | Sequence[float] | None = None,
    dropout_shape: float | Sequence[float] | None = None,
    chunk_size: int | None = None,
    random_state: int | np.random.Generator | None = 0,
) -> AnnData:
    """Simulate scRNA-seq counts with Splatter's Splat model :cite:p:`Zappia2017`.

    A numpy port of ``splatter::splatSimulate`` (``method="groups"``, one batch). In order:

    1. cells are assigned to groups with probabilities ``group_prob``;
    2. library sizes ``L_c ~ LogNormal(lib_loc, lib_scale)``;
    3. gene means ``m_g ~ Gamma(mean_shape, rate=mean_rate)``; with probability ``out_prob`` a gene is
       an expression outlier and its mean becomes ``median(m) * LogNormal(out_fac_loc, out_fac_scale)``;
    4. per group, a gene is differentially expressed (DE) with probability ``de_prob``; its factor is
       ``LogNormal(de_fac_loc, de_fac_scale)``, inverted (down-regulated) with probability ``de_down_prob``;
    5. cell means ``mu_gc``: gene means times the group's DE factors, scaled to proportions per cell and
       multiplied by ``L_c``;
    6. biological coefficient of variation ``BCV_gc = (bcv_common + 1 / sqrt(mu_gc)) * sqrt(bcv_df / chi2_g)``
       with one ``chi2_g ~ ChiSquare(bcv_df)`` per gene (a scaled inverse chi-square), then
       ``lambda_gc ~ Gamma(shape=1 / BCV^2, scale=mu_gc BCV^2)``;
    7. true counts ``Y_gc ~ Poisson(lambda_gc)``;
    8. dropout: ``Y_gc`` is set to zero with probability
       ``1 / (1 + exp(-dropout_shape * (log(lambda_gc) - dropout_mid)))`` (``dropout_type="experiment"``: one
       midpoint and shape; ``"group"``: one per group; ``"none"``: no dropout).

    Parameters default to Splatter's ``newSplatParams()`` (``None`` means "the default, or the preset's
    value"). Splatter's default ``de.downProb`` is 0.5 (checked in ``R/AllClasses.R`` of
    Oshlack/splatter). The random streams differ from R's, so the same seed does not reproduce an R run;
    the distributions are the same.

    Parameters
    ----------
    preset
        ``"paper"``: the DeepImpute paper's simulation (4000 genes, 2000 cells, ``group_prob``
        ``[0.1, 0.1, 0.2, 0.2, 0.4]``, ``dropout_type="experiment"``, ``dropout_mid=1``,
        ``dropout_shape=-0.5``). ``None``: Splatter's defaults (100 cells, 10000 genes, one group, no dropout).
    n_obs
        Number of cells (Splatter ``batchCells``).
    n_vars
        Number of genes (``nGenes``).
    group_prob
        Probability of each group; normalised to sum to one. One value gives a single group (no DE).
    mean_shape, mean_rate
        Gamma shape and rate of the gene means (0.6, 0.3).
    lib_loc, lib_scale
        Log-normal location and scale of the library sizes (11, 0.2).
    out_prob, out_fac_loc, out_fac_scale
        Outlier probability and log-normal outlier factor (0.05, 4, 0.5).
    de_prob, de_down_prob, de_fac_loc, de_fac_scale
        DE probability, probability of down-regulation, and log-normal DE factor (0.1, 0.5, 0.1, 0.4);
        a scalar or one value per group.
    bcv_common, bcv_df
        Common BCV and degrees of freedom of its inverse chi-square (0.1, 60). ``bcv_df=np.inf`` gives
        no gene-wise variability.
    dropout_type
        ``"none"`` (default), ``"experiment"`` or ``"group"``.
    dropout_mid, dropout_shape
        Midpoint and shape of the dropout logistic on log cell means (0, -1); one value per group for
        ``dropout_type="group"``.
    chunk_size
        Draw the counts ``chunk_size`` cells at a time, each chunk from its own child stream of the seed,
        so that the dense temporaries (about ten ``chunk_size x n_vars`` float64 arrays) bound the memory
        instead of ten ``n_obs x n_vars`` ones. Genes, groups and library sizes are those of the unchunked
        simulation with the same seed; the counts follow the same model but are other draws.
        :func:`simulate_chunks` yields the chunks one by one. ``None``: one draw of the whole matrix.
    random_state
        Seed or :class:`numpy.random.Generator`.

    Returns
    -------
    AnnData of ``n_obs x n_vars`` with

    ``X`` : :class:`scipy.sparse.csr_matrix`, float32
        Observed counts (after dropout).
    ``layers['true_counts']`` : csr_matrix, float32
        Counts before dropout.
    ``obs['group']`` : categorical
        ``"Group1"``, ``"Group2"``, ...
    ``obs['exp_lib_size']`` : float
        Expected library size.
    ``var['base_gene_mean']``, ``var['outlier_factor']``, ``var['gene_mean']`` : float
        Gene means before and after outliers.
    ``var['de_fac_<group>']`` : float, ``var['is_de_<group>']`` : bool
        DE factor per group (1 = not DE) and whether the gene is DE in that group (only with more than
        one group).
    ``uns['simulate']['params']`` : dict
        The parameters used.

    Examples
    --------
    >>> import scdeepimpute as sdi
    >>> adata = sdi.datasets.simulate(n_obs=200, n_vars=500, group_prob=[0.5, 0.5], random_state=0)
    >>> adata.obs["group"].cat.categories.tolist()
    ['Group1', 'Group2']
    >>> paper = sdi.datasets.simulate(preset="paper")  # 2000 cells x 4000 genes, 5 groups  # doctest: +SKIP
    """
    p = _resolve(
        preset,
        {
            "n_obs": n_obs,
            "n_vars": n_vars,
            "group_prob": group_prob,
            "mean_shape": mean_shape,
            "mean_rate": mean_rate,
            "lib_loc": lib_loc,
            "lib_scale": lib_scale,
            "out_prob": out_prob,
            "out_fac_loc": out_fac_loc,
            "out_fac_scale": out_fac_scale,
            "de_prob": de_prob,
            "de_down_prob": de_down_prob,
            "de_fac_loc": de_fac_loc,
            "de_fac_scale": de_fac_scale,
            "bcv_common": bcv_common,
            "bcv_df": bcv_df,
            "dropout_type": dropout_type,
            "dropout_mid": dropout_mid,
            "dropout_shape": dropout_shape,
        },
    )
    model = _Model(p, random_state)
    if chunk_size is None:  # one chunk drawn from the model's own stream
        X, true = model.rows(0, model.n_cells, model.rng)
    else:
        parts = [model.rows(start, stop, rng) for start, stop, rng in model.chunks(chunk_size)]
        X = sparse.vstack([x for x, _ in parts], format="csr")
        true = sparse.vstack([t for _, t in parts], format="csr")
        del parts
    return model.anndata(X, true, slice(0, model.n_cells), preset=preset, random_state=random_state)


def simulate_chunks(
    chunk_size: int,
    *,
    preset: Literal["paper"] | None = None,
    random_state: int | np.random.Generator | None = 0,
    **params,
) -> Iterator[AnnData]:
    """Yield the cells of :func:`simulate` (with the same ``chunk_size``), ``chunk_size`` cells at a time.

    Keywords are :func:`simulate`'s. Each chunk is an AnnData of consecutive cells (``obs`` names continue
    across chunks, ``var`` and ``uns`` are the whole simulation's); stacking the chunks gives
    ``simulate(chunk_size=chunk_size, ...)`` exactly. Only one chunk's dense draws are in memory at a time,
    so the number of cells is bounded by disk, not memory, when each chunk is written out.
    """
    unknown = set(params) - set(SPLAT_DEFAULTS)
    if unknown:
        msg = f"unknown simulation parameters {sorted(unknown)}; see `simulate`."
        raise TypeError(msg)
    model = _Model(_resolve(preset, params), random_state)
    for start, stop, rng in model.chunks(chunk_size):
        X, true = model.rows(start, stop, rng)
        yield model.anndata(X, true, slice(start, stop), preset=preset, random_state=random_state)


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
            drop_prob = _logistic(eta, self.mid_c[start:stop, None], self.shape_c[start:stop, None])
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
