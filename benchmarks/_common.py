"""Shared helpers of the benchmarks: the one dataset loader, the speed data, the original's structure, timing.

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
from typing import TYPE_CHECKING

import numpy as np
from scipy import sparse

if TYPE_CHECKING:
    import anndata as ad

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CACHE = Path(os.environ.get("SDI_BENCH_CACHE", "/tmp/scdeepimpute_bench"))

#: The public datasets in ../shared/data: file, labels column (or None), and an optional (column, value) filter.
DATASETS: dict[str, tuple[str, str | None, tuple[str, str] | None]] = {
    "pbmc4k_2100": ("pbmc4k_2100/pbmc4k_2100.h5ad", "cell_type", None),
    "pbmc3k_ds30": ("pbmc3k_ds30/pbmc3k_ds30.h5ad", "cell_type", None),
    "mouse1m_10k": ("mouse1m_10k/mouse1m_10k.h5ad", None, None),
    "celseq2": ("cellbench/sc_celseq2.h5ad", "cell_line", ("demuxlet_cls", "SNG")),
    "dropseq": ("cellbench/sc_dropseq.h5ad", "cell_line", None),
    "celseq2_5cl_p1": ("cellbench/sc_celseq2_5cl_p1.h5ad", "cell_line_demuxlet", ("demuxlet_cls", "SNG")),
    "zeisel_200": ("zeisel_200/zeisel_200.h5ad", None, None),
}


# --------------------------------------------------------------------------- data
def dataset_available(name: str) -> bool:
    """Whether ``load_dataset(name)`` can run here (the simulator always can)."""
    return name.startswith("sim") or (SHARED / DATASETS[name][0]).exists()


def load_dataset(
    name: str, *, min_detection: float = 0.05, n_obs: int | None = None, seed: int = 0
) -> tuple[ad.AnnData, str | None]:
    """One benchmark dataset as CSR float32 counts and its labels column (or None).

    ``name``: a key of :data:`DATASETS`, ``"simulation"`` (``sdi.datasets.simulate(preset="paper")``) or
    ``"sim_<cells>x<genes>"`` (the same preset at that size). ``n_obs``: a random subsample of that many cells
    (seed ``seed``). Genes detected in fewer than ``min_detection`` of the (kept) cells are dropped, as in the
    paper's accuracy protocol.
    """
    import anndata as ad

    import scdeepimpute as sdi

    if name.startswith("sim"):
        size = {}
        if "_" in name:
            cells, genes = name.split("_", 1)[1].split("x")
            size = {"n_obs": int(cells), "n_vars": int(genes)}
        a, labels = sdi.datasets.simulate(preset="paper", random_state=seed, **size), "group"
    else:
        path, labels, keep = DATASETS[name]
        a = ad.read_h5ad(SHARED / path)
        if keep is not None:
            a = a[a.obs[keep[0]] == keep[1]].copy()
        if labels is not None and labels not in a.obs:
            labels = "cell_type" if "cell_type" in a.obs else None
    a.var_names_make_unique()
    if n_obs is not None and n_obs < a.n_obs:
        a = a[np.sort(np.random.default_rng(seed).choice(a.n_obs, n_obs, replace=False))].copy()
    a.X = sparse.csr_matrix(a.X, dtype=np.float32)
    detected = np.asarray((a.X > 0).mean(axis=0)).ravel() >= min_detection
    return a[:, detected].copy(), labels


#: The speed benchmarks' simulation: ``sdi.datasets.simulate`` keywords (Splat with five groups, more DE than the
#: paper preset, smaller libraries, no dropout) before keeping the genes detected in >= 20% of the cells.
SIM_PARAMS: dict[str, object] = {
    "group_prob": (0.1, 0.1, 0.2, 0.2, 0.4),
    "de_prob": 0.2,
    "de_fac_loc": 0.5,
    "de_fac_scale": 0.4,
    "lib_loc": 9.1,
    "lib_scale": 0.3,
}

SIM_DESCRIPTION = (
    "Splat simulation (`sdi.datasets.simulate(chunk_size=5000, **benchmarks/_common.py:SIM_PARAMS)`): 5 cell "
    "types (10/10/20/20/40%), Splatter's gene means and outliers, 20% DE genes per type (log-normal factor, loc "
    "0.5, scale 0.4), library sizes LogNormal(9.1, 0.3), Splatter's BCV, no dropout; 7000 genes simulated, then "
    "the first {n_genes} genes detected in >= 20% of the 50k cells are kept (paper Fig 6: 3205 genes >= 20%); "
    "smaller sizes are the first n cells"
)


def speed_data_path(n_cells: int, n_genes: int, cache: Path = CACHE) -> Path:
    return cache / f"splat_{n_genes}g_{n_cells}c.npz"


def make_speed_data(sizes: list[int], n_genes: int = 3200, cache: Path = CACHE) -> dict[int, Path]:
    """Write (once) the simulated matrices for each size in ``sizes`` (first n cells of the largest)."""
    import scdeepimpute as sdi

    cache.mkdir(parents=True, exist_ok=True)
    paths = {n: speed_data_path(n, n_genes, cache) for n in sizes}
    if all(p.exists() for p in paths.values()):
        return paths
    n_max = max(max(sizes), 50_000)
    a = sdi.datasets.simulate(n_obs=n_max, n_vars=7000, chunk_size=5000, random_state=0, **SIM_PARAMS)
    X = a.X
    del a
    det = np.diff(X.tocsc().indptr) / X.shape[0]
    keep = np.flatnonzero(det >= 0.2)[:n_genes]
    if keep.size < n_genes:
        msg = f"only {keep.size} simulated genes are detected in >= 20% of cells; need {n_genes}"
        raise RuntimeError(msg)
    X = X[:, keep].tocsr()
    for n, p in paths.items():
        sparse.save_npz(p, X[:n], compressed=False)
    return paths


def masked_speed_data(n_cells: int, n_genes: int, cache: Path = CACHE):
    """The speed data masked by ``sdi.tl.mask_counts`` (10 per gene, seed 0): ``(masked CSR, rows, cols, truth)``.

    Written once (a folder of ``.npy`` arrays beside the unmasked matrix), so that a benchmark process reads
    only the masked input, straight into its arrays: masking holds two copies of the matrix, and reading an
    ``.npz`` member holds its bytes beside the array, either of which would set that process's peak memory.
    """
    folder = cache / f"splat_{n_genes}g_{n_cells}c_masked10"
    names = ("data", "indices", "indptr", "shape", "rows", "cols", "truth")
    if not all((folder / f"{k}.npy").exists() for k in names):
        from scdeepimpute.tl import mask_counts

        X = sparse.load_npz(speed_data_path(n_cells, n_genes, cache)).tocsr()
        res = mask_counts(X, n_masked=10, random_state=0)
        Xm = sparse.csr_matrix(res.X)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {
            "data": Xm.data,
            "indices": Xm.indices,
            "indptr": Xm.indptr,
            "shape": np.asarray(Xm.shape),
            "rows": res.obs_idx,
            "cols": res.var_idx,
            "truth": res.values,
        }
        for k, v in arrays.items():
            np.save(folder / f"{k}.npy", v)
    z = {k: np.load(folder / f"{k}.npy") for k in names}
    Xm = sparse.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]), copy=False)
    return Xm, z["rows"], z["cols"], z["truth"]


def masked_mse(truth: np.ndarray, imputed: np.ndarray) -> float:
    from scdeepimpute.tl import masked_metrics

    return float(masked_metrics(truth, imputed)["mse"])


# --------------------------------------------------------------------------- blocks
@dataclass
class Blocks:
    blocks: list[np.ndarray]
    predictors: list[np.ndarray]
    layout: object  # scdeepimpute._layout.BlockLayout

    def forward_flops_per_cell(self, hidden: int, detection_head: bool = False) -> int:
        """Multiply-add flops (2 per MAC) of one cell's forward pass over the real (unpadded) block sizes."""
        per = [
            2 * len(p) * hidden + 2 * hidden * len(b) * (2 if detection_head else 1)
            for b, p in zip(self.blocks, self.predictors, strict=True)
        ]
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


# --------------------------------------------------------------------------- the original's structure
def build_branches(
    blocks: Blocks, *, hidden: int = 256, dropout: float = 0.2, learning_rate: float = 1e-4, seed: int = 0
):
    """The authors' network: one Keras functional model with one Input and one branch per block.

    ``Input(P_k) -> Dense(hidden, relu) -> Dropout -> Dense(S_k, softplus)``, Keras default initialisers
    (glorot_uniform weights, zero biases: the scheme the fused network reproduces per block), loss
    ``mean(y * (y - y_hat)^2)`` on every output, summed by Keras; Adam.
    """
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
    sub = X[rows]
    xs, ys = [], []
    for b, p in zip(blocks.blocks, blocks.predictors, strict=True):
        xs.append(np.log1p(_dense(sub[:, p])))
        ys.append(np.log1p(_dense(sub[:, b])))
    return xs, ys


def _dense(X) -> np.ndarray:
    return (X.toarray() if sparse.issparse(X) else np.asarray(X)).astype(np.float32, copy=False)


def import_keras():
    """``(tf, keras)`` on TensorFlow's backend, as the package runs them."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    return tf, keras


# --------------------------------------------------------------------------- machine
def matmul_gflops(n: int = 4096, reps: int = 5) -> float:
    """Best-of-``reps`` float32 ``tf.matmul`` of two n x n matrices, in GFLOP/s (2 n^3 flops)."""
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

    ``ru_maxrss`` cannot be reset, so the peak of one phase (fit, predict) after another needs sampling. Reads
    ``/proc/self/statm`` (Linux).
    """

    def __init__(self, interval: float = 0.02):
        import threading

        self._peak = 0.0
        self._interval = interval
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        while True:
            self._peak = max(self._peak, self.now())
            time.sleep(self._interval)

    @staticmethod
    def now() -> float:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def reset(self) -> None:
        self._peak = 0.0

    def peak(self) -> float:
        return max(self._peak, self.now())


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
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "scdeepimpute"], capture_output=True, text=True, check=False
        ).stdout.strip()
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


# --------------------------------------------------------------------------- command line
def parser(doc: str):
    """An ``argparse`` parser with the module docstring as help and the ``--quick`` flag every script has."""
    import argparse

    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny data, 1-2 epochs: the smoke test CI runs")
    return p


def quiet() -> None:
    """Silence scanpy's and TensorFlow's chatter (before TensorFlow is imported)."""
    import warnings

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore")
    import scanpy as sc

    sc.settings.verbosity = 0
