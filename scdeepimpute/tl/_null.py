"""Null check: impute data with no structure and count the gene-gene correlations and DE genes it invents."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from scipy import sparse, stats

from .. import _logging as logg
from .._utils import check_random_state, get_matrix, is_dask
from ._compare import Method, _float32, _resolve_methods, _run

if TYPE_CHECKING:
    from anndata import AnnData

Kind = Literal["simulated", "permuted"]
_KINDS = ("simulated", "permuted")


def permute_genes(X, *, random_state: int | np.random.Generator | None = 0):
    """Permute each gene's values independently across cells.

    Every gene keeps its values (mean, variance, zeros) but loses its link to the other genes and to the
    cells: library sizes, cell types and gene-gene co-expression are gone. Sparse input stays sparse (only
    the positions of the non-zeros move).

    Parameters
    ----------
    X
        Counts, cells x genes (array or sparse matrix).
    random_state
        Seed or :class:`numpy.random.Generator`.

    Returns
    -------
    The permuted matrix (CSR for sparse input, else a dense array).

    Examples
    --------
    >>> import numpy as np
    >>> from scdeepimpute.tl import permute_genes
    >>> X = np.arange(12.0).reshape(4, 3)
    >>> Y = permute_genes(X, random_state=0)
    >>> bool(np.all(np.sort(Y, axis=0) == X))
    True
    """
    rng = check_random_state(random_state)
    if sparse.issparse(X):
        C = sparse.csc_matrix(X, copy=True)
        C.sum_duplicates()
        n = C.shape[0]
        for j in range(C.shape[1]):
            lo, hi = C.indptr[j], C.indptr[j + 1]
            # a uniform random ordered draw of rows = a uniform permutation of the column
            C.indices[lo:hi] = rng.choice(n, size=hi - lo, replace=False)
        C.has_sorted_indices = False
        C.sort_indices()
        return C.tocsr()
    return rng.permuted(np.asarray(X), axis=0)


def _null_data(
    kind: str, X, n_obs: int, n_vars: int, simulate_kwargs: Mapping | None, rng: np.random.Generator, seed: int
):
    if kind == "permuted":
        return _float32(permute_genes(X, random_state=rng))
    from ..datasets import simulate

    kw = {"preset": "paper", "n_obs": n_obs, "n_vars": n_vars, **dict(simulate_kwargs or {})}
    kw["group_prob"] = [1.0]  # one group: no cell types, no DE genes
    kw.setdefault("random_state", seed)
    return _float32(simulate(**kw).X)


def _lognorm(Y: np.ndarray) -> np.ndarray:
    import anndata as ad
    import scanpy as sc

    work = ad.AnnData(np.array(Y, dtype=np.float32))
    sc.pp.normalize_total(work, target_sum=1e4)
    sc.pp.log1p(work)
    return np.asarray(work.X, dtype=np.float64)


def corr_threshold(n_obs: int, alpha: float) -> float:
    """Absolute Pearson r above which a gene pair is significant at two-sided level ``alpha`` for ``n_obs`` cells.

    The t-test of r (:func:`scipy.stats.pearsonr`'s null): ``r* = t / sqrt(n - 2 + t^2)`` with ``t`` the
    ``1 - alpha/2`` quantile of Student's t with ``n - 2`` degrees of freedom. For genes that are
    independent of each other, r has mean 0 and variance ``1 / (n - 1)`` whatever the genes' distributions
    (its permutation distribution), so for hundreds of cells this level holds beyond Gaussian data.

    Examples
    --------
    >>> from scdeepimpute.tl import corr_threshold
    >>> round(corr_threshold(1000, 0.001), 3)  # ~ 3.29 / sqrt(1000)
    0.104
    """
    if n_obs < 4:
        msg = f"need at least 4 cells for a correlation test, got {n_obs}."
        raise ValueError(msg)
    t = stats.t.isf(alpha / 2, n_obs - 2)
    return float(t / np.sqrt(n_obs - 2 + t**2))


def _spurious_corr(Z: np.ndarray, r_crit: float) -> float:
    with np.errstate(invalid="ignore", divide="ignore"):
        R = np.corrcoef(Z, rowvar=False)
    r = R[np.triu_indices_from(R, k=1)]
    r = r[np.isfinite(r)]  # constant genes have no correlation
    return float(np.mean(np.abs(r) > r_crit)) if r.size else float("nan")


def _de_calls(Z: np.ndarray, groups: np.ndarray, fdr: float) -> int:
    import anndata as ad
    import scanpy as sc

    work = ad.AnnData(Z.astype(np.float32))
    work.obs["split"] = pd.Categorical(np.where(groups, "a", "b"))
    work.uns["log1p"] = {"base": None}  # Z is already log1p: no "data not logarithmised" warning
    sc.tl.rank_genes_groups(
        work, "split", groups=["a"], reference="b", method="t-test", corr_method="benjamini-hochberg"
    )
    padj = np.asarray(work.uns["rank_genes_groups"]["pvals_adj"]["a"], dtype=np.float64)
    return int(np.sum(np.nan_to_num(padj, nan=1.0) < fdr))  # NaN: constant gene, no call


def _kmeans_split(Z: np.ndarray, n_pcs: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    n_comps = int(max(1, min(n_pcs, Z.shape[0] - 1, Z.shape[1] - 1)))
    pcs = PCA(n_components=n_comps, random_state=seed).fit_transform(Z - Z.mean(axis=0))
    labels = KMeans(n_clusters=2, n_init=10, random_state=seed).fit_predict(pcs)
    return labels == 0


def _score(  # noqa: PLR0913
    Y: np.ndarray,
    corr_genes: np.ndarray,
    splits: list[np.ndarray],
    lib: np.ndarray,
    r_crit: float,
    fdr: float,
    seed: int,
):
    Z = _lognorm(Y)
    out = {"spurious_corr": _spurious_corr(Z[:, corr_genes], r_crit)}
    out["de_calls_random"] = float(np.mean([_de_calls(Z, s, fdr) for s in splits]))
    km = _kmeans_split(Z, 10, seed)
    # both clusters non-empty unless the output is degenerate (all cells equal)
    split = 0 < km.sum() < km.size
    out["de_calls_kmeans"] = float(_de_calls(Z, km, fdr)) if split else 0.0
    out["kmeans_depth_corr"] = abs(float(stats.spearmanr(km, lib).statistic)) if split else float("nan")
    return out


def null_check(  # noqa: PLR0913
    adata: AnnData | None = None,
    *,
    methods: Sequence[str] | Mapping[str, str | Method] = ("deepimpute", "magic", "knn"),
    kind: Kind | Sequence[Kind] = ("simulated", "permuted"),
    layer: str | None = None,
    n_genes: int = 500,
    min_detected: float = 0.05,
    alpha: float = 0.001,
    fdr: float = 0.05,
    n_splits: int = 5,
    simulate_kwargs: Mapping[str, object] | None = None,
    method_kwargs: Mapping[str, Mapping[str, object]] | None = None,
    random_state: int = 0,
) -> pd.DataFrame:
    """Impute data with no structure and report the gene-gene correlations and DE genes each method invents.

    Two null datasets, neither with cell types nor gene-gene co-expression:

    ``"simulated"``
        :func:`scdeepimpute.datasets.simulate` with one group (the ``"paper"`` preset's dropout, sized
        like ``adata``, or 2000 cells x 4000 genes without it; ``simulate_kwargs`` override).
    ``"permuted"``
        ``adata``'s counts with each gene permuted independently across cells (:func:`permute_genes`):
        every gene keeps its distribution, nothing links genes or cells.

    Genes detected in fewer than ``min_detected`` of the null's cells are dropped (as the benchmarks do);
    every method, and the raw counts (``"none"``, always included), impute the rest. Each output is
    ``normalize_total`` (1e4) + ``log1p`` transformed and scored:

    ``spurious_corr``
        Fraction of the pairs among the ``n_genes`` most detected genes whose absolute Pearson r exceeds
        :func:`corr_threshold` at two-sided level ``alpha``. Under the null this is ``alpha`` for raw
        counts (``null_level``); more means the method made genes co-vary. Pearson on log-normalised
        values, the scale users correlate on.
    ``de_calls_random``
        Genes called at Benjamini-Hochberg FDR ``fdr`` by :func:`scanpy.tl.rank_genes_groups` (t-test)
        between two random halves of the cells, mean over ``n_splits`` splits. The split ignores the
        data, so this checks that the test stays calibrated on the output (expected ~0 for any method
        whose cells remain exchangeable).
    ``de_calls_kmeans``
        The same test between the two k-means clusters (k=2, 10 PCs) of the method's own output: what a
        user finds after clustering imputed data. Raw counts get some calls too (clusters of noise
        tested on the data that made them); more than raw means the method created a cell structure.
    ``kmeans_depth_corr``
        Absolute Spearman rho between that k-means split and the null's raw library sizes: near 1 when the
        clusters the method made are cells of high vs low depth.

    Parameters
    ----------
    adata
        Annotated data with raw counts; needed for ``"permuted"``. ``None`` with ``kind="simulated"``.
    methods
        Built-in names (``"deepimpute"``, ``"magic"``, ``"knn"``, ``"nzmean"``), or display name →
        name or callable ``f(adata) -> counts``, as in :func:`compare`. ``"magic"`` is skipped with a
        warning when ``magic-impute`` is not installed. ``"deepimpute"`` reports both layers of one fit,
        ``deepimpute_imputed`` and ``deepimpute_detected``.
    kind
        ``"simulated"``, ``"permuted"`` or both.
    layer
        Layer of ``adata`` with the counts (default ``X``).
    n_genes
        Genes whose pairs are correlated (``n_genes * (n_genes - 1) / 2`` pairs).
    min_detected
        Minimum fraction of cells in which a gene is detected.
    alpha
        Two-sided level of the correlation test.
    fdr
        False discovery rate of the DE calls.
    n_splits
        Random splits for ``de_calls_random``.
    simulate_kwargs
        Extra keywords for :func:`~scdeepimpute.datasets.simulate` (``group_prob`` is always one group).
    method_kwargs
        Method name → extra keyword arguments.
    random_state
        Seed of the null data, the splits, k-means and the seeded methods.

    Returns
    -------
    Tidy :class:`pandas.DataFrame` with columns ``kind``, ``method``, ``metric``, ``value``,
    ``null_level`` (the value expected for raw counts under the null: ``alpha`` for ``spurious_corr``,
    0 for ``de_calls_random``, NaN for the others); ``df.attrs["params"]`` holds the settings,
    the threshold on absolute r and the genes and cells of each null.

    Examples
    --------
    >>> import scdeepimpute as sdi
    >>> adata = sdi.datasets.simulate(n_obs=200, n_vars=300, random_state=0)
    >>> df = sdi.tl.null_check(adata, methods=["nzmean"], n_genes=50)
    >>> sorted(df["method"].unique())
    ['none', 'nzmean']
    """
    import anndata as ad

    kinds = [kind] if isinstance(kind, str) else list(kind)
    bad = [k for k in kinds if k not in _KINDS]
    if bad or not kinds:
        msg = f"`kind` must be 'simulated', 'permuted' or both, got {kind!r}."
        raise ValueError(msg)
    if adata is None and "permuted" in kinds:
        msg = "kind='permuted' permutes the counts of `adata`: pass adata (or use kind='simulated')."
        raise ValueError(msg)
    if not 0 < alpha < 1 or not 0 < fdr < 1:
        msg = f"`alpha` and `fdr` must be in (0, 1), got alpha={alpha}, fdr={fdr}."
        raise ValueError(msg)
    if n_genes < 2 or n_splits < 1 or not 0 <= min_detected < 1:
        msg = f"need n_genes >= 2, n_splits >= 1 and 0 <= min_detected < 1, got {n_genes}, {n_splits}, {min_detected}."
        raise ValueError(msg)
    X = None
    if adata is not None:
        X = get_matrix(adata, layer)
        if is_dask(X):
            X = X.compute()
        X = _float32(X)
        values = X.data if sparse.issparse(X) else X
        if not np.all(np.isfinite(values)) or values.min(initial=0) < 0:
            msg = "null_check needs raw counts; the input has negative, NaN or infinite values."
            raise ValueError(msg)
    n_obs, n_vars = (2000, 4000) if adata is None else adata.shape

    if isinstance(methods, str):
        methods = [methods]
    if not isinstance(methods, Mapping):
        methods = {m: m for m in methods}
    methods = {"none": "none", **{k: v for k, v in methods.items() if k != "none"}}
    kw = {k: dict(v) for k, v in (method_kwargs or {}).items()}
    if methods.get("deepimpute") == "deepimpute":
        kw.setdefault("deepimpute", {}).setdefault("output", "both")
    funcs = _resolve_methods(methods, random_state, kw)

    rows, info = [], {}
    for k in kinds:
        # one stream per kind: a null does not change with the other kinds asked for
        rng = np.random.default_rng([random_state, _KINDS.index(k)])
        N = _null_data(k, X, n_obs, n_vars, simulate_kwargs, rng, random_state)
        det = np.asarray((N > 0).mean(axis=0)).ravel()
        keep = np.flatnonzero(det >= min_detected)
        if keep.size < 2 or N.shape[0] < 4:
            msg = (
                f"the {k} null keeps {keep.size} genes detected in >= {min_detected:.0%} of {N.shape[0]} cells; "
                "need >= 2 genes and 4 cells."
            )
            raise ValueError(msg)
        N = N[:, keep]
        corr_genes = np.sort(np.argsort(-det[keep], kind="stable")[: min(n_genes, keep.size)])
        splits = [rng.permutation(N.shape[0]) < N.shape[0] // 2 for _ in range(n_splits)]
        lib = np.asarray(N.sum(axis=1)).ravel()
        r_crit = corr_threshold(N.shape[0], alpha)
        info[k] = {
            "n_obs": int(N.shape[0]),
            "n_vars": int(keep.size),
            "n_corr_genes": int(corr_genes.size),
            "r_threshold": r_crit,
        }
        ref = ad.AnnData(
            obs=pd.DataFrame(index=[f"cell{i}" for i in range(N.shape[0])]),
            var=pd.DataFrame(index=[f"gene{i}" for i in range(N.shape[1])]),
        )
        for name, f in funcs.items():
            start = logg.info(f"null_check: {name!r} on the {k} null ({N.shape[0]} x {N.shape[1]})")
            outputs, _ = _run(name, f, N, ref)
            for out_name, Y in outputs.items():
                for metric, value in _score(Y, corr_genes, splits, lib, r_crit, fdr, random_state).items():
                    rows.append((k, out_name, metric, value))
            logg.info("    finished", time=start)

    level = {"spurious_corr": alpha, "de_calls_random": 0.0}
    df = pd.DataFrame(rows, columns=["kind", "method", "metric", "value"])
    df["null_level"] = df["metric"].map(level)
    df.attrs["params"] = {
        "alpha": alpha,
        "fdr": fdr,
        "n_genes": n_genes,
        "min_detected": min_detected,
        "n_splits": n_splits,
        "random_state": random_state,
        "nulls": info,
    }
    return df
