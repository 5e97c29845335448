"""RNA-FISH validation (paper Fig. 3): GAPDH normalisation, Gini coefficients, KS statistics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import sparse, stats

from .._utils import get_matrix, is_dask

if TYPE_CHECKING:
    from anndata import AnnData


def gini(x, *, axis: int = 0) -> np.ndarray | float:
    """Gini coefficient along ``axis``, ignoring NaN (SAVER's ``reldist::gini``).

    ``G = sum_i (2 i - n - 1) x_(i) / (n sum_i x_i)`` over the sorted non-NaN values ``x_(1) <= ... <=
    x_(n)``: 0 when all values are equal, ``(n - 1) / n`` when one value holds everything. Values must be
    non-negative; a column with no finite values or a zero sum gives NaN.

    Parameters
    ----------
    x
        1-d or 2-d array (NaN = missing).
    axis
        Axis along which to compute (for 2-d input: 0 = one coefficient per column).

    Returns
    -------
    float or numpy.ndarray
        A float for 1-d input, else an array.

    Examples
    --------
    >>> from scdeepimpute.tl import gini
    >>> gini([1, 1, 1, 1]), gini([0, 0, 0, 4])
    (0.0, 0.75)
    """
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        return float(_gini_1d(a))
    a = np.moveaxis(a, axis, 0)
    return np.array([_gini_1d(a[:, j]) for j in range(a.shape[1])])


def _gini_1d(a: np.ndarray) -> float:
    a = np.sort(a[~np.isnan(a)])
    if a.size == 0 or a.sum() <= 0:
        return float("nan")
    if a[0] < 0:
        msg = "the Gini coefficient needs non-negative values; clip or shift the data first."
        raise ValueError(msg)
    n = a.size
    i = np.arange(1, n + 1)
    return float(np.sum((2 * i - n - 1) * a) / (n * a.sum()))


def gapdh_normalize(
    X: np.ndarray, reference: np.ndarray, *, quantiles: tuple[float, float] = (0.1, 0.9)
) -> tuple[np.ndarray, np.ndarray]:
    """Housekeeping-gene normalisation of SAVER and the DeepImpute paper.

    Cells whose reference (GAPDH) value is not strictly between the ``quantiles`` (10th and 90th
    percentiles by default, NaN ignored) are removed; every remaining value is rescaled as
    ``x_cg * mean(ref) / ref_c`` (mean over the kept cells).

    Parameters
    ----------
    X
        Cells x genes, dense (NaN = missing).
    reference
        Reference value per cell (NaN = missing; such cells are removed).
    quantiles
        Lower and upper quantile for the outlier removal.

    Returns
    -------
    X_norm : numpy.ndarray
        Normalised values of the kept cells.
    keep : numpy.ndarray
        Boolean mask of the kept cells.

    Examples
    --------
    >>> import numpy as np
    >>> from scdeepimpute.tl import gapdh_normalize
    >>> ref = np.arange(1.0, 11.0)
    >>> Xn, keep = gapdh_normalize(ref[:, None] * 2, ref)
    >>> int(keep.sum()), bool(np.allclose(Xn, 2 * ref[keep].mean()))
    (8, True)
    """
    X = np.asarray(X, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    lo, hi = np.nanquantile(ref, quantiles)
    with np.errstate(invalid="ignore"):
        keep = (ref > lo) & (ref < hi)
    kept = ref[keep]
    factor = kept / kept.mean()
    return X[keep] / factor[:, None], keep


def _dense(adata: AnnData, layer: str | None, genes: Sequence[str]) -> np.ndarray:
    X = get_matrix(adata, layer)
    idx = adata.var_names.get_indexer(list(genes))
    X = X[:, idx]
    if is_dask(X):
        X = X.compute()
    return X.toarray().astype(np.float64) if sparse.issparse(X) else np.asarray(X, dtype=np.float64)


def fish_compare(  # noqa: PLR0913
    fish: AnnData,
    methods: Mapping[str, AnnData | tuple[AnnData, str | None]],
    *,
    fish_layer: str | None = None,
    genes: Sequence[str] | None = None,
    reference: str = "GAPDH",
    quantiles: tuple[float, float] = (0.1, 0.9),
    zero_as_missing: bool = False,
    efficiency: bool = True,
) -> dict[str, object]:
    """Compare gene distributions after imputation with RNA FISH (paper Fig. 3; SAVER Fig. 1b).

    Every dataset (FISH and each method's cells x genes) is normalised by :func:`gapdh_normalize`; the
    :func:`gini` coefficient of each gene is then compared with FISH by MSE and Pearson's r over genes.
    For the distributions, each method's gene is first multiplied by an efficiency factor (FISH mean /
    method mean, after normalisation) when ``efficiency=True``, and compared with FISH by the two-sample
    Kolmogorov-Smirnov statistic (:func:`scipy.stats.ks_2samp`).

    Not every FISH round probes every gene, so FISH tables mark "not probed in this cell". NaN and
    negative values (``melanoma_fish.h5ad`` uses -1) are always treated as missing: each gene's Gini and
    distribution use only the cells where it was probed, as SAVER does with ``complete.cases``. Tables
    that write "not probed" as 0 need ``zero_as_missing=True``, which treats every FISH zero (the
    reference's too) as missing; that drops true zeros as well, so the Gini coefficients of genes with
    many real zeros come out too low. Missing values apply to FISH only: the methods' zeros are values.

    Parameters
    ----------
    fish
        FISH counts, cells x genes, with the ``reference`` gene.
    methods
        Name → AnnData (uses ``X``) or ``(AnnData, layer)``; counts scale, the ``reference`` gene included.
    fish_layer
        Layer of ``fish`` to use; ``None`` uses ``X``.
    genes
        Genes to compare; default every gene shared by FISH and all methods, except ``reference``.
    reference
        Housekeeping gene for the normalisation.
    quantiles
        Reference-gene quantiles outside which cells are removed.
    zero_as_missing
        Also treat zeros in the FISH data as missing (NaN and negative values always are).
    efficiency
        Apply the efficiency factor before the KS statistic.

    Returns
    -------
    dict with

    ``gini`` : DataFrame
        Genes x (``"FISH"`` + methods).
    ``ks`` : DataFrame
        Genes x methods, KS statistic against FISH.
    ``efficiency`` : DataFrame
        Genes x methods, the factors used (1 when ``efficiency=False``).
    ``scores`` : DataFrame
        Methods x (``gini_mse``, ``gini_pearson``, ``ks_mean``).
    ``values`` : dict
        Name → normalised cells x genes DataFrame (FISH with NaN for missing), for plots.

    Examples
    --------
    >>> import numpy as np, anndata as ad
    >>> from scdeepimpute.tl import fish_compare
    >>> rng = np.random.default_rng(0)
    >>> X = rng.poisson(5, size=(500, 3)).astype(float) + 1
    >>> a = ad.AnnData(X); a.var_names = ["GAPDH", "A", "B"]
    >>> res = fish_compare(a, {"same": a})
    >>> float(res["scores"].loc["same", "gini_mse"])
    0.0
    """
    names = list(methods)
    pairs = {m: (v if isinstance(v, tuple) else (v, None)) for m, v in methods.items()}
    if genes is None:
        shared = set(fish.var_names)
        for ad_, _ in pairs.values():
            shared &= set(ad_.var_names)
        genes = [g for g in fish.var_names if g in shared and g != reference]
    genes = list(genes)
    for label, ad_ in [("fish", fish)] + [(m, a) for m, (a, _) in pairs.items()]:
        absent = [g for g in [reference, *genes] if g not in ad_.var_names]
        if absent:
            msg = f"{label}: genes {absent} not in var_names."
            raise KeyError(msg)
    if not genes:
        msg = "no genes to compare (FISH and the methods share no gene besides the reference)."
        raise ValueError(msg)
    cols = [reference, *genes]

    values: dict[str, pd.DataFrame] = {}
    F = _dense(fish, fish_layer, cols)
    F[F < 0] = np.nan  # "not probed" sentinel (-1 in melanoma_fish.h5ad)
    if zero_as_missing:
        F[F == 0] = np.nan
    Fn, keep = gapdh_normalize(F[:, 1:], F[:, 0], quantiles=quantiles)
    values["FISH"] = pd.DataFrame(Fn, index=fish.obs_names[keep], columns=genes)
    for m, (ad_, layer) in pairs.items():
        M = np.clip(_dense(ad_, layer, cols), 0, None)
        Mn, keep = gapdh_normalize(M[:, 1:], M[:, 0], quantiles=quantiles)
        values[m] = pd.DataFrame(Mn, index=ad_.obs_names[keep], columns=genes)

    gini_df = pd.DataFrame(
        {k: gini(v.to_numpy(), axis=0) for k, v in values.items()}, index=pd.Index(genes, name="gene")
    )
    ks = pd.DataFrame(index=pd.Index(genes, name="gene"), columns=names, dtype=np.float64)
    eff = pd.DataFrame(1.0, index=pd.Index(genes, name="gene"), columns=names)
    fish_v = values["FISH"]
    for m in names:
        for g in genes:
            f = fish_v[g].to_numpy()
            f = f[~np.isnan(f)]
            x = values[m][g].to_numpy()
            if efficiency and x.mean() > 0:
                eff.loc[g, m] = f.mean() / x.mean()
            ks.loc[g, m] = stats.ks_2samp(f, x * eff.loc[g, m]).statistic if f.size and x.size else np.nan
    rows = {}
    for m in names:
        ok = gini_df[["FISH", m]].dropna()
        r = float(stats.pearsonr(ok["FISH"], ok[m]).statistic) if len(ok) >= 2 and ok[m].std() > 0 else float("nan")
        rows[m] = {
            "gini_mse": float(((ok["FISH"] - ok[m]) ** 2).mean()),
            "gini_pearson": r,
            "ks_mean": float(ks[m].mean()),
        }
    return {
        "gini": gini_df,
        "ks": ks,
        "efficiency": eff,
        "scores": pd.DataFrame.from_dict(rows, orient="index"),
        "values": values,
    }
