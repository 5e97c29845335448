"""Splatter's "Splat" simulation (Zappia et al., Genome Biology 2017): the public entry points.

The model itself (parameters, presets, draws) lives in ``_splat.py``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Literal

from scipy import sparse

from ._splat import SPLAT_DEFAULTS, _Model, _resolve

if TYPE_CHECKING:
    import numpy as np
    from anndata import AnnData


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

    Parameters
    ----------
    chunk_size
        Cells per chunk (the last chunk may be smaller).
    preset, random_state, **params
        As in :func:`simulate`.

    Yields
    ------
    AnnData of ``chunk_size x n_vars`` (the last one may have fewer cells), laid out as :func:`simulate`'s.

    Examples
    --------
    >>> import anndata as ad
    >>> import scdeepimpute as sdi
    >>> chunks = list(sdi.datasets.simulate_chunks(50, n_obs=120, n_vars=300, random_state=0))
    >>> [c.n_obs for c in chunks]
    [50, 50, 20]
    >>> whole = sdi.datasets.simulate(n_obs=120, n_vars=300, chunk_size=50, random_state=0)
    >>> (ad.concat(chunks).X != whole.X).nnz
    0
    """
    unknown = set(params) - set(SPLAT_DEFAULTS)
    if unknown:
        msg = f"unknown simulation parameters {sorted(unknown)}; see `simulate`."
        raise TypeError(msg)
    model = _Model(_resolve(preset, params), random_state)
    for start, stop, rng in model.chunks(chunk_size):
        X, true = model.rows(start, stop, rng)
        yield model.anndata(X, true, slice(start, stop), preset=preset, random_state=random_state)
