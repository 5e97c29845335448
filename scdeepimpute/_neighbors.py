"""The cell-neighbourhood estimate of a gene's value if detected, and the self-calibration of its weight.

The gene-gene networks predict a gene from a few correlated genes; on shallow data, or where masking is close
to uniform over non-zeros, the cells around a cell say more. :func:`fit_neighbourhood` builds the kNN graph of
the cells (log-normalised counts -> PCA -> exact kNN, each cell's own row excluded); the estimate of gene g in
cell c is the Poisson expectation of ``log1p X`` given ``X > 0``, at the rate its neighbours show, scaled to the
cell's library: ``lambda_cg = l_c * mean_n x_ng / l_n``. The fit blends it with the network's value if detected,
``(1 - w) * network + w * neighbourhood`` (log1p), with ``w`` chosen on entries hidden from both
(:func:`calibration_entries`, :func:`choose_weight`). NumPy, SciPy and scikit-learn only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from ._fills import _poisson_table
from ._reliability import gene_features, shrunk_gene_mse

#: Principal components of the neighbourhood graph.
N_PCS = 30

#: Weights tried by the self-calibration.
WEIGHT_GRID = np.round(np.linspace(0.0, 1.0, 21), 2)

#: Calibration entries: genes with at least ``CALIBRATION_MIN_NONZERO`` non-zeros give
#: ``min(CALIBRATION_PER_GENE, CALIBRATION_FRACTION x non-zeros)`` of them.
CALIBRATION_PER_GENE = 10
CALIBRATION_FRACTION = 0.1
CALIBRATION_MIN_NONZERO = 10

#: What the calibration entries are, as reported in the self-estimate.
CALIBRATION_SCHEME = f"uniform over non-zeros, <={CALIBRATION_PER_GENE} per gene"


def _library(X) -> np.ndarray:
    """Each cell's total count (float64); empty cells count as 1 so that rates stay finite."""
    lib = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
    lib[lib <= 0] = 1.0
    return lib


#: How a model fitted with batches searches neighbours: ``"within"`` (on PCs of per-batch-centred data,
#: among the cells of the batch the cell is predicted for) or ``"centred"`` (same PCs, among all cells);
#: measured in ``benchmarks/RESULTS_batches.md`` (``"centred"`` mixed batches better for own-batch prediction).
BATCH_NEIGHBOURS = "centred"


def _principal_components(X, lib: np.ndarray, n_pcs: int, random_state: int, batches=None) -> np.ndarray:
    """PCs of log1p counts normalised to the median library; sparse input is centred implicitly (never densified).

    With ``batches`` (a code per cell) each batch is centred on its own mean first, so the PCs follow the
    variation within batches rather than between them (densifies sparse input).
    """
    from sklearn.decomposition import PCA

    scale = sparse.diags((np.median(lib) / lib).astype(np.float32))
    if batches is not None:
        Y = scale @ (X.toarray() if sparse.issparse(X) else np.asarray(X))
        Y = np.log1p(np.asarray(Y, dtype=np.float32))
        for b in np.unique(batches):
            members = batches == b
            Y[members] -= Y[members].mean(axis=0)
        n_pcs = max(1, min(n_pcs, min(Y.shape) - 1))
        return PCA(n_components=n_pcs, random_state=random_state).fit_transform(Y)
    if sparse.issparse(X):
        Y = sparse.csr_matrix(scale @ X, dtype=np.float32)
        Y.data = np.log1p(Y.data)
        solver = "arpack"
    else:
        Y = np.log1p(scale @ np.asarray(X, dtype=np.float32))
        solver = "auto"
    n_pcs = max(1, min(n_pcs, min(Y.shape) - 1))
    return PCA(n_components=n_pcs, svd_solver=solver, random_state=random_state).fit_transform(Y)


@dataclass
class Neighbourhood:
    """The kNN graph of a matrix's cells and its library-scaled counts for the target ``columns``.

    Built by :func:`fit_neighbourhood`; :meth:`log1p_if_detected` gives the estimate for a chunk of rows.
    """

    weights: sparse.csr_matrix  # cells x cells, row-normalised, k neighbours per row, no self-edges
    rates: sparse.csr_matrix  # cells x columns: counts / library
    library: np.ndarray  # cells

    def rate(self, rows) -> np.ndarray:
        """Poisson rate ``lambda`` of every target column in ``rows`` (dense float64, rows x columns)."""
        lam = (self.weights[rows] @ self.rates).toarray()
        lam *= self.library[rows][:, None]
        return lam

    def log1p_if_detected(self, rows) -> np.ndarray:
        """Return the neighbourhood's value if detected, ``E[log1p X | X > 0]`` at the :meth:`rate` (float32)."""
        return log1p_if_detected(self.rate(rows))


def fit_neighbourhood(
    X,
    *,
    columns: np.ndarray | None = None,
    n_neighbors: int = 30,
    n_pcs: int = 30,
    random_state: int = 0,
    batches: np.ndarray | None = None,
    target: np.ndarray | None = None,
    mode: str | None = None,
) -> Neighbourhood:
    """Build the neighbourhood of every cell of ``X`` (counts, cells x genes; dense or sparse).

    Parameters
    ----------
    X
        Counts; the graph is built from all its genes.
    columns
        The genes to estimate (indices into ``X``'s columns); ``None``: all.
    n_neighbors
        Neighbours per cell (at most the number of other cells); the cell itself is never one of them, so a
        cell's own count never enters its estimate.
    n_pcs
        Principal components of the graph (fewer where ``X`` has fewer genes or cells).
    random_state
        Seed of the PCA's solver.
    batches
        Each cell's batch code: the PCs are those of per-batch-centred data.
    target
        With ``batches``, the batch each cell is predicted for (default: its own); in ``mode="within"`` its
        neighbours are cells of that batch (the cell's own batch where the data hold no cell of it).
    mode
        ``"within"`` or ``"centred"`` (neighbours among all cells); default :data:`BATCH_NEIGHBOURS`.
    """
    from sklearn.neighbors import NearestNeighbors

    n = X.shape[0]
    if n < 2:
        msg = f"a neighbourhood needs at least 2 cells, got {n}."
        raise ValueError(msg)
    lib = _library(X)
    pcs = _principal_components(X, lib, n_pcs, random_state, batches=batches)
    if batches is not None and (mode or BATCH_NEIGHBOURS) == "within":
        weights = _within_batch_graph(pcs, np.asarray(batches), batches if target is None else target, n_neighbors)
    else:
        k = min(int(n_neighbors), n - 1)
        # exact search; kneighbors_graph(None) leaves each cell out of its own neighbours
        graph = NearestNeighbors(n_neighbors=k).fit(pcs).kneighbors_graph(None, mode="connectivity")
        weights = sparse.csr_matrix(graph / k, dtype=np.float64)
    counts = X if columns is None else X[:, columns]
    rates = sparse.csr_matrix(sparse.diags(1.0 / lib) @ sparse.csr_matrix(counts, dtype=np.float64))
    return Neighbourhood(weights=weights, rates=rates, library=lib)


def _within_batch_graph(pcs: np.ndarray, own: np.ndarray, target: np.ndarray, n_neighbors: int) -> sparse.csr_matrix:
    """Row-normalised kNN weights where each cell's neighbours are cells of its ``target`` batch, never itself."""
    from sklearn.neighbors import NearestNeighbors

    from . import _logging as logg

    n = own.size
    target = np.asarray(target).copy()
    absent = ~np.isin(target, own)
    if absent.any():
        logg.warning(
            f"{int(absent.sum())} cells are predicted for a batch with no cell in these data; their neighbours "
            "come from their own batch."
        )
        target[absent] = own[absent]
    rows, cols, vals = [], [], []
    for b in np.unique(target):
        pool = np.flatnonzero(own == b)
        queries = np.flatnonzero(target == b)
        inside = np.isin(queries, pool).any()  # then a query may find itself, which is dropped
        k = min(int(n_neighbors), pool.size - int(inside))
        if k < 1:
            msg = f"batch code {b} has {pool.size} cell(s) in these data: too few to search neighbours among."
            raise ValueError(msg)
        nn = NearestNeighbors(n_neighbors=min(k + 1, pool.size)).fit(pcs[pool])
        found = pool[nn.kneighbors(pcs[queries], return_distance=False)]
        keep = found != queries[:, None]
        # without itself among the candidates a cell keeps its k nearest: the farthest candidate goes
        surplus = keep.sum(axis=1) > k
        keep[surplus, -1] = False
        keep &= np.cumsum(keep, axis=1) <= k
        r, c = np.nonzero(keep)
        rows.append(queries[r])
        cols.append(found[r, c])
        vals.append(np.full(r.size, 1.0 / k))
    return sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n), dtype=np.float64
    )


# ----------------------------------------------------------------- the Poisson expectation at a rate
def log1p_if_detected(lam: np.ndarray) -> np.ndarray:
    """``E[log1p X | X > 0]`` for ``X ~ Poisson(lam)`` (float32, same shape).

    Read from the Poisson-link table up to its last rate; above it (where ``P(X = 0)`` is below 1e-6) the
    second-order delta approximation ``log1p(lam) - lam / (2 (1 + lam)^2)``, which joins the table there.
    """
    log_grid, table = _poisson_table()
    lam = np.asarray(lam, dtype=np.float64)
    with np.errstate(divide="ignore"):
        out = np.interp(np.log(lam), log_grid, table)
    high = lam > np.exp(log_grid[-1])
    if high.any():
        big = lam[high]
        out[high] = np.log1p(big) - big / (2 * (1 + big) ** 2)
    return out.astype(np.float32)


# ----------------------------------------------------------------- self-calibration
@dataclass
class CalibrationEntries:
    """Non-zero entries hidden inside fit: positions (rows, columns of the fitted matrix) and their counts."""

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return int(self.rows.size)


def calibration_rng(random_state: int) -> np.random.Generator:
    """Return the generator of a fit's calibration entries: its own stream, so training draws as without it."""
    return np.random.default_rng(np.random.SeedSequence(random_state).spawn(1)[0])


def calibration_entries(X, rng: np.random.Generator, *, genes: np.ndarray | None = None) -> CalibrationEntries:
    """Draw the calibration entries of ``X``: per gene with >= 10 non-zeros, min(10, 10%) of them, uniformly.

    ``genes`` restricts the draw to those columns (e.g. the imputed genes); ``rng`` makes it reproducible.
    """
    C = sparse.csc_matrix(X)
    C.eliminate_zeros()
    genes = np.arange(C.shape[1]) if genes is None else np.asarray(genes)
    rows, cols, values = [], [], []
    for g in genes:
        lo, hi = C.indptr[g], C.indptr[g + 1]
        nnz = hi - lo
        if nnz < CALIBRATION_MIN_NONZERO:
            continue
        take = min(CALIBRATION_PER_GENE, int(CALIBRATION_FRACTION * nnz))
        pick = lo + rng.choice(nnz, size=take, replace=False)
        rows.append(C.indices[pick])
        cols.append(np.full(take, g))
        values.append(C.data[pick])
    if not rows:
        empty = np.empty(0, dtype=np.int64)
        return CalibrationEntries(empty, empty, np.empty(0, dtype=np.float64))
    return CalibrationEntries(
        np.concatenate(rows).astype(np.int64),
        np.concatenate(cols).astype(np.int64),
        np.concatenate(values).astype(np.float64),
    )


def hide(X, entries: CalibrationEntries):
    """Return a copy of ``X`` with ``entries`` set to zero (CSR for sparse input, an array otherwise)."""
    if sparse.issparse(X):
        # subtracting each entry's own value zeroes it exactly; the zeros are then dropped
        own = sparse.csr_matrix((entries.values, (entries.rows, entries.cols)), shape=X.shape)
        hidden = sparse.csr_matrix(X - own.astype(X.dtype))
        hidden.eliminate_zeros()
        return hidden
    hidden = np.array(X, copy=True)
    hidden[entries.rows, entries.cols] = 0
    return hidden


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 2 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def choose_weight(
    truth: np.ndarray, network: np.ndarray, neighbourhood: np.ndarray, *, grid: np.ndarray = WEIGHT_GRID
) -> float:
    """Pick the weight ``w`` of the grid with the lowest MSE of ``(1 - w) network + w neighbourhood``.

    The MSE is against ``truth``; all three are log1p values of the same entries. Ties go to the smaller
    weight (the network alone).
    """
    truth, network, neighbourhood = (np.asarray(a, dtype=np.float64) for a in (truth, network, neighbourhood))
    if truth.size == 0:
        return 0.0
    w = np.asarray(grid, dtype=np.float64)[:, None]
    # network + w (neighbourhood - network): exactly the network where both agree, so ties are exact
    mse = ((network + w * (neighbourhood - network) - truth) ** 2).mean(axis=1)
    return float(grid[int(np.argmin(mse))])


def blend_values(network: np.ndarray, neighbourhood: np.ndarray, weight: float) -> np.ndarray:
    """Blend the values if detected (log1p): ``(1 - weight) * network + weight * neighbourhood``."""
    return network + np.asarray(weight, dtype=network.dtype) * (neighbourhood - network)


def calibration_report(
    entries: CalibrationEntries,
    network: np.ndarray,
    neighbourhood: np.ndarray,
    weight: float,
    n_genes: int,
    *,
    gene_features: np.ndarray | None = None,
) -> dict:
    """Score the calibration entries (log1p): masked MSE and Pearson of the network, neighbourhood and blend.

    The blend is taken at ``weight``; ``gene_mse`` is the blend's MSE per gene (``n_genes`` long, NaN where a
    gene has no entry): with ``gene_features`` (genes x features, e.g. :func:`gene_features`) the
    :func:`shrunk_gene_mse` of its squared errors, else their plain mean.
    """
    truth = np.log1p(entries.values)
    network = np.asarray(network, dtype=np.float64)
    neighbourhood = np.asarray(neighbourhood, dtype=np.float64)
    blend = blend_values(network, neighbourhood, weight)
    report = {"n_entries": len(entries), "neighbor_weight": float(weight)}
    for name, est in (("network", network), ("neighbourhood", neighbourhood), ("blend", blend)):
        report[f"{name}_mse"] = float(np.mean((est - truth) ** 2)) if truth.size else float("nan")
        report[f"{name}_pearson"] = _pearson(truth, est)
    report["gene_mse"] = shrunk_gene_mse(entries.cols, (blend - truth) ** 2, n_genes, features=gene_features)
    return report


def calibrate(
    network_log1p: Callable[[np.ndarray], np.ndarray],
    X,
    entries: CalibrationEntries,
    targets: np.ndarray,
    *,
    n_neighbors: int,
    weight: float | str = "auto",
    random_state: int = 0,
    rows_per_chunk: int = 512,
    batches: np.ndarray | None = None,
) -> tuple[float, dict]:
    """Choose the neighbourhood's weight on the hidden ``entries`` of ``X`` and score the result.

    ``X`` is the matrix the network was trained on, with ``entries`` already hidden (:func:`hide`); the
    neighbourhood is built from it too, so no hidden count reaches either estimate. ``network_log1p`` maps dense
    rows of ``X`` (all genes) and their row numbers to the network's value if detected (log1p) of the ``targets``
    columns; ``batches`` (a code per row of ``X``) makes the neighbourhood batch-aware. Entries of
    other genes are dropped. ``weight="auto"`` takes :func:`choose_weight`, a number is kept. Returns
    ``(weight, report)`` with the :func:`calibration_report` of the kept entries.
    """
    from ._utils import dense_rows

    targets = np.asarray(targets)
    position = np.full(X.shape[1], -1, dtype=np.int64)
    position[targets] = np.arange(targets.size)
    keep = position[entries.cols] >= 0
    order = np.argsort(entries.rows[keep], kind="stable")
    entries = CalibrationEntries(*(a[keep][order] for a in (entries.rows, entries.cols, entries.values)))
    network = np.empty(len(entries), dtype=np.float64)
    neighbourhood = np.empty(len(entries), dtype=np.float64)
    if len(entries):
        nb = fit_neighbourhood(
            X, columns=targets, n_neighbors=n_neighbors, n_pcs=N_PCS, random_state=random_state, batches=batches
        )
        cells = np.unique(entries.rows)
        for start in range(0, cells.size, rows_per_chunk):
            chunk = cells[start : start + rows_per_chunk]
            lo, hi = np.searchsorted(entries.rows, [chunk[0], chunk[-1] + 1])  # entries are sorted by row
            local = np.searchsorted(chunk, entries.rows[lo:hi])
            cols = position[entries.cols[lo:hi]]
            network[lo:hi] = network_log1p(dense_rows(X, chunk), chunk)[local, cols]
            neighbourhood[lo:hi] = nb.log1p_if_detected(chunk)[local, cols]
    truth = np.log1p(entries.values)
    w = choose_weight(truth, network, neighbourhood) if weight == "auto" else float(weight)
    report = calibration_report(entries, network, neighbourhood, w, n_genes=X.shape[1], gene_features=gene_features(X))
    return w, report


# ------------------------------------------------------------------ the fitted model's side
def model_neighbourhood(model, X, target_genes: np.ndarray, *, own=None, target=None):
    """Build the neighbourhood of the cells of ``X`` for ``model``'s targets; ``None`` where it has no weight.

    ``own`` and ``target``: the cells' batch codes and the batch each is predicted for (models with batches).
    """
    if model.params["neighbors"] == 0 or model.neighbor_weight_ == 0 or X.shape[0] < 2:
        return None
    return fit_neighbourhood(
        X,
        columns=target_genes,
        n_neighbors=model.params["neighbors"],
        n_pcs=N_PCS,
        random_state=model.random_state,
        batches=own,
        target=target,
    )


def calibrate_model(model, Xfit, hidden: CalibrationEntries, *, rows_per_chunk: int, codes=None) -> tuple[float, dict]:
    """``(neighbor_weight_, calibration_)`` of a just-trained ``model`` from the ``hidden`` entries of ``Xfit``."""
    from . import _logging as logg
    from ._fills import detected_log1p

    def network_log1p(raw, rows):
        value, prob = model._heads(raw, None if codes is None else codes[rows])
        return detected_log1p(value, prob, zero_fraction=model._target_zero_fraction(), log_max=model.log_max_)

    weight, report = calibrate(
        network_log1p,
        Xfit,
        hidden,
        model._target_genes(),
        n_neighbors=model.params["neighbors"],
        weight=model.params["neighbor_weight"],
        random_state=model.random_state,
        rows_per_chunk=rows_per_chunk,
        batches=codes,
    )
    logg.info(
        f"    neighbourhood weight {weight:.2f}; on {report['n_entries']} hidden non-zeros: MSE "
        f"{report['blend_mse']:.4f} (network alone {report['network_mse']:.4f}), Pearson {report['blend_pearson']:.3f}"
    )
    return weight, report
