"""Batch-aware imputation on CellBench: cell-line separation and batch mixing, with and without ``batch_key``.

Two settings from ``../shared/data/cellbench`` (cell identity from SNP demultiplexing, singlets only):

* ``celseq2+dropseq``: ``sc_celseq2`` and ``sc_dropseq`` pooled (the same three cell lines, two technologies;
  batch = technology), on the genes both share;
* ``5cl plates``: the three five-line CEL-seq2 plates ``sc_celseq2_5cl_p1/p2/p3`` (batch = plate).

Genes detected in >= 5 cells are kept. Each layer goes through ``sdi.tl.cluster`` (normalize_total, log1p, HVG,
scale, PCA, kNN, Leiden at as many clusters as cell lines) and is scored on its PCA: cell-line ARI of the
Leiden clusters, silhouette by cell line, and batch ASW within cell line (scIB: ``1 - |silhouette of batch|`` per
cell from :func:`sklearn.metrics.silhouette_samples`, averaged within each cell line, then over cell lines;
1 = batches fully mixed). iLISI is left out: no library for it (scib-metrics, harmonypy) is installed here.

Rows: raw counts; ``imputed`` without ``batch_key``; ``imputed`` with ``batch_key`` for each cell's own batch
(``own``) and for one reference batch (``ref=<batch>``, the largest); the same with ``policy="all"`` for the
reference (every entry of a target gene predicted, not only zeros); MAGIC (``sdi.tl.impute_magic``). Seeds 0, 1, 2
(imputation and clustering). ``--quick``: one seed, 2 epochs, 300 genes of the first setting (a smoke test).
``--neighbours within`` searches the batch-aware neighbourhood within the target batch instead of among all cells.

    python benchmarks/batches.py            # writes benchmarks/RESULTS_batches.md
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

CELLBENCH = C.SHARED / "cellbench"
SETTINGS = {
    "celseq2+dropseq": {"sc_celseq2": "CEL-seq2", "sc_dropseq": "Drop-seq"},
    "5cl plates": {"sc_celseq2_5cl_p1": "p1", "sc_celseq2_5cl_p2": "p2", "sc_celseq2_5cl_p3": "p3"},
}
LABELS, BATCH = "cell_type", "batch"
MIN_CELLS = 5


def load_setting(name: str):
    """The setting's singlets pooled on their shared genes, genes detected in >= 5 cells, CSR float32 counts."""
    import anndata as ad
    from scipy import sparse

    parts = []
    for file, batch in SETTINGS[name].items():
        a = ad.read_h5ad(CELLBENCH / f"{file}.h5ad")
        a = a[a.obs["demuxlet_cls"] == "SNG"].copy()
        a.obs[BATCH] = batch
        a.var_names_make_unique()
        parts.append(a)
    pooled = ad.concat(parts, join="inner", index_unique="-")
    pooled.X = sparse.csr_matrix(pooled.X, dtype=np.float32)
    keep = np.asarray((pooled.X > 0).sum(axis=0)).ravel() >= MIN_CELLS
    pooled = pooled[:, keep].copy()
    pooled.obs[BATCH] = pooled.obs[BATCH].astype("category")
    pooled.obs[LABELS] = pooled.obs[LABELS].astype(str).astype("category")
    return pooled


def batch_asw(embedding: np.ndarray, labels: np.ndarray, batches: np.ndarray) -> float:
    """scIB's batch ASW: per cell ``1 - |silhouette by batch|`` within its cell line, mean per line, mean of lines."""
    from sklearn.metrics import silhouette_samples

    per_line = []
    for line in np.unique(labels):
        cells = labels == line
        if np.unique(batches[cells]).size < 2:
            continue
        s = silhouette_samples(embedding[cells], batches[cells])
        per_line.append(np.mean(1 - np.abs(s)))
    return float(np.mean(per_line))


def score(adata, layer: str | None, seed: int) -> dict[str, float]:
    import scdeepimpute as sdi

    name = "X" if layer is None else layer
    sdi.tl.cluster(adata, layer=layer, labels_key=LABELS, random_state=seed, key_added=name)
    pcs = adata.obsm[f"X_pca_{name}"]
    labels, batches = adata.obs[LABELS].to_numpy(), adata.obs[BATCH].to_numpy()
    m = sdi.tl.clustering_metrics(labels, adata.obs[f"leiden_{name}"].to_numpy(), pcs)
    return {"ari": m["ari"], "silhouette": m["silhouette"], "batch_asw": batch_asw(pcs, labels, batches)}


def run_setting(name: str, seeds: list[int], *, quick: bool, neighbours: str) -> dict[str, list[dict]]:
    import scdeepimpute as sdi
    from scdeepimpute import _neighbors

    _neighbors.BATCH_NEIGHBOURS = neighbours
    adata = load_setting(name)
    if quick:
        adata = adata[:, np.argsort(-np.asarray(adata.X.sum(axis=0)).ravel())[:300]].copy()
    ref = str(adata.obs[BATCH].value_counts().idxmax())
    epochs = {"max_epochs": 2} if quick else {}
    print(
        f"## {name}: {adata.n_obs} cells x {adata.n_vars} genes; batches "
        + ", ".join(f"{b} {n}" for b, n in adata.obs[BATCH].value_counts().sort_index().items())
        + f"; reference batch {ref}",
        flush=True,
    )
    scores: dict[str, list[dict]] = {}
    for seed in seeds:
        t0 = time.perf_counter()
        work = adata.copy()
        rows = {"raw counts": None}
        sdi.pp.deepimpute(work, key_added="plain", random_state=seed, **epochs)
        rows["imputed, no batch_key"] = "plain"
        model = sdi.DeepImpute(random_state=seed, **epochs).fit(work, batch_key=BATCH, progress=False)
        sdi.pp.deepimpute(work, model=model, key_added="own")
        rows["imputed, batch_key (own)"] = "own"
        sdi.pp.deepimpute(work, model=model, batch=ref, key_added="ref")
        rows[f"imputed, batch_key (ref={ref})"] = "ref"
        sdi.pp.deepimpute(work, model=model, batch=ref, policy="all", key_added="refall")
        rows[f"imputed, batch_key (ref={ref}, policy=all)"] = "refall"
        if not quick:
            work.layers["magic"] = sdi.tl.impute_magic(work, random_state=seed)
            rows["MAGIC"] = "magic"
        fit_s = time.perf_counter() - t0
        for label, layer in rows.items():
            s = score(work, layer, seed)
            scores.setdefault(label, []).append(s)
            print(
                f"seed {seed}  {label:<44} ARI {s['ari']:.3f}  silhouette {s['silhouette']:.3f}  "
                f"batch ASW {s['batch_asw']:.3f}",
                flush=True,
            )
        print(f"seed {seed}: imputation {fit_s:.0f} s", flush=True)
    return scores


def table(scores: dict[str, list[dict]]) -> str:
    rows = []
    for label, runs in scores.items():
        cells = [label]
        for k in ("ari", "silhouette", "batch_asw"):
            v = np.array([r[k] for r in runs])
            cells.append(f"{v.mean():.3f} ± {v.std():.3f}" if v.size > 1 else f"{v[0]:.3f}")
        rows.append(cells)
    return C.markdown_table(["layer", "cell-line ARI", "silhouette (cell line)", "batch ASW within cell line"], rows)


def verdict(scores: dict[str, list[dict]]) -> str:
    """The issue's done-when on one setting, from the means over seeds."""
    mean = {label: {k: float(np.mean([r[k] for r in runs])) for k in runs[0]} for label, runs in scores.items()}
    raw, plain = mean["raw counts"], mean["imputed, no batch_key"]
    lines = []
    for label, m in mean.items():
        if not label.startswith("imputed, batch_key"):
            continue
        ok = (
            m["batch_asw"] >= raw["batch_asw"] and m["batch_asw"] > plain["batch_asw"] and m["ari"] >= raw["ari"] - 0.02
        )
        lines.append(
            f"- {label}: batch ASW {m['batch_asw']:.3f} vs raw {raw['batch_asw']:.3f} "
            f"({m['batch_asw'] - raw['batch_asw']:+.3f}) and no batch_key {plain['batch_asw']:.3f} "
            f"({m['batch_asw'] - plain['batch_asw']:+.3f}); ARI {m['ari']:.3f}"
            f" vs raw - 0.02 = {raw['ari'] - 0.02:.3f}: {'met' if ok else 'missed'}"
        )
    return "\n".join(lines)


def main() -> None:
    p = C.parser(__doc__)
    p.add_argument("--neighbours", choices=["within", "centred"], default="centred")
    p.add_argument("--settings", nargs="*", default=list(SETTINGS))
    p.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    args = p.parse_args()
    C.quiet()
    if not CELLBENCH.exists():
        print(f"needs {CELLBENCH}")
        return
    seeds = [0] if args.quick else args.seeds
    settings = list(SETTINGS)[:1] if args.quick else args.settings
    t0 = time.perf_counter()
    sections = []
    for name in settings:
        scores = run_setting(name, seeds, quick=args.quick, neighbours=args.neighbours)
        text = f"### {name}\n\n{table(scores)}\n\n{verdict(scores)}\n"
        print(text, flush=True)
        sections.append(text)
    wall = time.perf_counter() - t0
    if args.quick:
        return
    info = C.machine_info()
    head = (
        f"## CellBench batches (neighbours {args.neighbours}; seeds {', '.join(map(str, seeds))}, mean ± sd)\n\n"
        f"`python benchmarks/batches.py --neighbours {args.neighbours} --seeds {' '.join(map(str, seeds))}` "
        f"({wall:.0f} s; {info['date']}, commit {info['commit']}, {info['cpu']}).\n\n"
    )
    path = C.ROOT / "benchmarks" / "RESULTS_batches.md"
    if not path.exists():
        path.write_text(
            "# Batch benchmarks\n\nWritten by `benchmarks/batches.py`; see its docstring for the protocol.\n"
        )
    C.write_section(path, f"batches-{args.neighbours}", head + "\n".join(sections))


if __name__ == "__main__":
    main()
