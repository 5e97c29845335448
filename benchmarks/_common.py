"""Shared helpers of the speed benchmarks: data, block selection, the original's branch structure, timing.

Nothing here is part of the package; the benchmarks import it as ``_common`` (run them from the repository
root as ``python benchmarks/<script>.py``).
"""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import sparse

MOUSE1M = Path("/work/shared/data/mouse1m_10k/mouse1m_10k.h5ad")
CACHE = Path(os.environ.get("SDI_BENCH_CACHE", "/tmp/scdeepimpute_bench"))


# --------------------------------------------------------------------------- data
def load_mouse1m() -> sparse.csr_matrix:
    """The 10k x 1000 Mouse1M subset (raw counts, CSR float32)."""
    import anndata as ad

    return sparse.csr_matrix(ad.read_h5ad(MOUSE1M).X, dtype=np.float32)


SIM_DESCRIPTION = (
    "Splat-like simulation (benchmarks/_common.py:simulate_counts): 5 cell types (10/10/20/20/40%), "
    "gene means Gamma(0.6, rate 0.3) with 5% outliers, 20% DE genes per type (log-normal factor, loc 0.5, "
    "scale 0.4), library sizes LogNormal(9.1, 0.3), Splat BCV (0.1 + 1/sqrt(mu)) * sqrt(60/chi2_60), "
    "counts Gamma-Poisson (negative binomial), no extra dropout; 7000 genes simulated, then the first "
    "{n_genes} genes detected in >= 20% of the 50k cells are kept (paper Fig 6: 3205 genes >= 20%); "
    "smaller sizes are the first n cells"
)


def simulate_counts(
    n_cells: int, n_genes_sim: int = 7000, *, seed: int = 0, chunk: int = 5000
) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Negative-binomial counts with cell types (Splat-like), generated in row chunks; returns (CSR, groups)."""
    rng = np.random.default_rng(seed)
    probs = np.array([0.1, 0.1, 0.2, 0.2, 0.4])
    base = rng.gamma(0.6, 1 / 0.3, n_genes_sim)
    outlier = rng.random(n_genes_sim) < 0.05
    base[outlier] = np.median(base) * rng.lognormal(4.0, 0.5, outlier.sum())
    de = np.ones((probs.size, n_genes_sim))
    for g in range(probs.size):
        sel = rng.random(n_genes_sim) < 0.2
        fac = rng.lognormal(0.5, 0.4, sel.sum())
        fac[rng.random(sel.sum()) < 0.5] **= -1
        de[g, sel] = fac
    means = base * de
    props = means / means.sum(axis=1, keepdims=True)  # per type, proportions
    chi = np.sqrt(60.0 / rng.chisquare(60.0, n_genes_sim))
    groups = rng.choice(probs.size, size=n_cells, p=probs)
    libs = rng.lognormal(9.1, 0.3, n_cells)
    parts = []
    for start in range(0, n_cells, chunk):
        r = np.random.default_rng([seed, start])
        sl = slice(start, min(start + chunk, n_cells))
        mu = props[groups[sl]] * libs[sl, None]
        bcv = (0.1 + 1 / np.sqrt(mu)) * chi
        lam = r.gamma(1 / bcv**2, mu * bcv**2)
        counts = r.poisson(lam).astype(np.float32)
        parts.append(sparse.csr_matrix(counts))
    return sparse.vstack(parts, format="csr"), groups


def speed_data_path(n_cells: int, n_genes: int, cache: Path = CACHE) -> Path:
    return cache / f"sim_{n_genes}g_{n_cells}c.npz"


def make_speed_data(sizes: list[int], n_genes: int = 3200, cache: Path = CACHE) -> dict[int, Path]:
    """Write (once) the simulated matrices for each size in ``sizes`` (first n cells of the largest)."""
    cache.mkdir(parents=True, exist_ok=True)
    paths = {n: speed_data_path(n, n_genes, cache) for n in sizes}
    if all(p.exists() for p in paths.values()):
        return paths
    n_max = max(max(sizes), 50_000)
    X, _ = simulate_counts(n_max)
    det = np.diff(X.tocsc().indptr) / X.shape[0]
    keep = np.flatnonzero(det >= 0.2)[:n_genes]
    if keep.size < n_genes:
        msg = f"only {keep.size} simulated genes are detected in >= 20% of cells; need {n_genes}"
        raise RuntimeError(msg)
    X = X[:, keep].tocsr()
    for n, p in paths.items():
        sparse.save_npz(p, X[:n], compressed=False)
    return paths


def mask_nonzeros(X: sparse.csr_matrix, n_per_gene: int = 10, seed: int = 0):
    """Zero ``n_per_gene`` random non-zeros of every gene having more; return (masked, rows, cols, truth)."""
    rng = np.random.default_rng(seed)
    Xc = X.tocsc(copy=True)
    rows, cols, vals = [], [], []
    for g in range(Xc.shape[1]):
        lo, hi = Xc.indptr[g], Xc.indptr[g + 1]
        if hi - lo <= n_per_gene:
            continue
        pick = lo + rng.choice(hi - lo, n_per_gene, replace=False)
        rows.append(Xc.indices[pick])
        cols.append(np.full(n_per_gene, g))
        vals.append(Xc.data[pick].copy())
        Xc.data[pick] = 0
    Xc.eliminate_zeros()
    return Xc.tocsr(), np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)


def masked_speed_data(n_cells: int, n_genes: int, cache: Path = CACHE):
    """The speed data masked by ``mask_nonzeros(X, 10, seed=0)``: ``(masked CSR, rows, cols, truth)``.

    Written once (a folder of ``.npy`` arrays beside the unmasked matrix), so that a benchmark process reads
    only the masked input, straight into its arrays: masking holds two copies of the matrix, and reading an
    ``.npz`` member holds its bytes beside the array, either of which would set that process's peak memory.
    """
    folder = cache / f"sim_{n_genes}g_{n_cells}c_masked10"
    names = ("data", "indices", "indptr", "shape", "rows", "cols", "truth")
    if not all((folder / f"{k}.npy").exists() for k in names):
        X = sparse.load_npz(speed_data_path(n_cells, n_genes, cache)).tocsr()
        Xm, rows, cols, truth = mask_nonzeros(X, 10, seed=0)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {"data": Xm.data, "indices": Xm.indices, "indptr": Xm.indptr, "shape": np.asarray(Xm.shape),
                  "rows": rows, "cols": cols, "truth": truth}
        for k, v in arrays.items():
            np.save(folder / f"{k}.npy", v)
    z = {k: np.load(folder / f"{k}.npy") for k in names}
    Xm = sparse.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]), copy=False)
    return Xm, z["rows"], z["cols"], z["truth"]


def masked_mse(truth: np.ndarray, imputed: np.ndarray) -> float:
    return float(np.mean((np.log1p(truth) - np.log1p(np.clip(imputed, 0, None))) ** 2))


# --------------------------------------------------------------------------- blocks
@dataclass
class Blocks:
    blocks: list[np.ndarray]
    predictors: list[np.ndarray]
    layout: object  # scdeepimpute._layout.BlockLayout

    def forward_flops_per_cell(self, hidden: int, detection_head: bool = False) -> int:
        """Multiply-add flops (2 per MAC) of one cell's forward pass over the real (unpadded) block sizes."""
        per = [2 * len(p) * hidden + 2 * hidden * len(b) * (2 if detection_head else 1)
               for b, p in zip(self.blocks, self.predictors, strict=True)]
        return int(sum(per))


def select_blocks(
    X, *, min_vmr: float, subset_size: int = 512, n_predictors: int = 5, seed: int = 0, authors_sizes: bool = False
) -> Blocks:
    """Targets, predictors and fused layout with scdeepimpute's own selection code.

    ``authors_sizes``: cut the targets into blocks of ``subset_size`` and one short last block, as the authors'
    code does before completing it with random genes (and as scdeepimpute did before it evened out blocks that
    cannot be completed), so that the original-structure baseline keeps the authors' block sizes.
    """
    from scdeepimpute._layout import BlockLayout
    from scdeepimpute._selection import select_predictors, split_targets
    from scdeepimpute._utils import mean_var

    mean, var = mean_var(X)
    split = split_targets(mean, var, min_vmr=min_vmr, subset_size=subset_size, rng=np.random.default_rng(seed))
    blocks = split.blocks
    if authors_sizes and split.targets.size > subset_size:  # at most subset_size: the two halves stay
        targets = np.random.default_rng(seed).permutation(split.targets)
        blocks = [np.sort(targets[i : i + subset_size]) for i in range(0, targets.size, subset_size)]
    preds = select_predictors(X, blocks, mean, var, n_predictors=n_predictors)
    return Blocks(blocks, preds, BlockLayout.from_blocks(blocks, preds))


def split_cells(n: int, fraction: float = 0.05, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, round(fraction * n))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def val_loss_numpy(y: list[np.ndarray], yhat: list[np.ndarray]) -> float:
    """Sum over blocks of mean(y * (y - yhat)^2): the paper's loss, evaluated identically for both structures."""
    return float(sum(np.mean(a * (a - b) ** 2, dtype=np.float64) for a, b in zip(y, yhat, strict=True)))


# --------------------------------------------------------------------------- the original's structure
def build_branches(blocks: Blocks, *, hidden: int = 256, dropout: float = 0.2, learning_rate: float = 1e-4,
                   seed: int = 0):
    """The authors' network: one Keras functional model with one Input and one branch per block.

    ``Input(P_k) -> Dense(hidden, relu) -> Dropout -> Dense(S_k, softplus)``, Keras default initialisers
    (glorot_uniform weights, zero biases: the scheme the fused network reproduces per block), loss
    ``mean(y * (y - y_hat)^2)`` on every output, summed by Keras; Adam.
    """
    from scdeepimpute._backend import import_keras

    tf, keras = import_keras()
    keras.utils.set_random_seed(seed)
    inputs, outputs = [], []
    for k, (b, p) in enumerate(zip(blocks.blocks, blocks.predictors, strict=True)):
        x = keras.Input((len(p),), name=f"in{k}")
        h = keras.layers.Dense(hidden, activation="relu", name=f"dense{k}")(x)
        h = keras.layers.Dropout(dropout, seed=seed, name=f"dropout{k}")(h)
        out = keras.layers.Dense(len(b), activation="softplus", name=f"out{k}")(h)
        inputs.append(x)
        outputs.append(out)
    model = keras.Model(inputs, outputs)

    def wmse(y_true, y_pred):
        return tf.reduce_mean(y_true * tf.square(y_true - y_pred))

    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss=wmse)
    return model


def branch_arrays(X, rows: np.ndarray, blocks: Blocks) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Dense log1p inputs and targets per block (the original densifies everything before ``fit``)."""
    from scdeepimpute._utils import dense_rows

    xs, ys = [], []
    for b, p in zip(blocks.blocks, blocks.predictors, strict=True):
        xs.append(np.log1p(dense_rows(X, rows, p)))
        ys.append(np.log1p(dense_rows(X, rows, b)))
    return xs, ys


# --------------------------------------------------------------------------- machine
def matmul_gflops(n: int = 4096, reps: int = 5) -> float:
    """Best-of-``reps`` float32 ``tf.matmul`` of two n x n matrices, in GFLOP/s (2 n^3 flops)."""
    from scdeepimpute._backend import import_keras

    tf, _ = import_keras()
    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    tf.matmul(a, b).numpy()
    best = np.inf
    for _ in range(reps):
        t = time.perf_counter()
        tf.matmul(a, b).numpy()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def peak_rss_mb() -> float:
    """Peak resident set size of this process (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class RssSampler:
    """This process's RSS sampled by a background thread: ``now()`` and the peak since the last ``reset()`` (MB).

    ``ru_maxrss`` cannot be reset, so the peak of one phase (fit, predict) after another needs sampling.
    """

    def __init__(self, interval: float = 0.02):
        import threading

        import psutil

        self._proc = psutil.Process(os.getpid())
        self._peak = 0
        self._interval = interval
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        while True:
            self._peak = max(self._peak, self._proc.memory_info().rss)
            time.sleep(self._interval)

    def now(self) -> float:
        return self._proc.memory_info().rss / 2**20

    def reset(self) -> None:
        self._peak = 0

    def peak(self) -> float:
        return max(self._peak, self._proc.memory_info().rss) / 2**20


def machine_info() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "scdeepimpute"], capture_output=True,
                               text=True, check=False).stdout.strip()
        commit += " (scdeepimpute/ modified)" if dirty else ""
    except OSError:
        commit = "unknown"
    import scdeepimpute

    src = Path(scdeepimpute.__file__).parent.parent
    if src.resolve() != Path(__file__).resolve().parent.parent:
        commit = f"benchmarks at {commit}; scdeepimpute imported from {src}"
    from importlib.metadata import version

    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "commit": commit,
        "cpu": f"{cpu}, {os.cpu_count()} logical cores",
        "python": platform.python_version(),
        "tensorflow": version("tensorflow"),
        "keras": version("keras"),
    }


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def write_section(path: Path, name: str, text: str) -> None:
    """Replace (or append) the block between ``<!-- begin name -->`` and ``<!-- end name -->`` in ``path``."""
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    old = path.read_text() if path.exists() else "# Speed benchmarks\n\nWritten by the scripts in benchmarks/.\n"
    block = f"{begin}\n{text.rstrip()}\n{end}"
    if begin in old and end in old:
        head, rest = old.split(begin, 1)
        new = head + block + rest.split(end, 1)[1]
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    path.write_text(new)
