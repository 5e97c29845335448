"""The ``scdeepimpute`` command line: every input and output format, model reuse, the demo, and bad input."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
from scipy import io as spio
from scipy import sparse

from scdeepimpute._cli import main

from .conftest import make_counts

pytestmark = pytest.mark.filterwarnings("ignore:Writing zarr v2 data:UserWarning")

#: Tiny, fast training for every run (the method is the same).
FAST = ["--max-epochs", "2", "--hidden-units", "8", "--quiet"]
N_CELLS, N_GENES = 120, 40


@pytest.fixture(scope="module")
def counts() -> np.ndarray:
    return make_counts(N_CELLS, N_GENES, seed=7)


@pytest.fixture(scope="module")
def names():
    return [f"cell{i}" for i in range(N_CELLS)], [f"gene{j}" for j in range(N_GENES)]


# --------------------------------------------------------------------------- writers of each input format
def write_h5ad(path: Path, X, names) -> Path:
    a = ad.AnnData(sparse.csr_matrix(X))
    a.obs_names, a.var_names = names
    a.layers["counts"] = a.X.copy()
    a.obs["batch"] = "a"
    a.write_h5ad(path)
    return path


def write_zarr(path: Path, X, names) -> Path:
    a = ad.AnnData(X.copy())
    a.obs_names, a.var_names = names
    a.write_zarr(path)
    return path


def write_10x_h5(path: Path, X, names) -> Path:
    """A Cell Ranger v3 ``filtered_feature_bc_matrix.h5``: CSC genes x cells, i.e. CSR cells x genes."""
    csr = sparse.csr_matrix(X.astype(np.int32))
    cells, genes = names
    with h5py.File(path, "w") as f:
        m = f.create_group("matrix")
        m["barcodes"] = np.array([f"{c}-1" for c in cells], dtype="S")
        m["data"] = csr.data.astype(np.int32)
        m["indices"] = csr.indices.astype(np.int64)
        m["indptr"] = csr.indptr.astype(np.int64)
        m["shape"] = np.array([X.shape[1], X.shape[0]], dtype=np.int32)
        feat = m.create_group("features")
        feat["_all_tag_keys"] = np.array([b"genome"])
        feat["feature_type"] = np.array([b"Gene Expression"] * len(genes))
        feat["genome"] = np.array([b"GRCh38"] * len(genes))
        feat["id"] = np.array([f"ENSG{j:011d}" for j in range(len(genes))], dtype="S")
        feat["name"] = np.array(genes, dtype="S")
    return path


def write_10x_mtx(path: Path, X, names) -> Path:
    """A Cell Ranger v3 matrix folder: matrix.mtx.gz (genes x cells), features.tsv.gz, barcodes.tsv.gz."""
    cells, genes = names
    path.mkdir()
    with gzip.open(path / "matrix.mtx.gz", "wb") as fh:
        spio.mmwrite(fh, sparse.coo_matrix(X.T.astype(np.int64)))
    with gzip.open(path / "features.tsv.gz", "wt") as fh:
        fh.writelines(f"ENSG{j:011d}\t{g}\tGene Expression\n" for j, g in enumerate(genes))
    with gzip.open(path / "barcodes.tsv.gz", "wt") as fh:
        fh.writelines(f"{c}-1\n" for c in cells)
    return path


def write_table(path: Path, X, names, *, transpose: bool = False) -> Path:
    cells, genes = names
    df = pd.DataFrame(X.astype(np.int64), index=cells, columns=genes)
    (df.T if transpose else df).to_csv(path, sep="\t" if path.suffix == ".tsv" else ",")
    return path


INPUTS = {
    "h5ad": ("in.h5ad", write_h5ad, []),
    "zarr": ("in.zarr", write_zarr, []),
    "10x_h5": ("filtered_feature_bc_matrix.h5", write_10x_h5, []),
    "10x_mtx": ("filtered_feature_bc_matrix", write_10x_mtx, []),
    "csv": ("in.csv", write_table, []),
    "tsv_genes_as_rows": ("in.tsv", lambda p, X, n: write_table(p, X, n, transpose=True), ["--cell-axis", "columns"]),
}


def run(*argv) -> int:
    return main([str(a) for a in argv])


# --------------------------------------------------------------------------- every input format
@pytest.mark.parametrize("fmt", list(INPUTS))
def test_each_input_format(fmt, tmp_path, counts, names, capsys):
    filename, writer, extra = INPUTS[fmt]
    src = writer(tmp_path / filename, counts, names)
    out = tmp_path / "out.h5ad"
    assert run("impute", src, "-o", out, *extra, *FAST) == 0
    assert capsys.readouterr().err == ""  # --quiet
    a = ad.read_h5ad(out)
    assert a.shape == counts.shape
    X = a.X.toarray() if sparse.issparse(a.X) else a.X
    np.testing.assert_array_equal(X, counts)  # X untouched, cells as rows
    expected_genes = names[1]
    assert list(a.var_names) == expected_genes
    for key in ("imputed", "imputed_detected"):
        layer = a.layers[key]
        assert layer.shape == counts.shape
        np.testing.assert_array_equal(layer[counts > 0], counts[counts > 0])  # observed counts kept
    np.testing.assert_array_equal(a.var["imputed_target"], counts.var(axis=0) > 0)  # every non-constant gene
    assert not a.uns["imputed"]["params"]["pretrained"]
    if fmt == "h5ad":  # everything else in the input is carried over
        assert "counts" in a.layers
        assert list(a.obs["batch"].unique()) == ["a"]


# --------------------------------------------------------------------------- outputs, layers, model reuse
def _train(tmp_path_factory, counts, names, folder: str, *options) -> tuple:
    tmp = tmp_path_factory.mktemp(folder)
    src = write_h5ad(tmp / "in.h5ad", counts, names)
    out, model = tmp / "out.h5ad", tmp / "model"
    assert run("impute", src, "-o", out, "--save-model", model, *options, *FAST) == 0
    return src, ad.read_h5ad(out), model


@pytest.fixture(scope="module")
def trained(tmp_path_factory, counts, names):
    """One training run that saves its model and writes an .h5ad: reused by the tests below."""
    return _train(tmp_path_factory, counts, names, "trained", "--seed", "3")


@pytest.fixture(scope="module")
def trained_network(tmp_path_factory, counts, names):
    """Like ``trained``, the network alone (``--neighbors 0``): a chunked run searches neighbours within chunks."""
    return _train(tmp_path_factory, counts, names, "trained_network", "--neighbors", "0")


def test_model_reuse_gives_the_same_layers(trained, tmp_path):
    src, first, model = trained
    assert (model / "config.json").is_file()
    assert (model / "model.weights.h5").is_file()
    out = tmp_path / "again.h5ad"
    assert run("impute", src, "-o", out, "--model", model, "-q") == 0
    again = ad.read_h5ad(out)
    for key in ("imputed", "imputed_detected"):
        np.testing.assert_allclose(again.layers[key], first.layers[key], rtol=1e-6)
    assert again.uns["imputed"]["params"]["pretrained"]


@pytest.mark.parametrize(
    ("suffix", "fill", "layer"), [(".csv", None, "imputed"), (".tsv", "detected", "imputed_detected")]
)
def test_table_output_is_the_imputed_matrix(trained, tmp_path, suffix, fill, layer):
    src, first, model = trained
    out = tmp_path / f"out{suffix}"
    assert run("impute", src, "-o", out, "--model", model, "-q", *(["--fill", fill] if fill else [])) == 0
    df = pd.read_csv(out, sep="\t" if suffix == ".tsv" else ",", index_col=0)
    assert list(df.index) == list(first.obs_names)
    assert list(df.columns) == list(first.var_names)
    np.testing.assert_allclose(df.to_numpy(), first.layers[layer], rtol=1e-5)  # written with 6 significant digits


def test_lognorm_layer_and_table(trained, tmp_path):
    src, first, model = trained
    out = tmp_path / "out.h5ad"
    assert run("impute", src, "-o", out, "--model", model, "-q", "--lognorm") == 0
    written = ad.read_h5ad(out)
    assert list(written.uns["imputed"]["layers"]) == ["imputed", "imputed_detected", "imputed_lognorm"]
    np.testing.assert_allclose(written.layers["imputed"], first.layers["imputed"], rtol=1e-6)
    table = tmp_path / "out.csv"
    assert run("impute", src, "-o", table, "--model", model, "-q", "--fill", "lognorm") == 0
    np.testing.assert_allclose(pd.read_csv(table, index_col=0).to_numpy(), written.layers["imputed_lognorm"], rtol=1e-5)


@pytest.mark.parametrize("fill", ["detected", "expected"])
def test_table_fill_of_a_one_head_model(counts, names, tmp_path, capsys, fill):
    """A paper-preset model has one fill, ``detected``, in layer 'imputed': --fill detected writes it, expected fails.

    (Both used to be wrong: ``detected`` looked for 'imputed_detected', ``expected`` wrote the detected fill.)
    """
    src = write_h5ad(tmp_path / "in.h5ad", counts, names)
    first, model = tmp_path / "first.h5ad", tmp_path / "model"
    assert run("impute", src, "-o", first, "--preset", "paper", "--save-model", model, *FAST) == 0
    layers = ad.read_h5ad(first).layers
    assert list(layers) == ["counts", "imputed"]
    out = tmp_path / "out.csv"
    code = run("impute", src, "-o", out, "--model", model, "-q", "--fill", fill)
    if fill == "expected":
        assert code == 1
        assert "no detection head" in capsys.readouterr().err
        return
    assert code == 0
    np.testing.assert_allclose(pd.read_csv(out, index_col=0).to_numpy(), layers["imputed"], rtol=1e-5)


@pytest.mark.parametrize("out_name", ["out.zarr", "out.h5ad", "out.csv"])
def test_chunked_out_of_core_run_matches_in_memory(trained_network, tmp_path, out_name):
    src, first, model = trained_network
    out = tmp_path / out_name
    assert run("impute", src, "-o", out, "--model", model, "--chunk-size", "50", "-q") == 0
    if out_name.endswith(".csv"):
        np.testing.assert_allclose(pd.read_csv(out, index_col=0).to_numpy(), first.layers["imputed"], rtol=1e-5)
        return
    a = ad.read_zarr(out) if out_name.endswith(".zarr") else ad.read_h5ad(out)
    assert (a.X != first.X).nnz == 0
    for key in ("imputed", "imputed_detected"):
        np.testing.assert_allclose(a.layers[key], first.layers[key], rtol=1e-6)
    assert "counts" in a.layers


def test_chunked_training_on_a_subsample(tmp_path, counts, names, capsys):
    src = write_zarr(tmp_path / "in.zarr", counts, names)
    out = tmp_path / "out.zarr"
    assert (
        run(
            "impute",
            src,
            "-o",
            out,
            "--chunk-size",
            "32",
            "--train-size",
            "0.5",
            "--max-epochs",
            "2",
            "--hidden-units",
            "8",
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "lazily" in err
    assert "on 60 cells" in err
    assert "wrote" in err
    a = ad.read_zarr(out)
    assert a.layers["imputed"].shape == counts.shape
    assert a.uns["imputed"]["params"]["train_size"] == 0.5


def test_layer_genes_file_and_paper_preset(tmp_path, counts, names):
    a = ad.AnnData(np.log1p(counts))  # X is not counts: the counts are in a layer
    a.obs_names, a.var_names = names
    a.layers["raw"] = counts.copy()
    src = tmp_path / "in.h5ad"
    a.write_h5ad(src)
    genes = tmp_path / "genes.txt"
    genes.write_text("# targets\ngene1\ngene2\n\ngene3  # a comment\ngene5\n")
    out = tmp_path / "out.h5ad"
    assert run("impute", src, "-o", out, "--layer", "raw", "--genes-file", genes, "--preset", "paper", *FAST) == 0
    b = ad.read_h5ad(out)
    np.testing.assert_array_equal(b.X, a.X)
    assert list(b.var_names[b.var["imputed_target"]]) == ["gene1", "gene2", "gene3", "gene5"]
    assert "imputed_detected" not in b.layers  # the paper preset has one head
    assert b.uns["imputed"]["params"]["preset"] == "paper"


def test_demo(capsys):
    assert main(["demo", "--max-epochs", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "886 of 886 genes imputed" in out
    assert "2 epochs" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("  ")}
    assert {"imputed_detected", "imputed", "no"} <= set(rows)
    assert float(rows["imputed_detected"][0]) < float(rows["no"][1])  # "no imputation  MSE  n/a"
    assert "self-check: passed" in out


# --------------------------------------------------------------------------- bad input: exit code, one line
@pytest.fixture(scope="module")
def small_h5ad(tmp_path_factory, counts, names):
    return write_h5ad(tmp_path_factory.mktemp("bad") / "in.h5ad", counts, names)


BAD = {
    "missing input": (lambda d, s: ["impute", d / "nope.h5ad", "-o", d / "o.h5ad"], "input not found"),
    "unknown input format": (
        lambda d, s: ["impute", _touch(d / "counts.xlsx"), "-o", d / "o.h5ad"],
        "unknown input format",
    ),
    "folder of nothing": (lambda d, s: ["impute", _mkdir(d / "empty"), "-o", d / "o.h5ad"], "neither a .zarr"),
    "unknown output format": (lambda d, s: ["impute", s, "-o", d / "o.loom"], "unknown output format"),
    "not a 10x h5": (lambda d, s: ["impute", _h5(d / "x.h5"), "-o", d / "o.h5ad"], "cannot read"),
    "broken h5ad": (lambda d, s: ["impute", _touch(d / "x.h5ad", b"not hdf5"), "-o", d / "o.h5ad"], "cannot read"),
    "non-numeric csv": (lambda d, s: ["impute", _csv(d / "x.csv"), "-o", d / "o.csv"], "non-numeric"),
    "unknown layer": (
        lambda d, s: ["impute", s, "-o", d / "o.h5ad", "--layer", "spliced"],
        "layer 'spliced' not found",
    ),
    "too few training cells": (
        lambda d, s: ["impute", s, "-o", d / "o.h5ad", "--train-size", "5"],
        "at least 20 cells",
    ),
    "unknown genes": (lambda d, s: ["impute", s, "-o", d / "o.h5ad", "--genes-file", _genes(d)], "not in var_names"),
    "missing genes file": (
        lambda d, s: ["impute", s, "-o", d / "o.h5ad", "--genes-file", d / "g.txt"],
        "cannot read --genes-file",
    ),
    "missing model": (
        lambda d, s: ["impute", s, "-o", d / "o.h5ad", "--model", d / "nomodel"],
        "not a saved scdeepimpute model",
    ),
    "model and training options": (
        lambda d, s: ["impute", s, "-o", d / "o.h5ad", "--model", d, "--max-epochs", "3"],
        "only apply when training",
    ),
    "model and a seed": (
        lambda d, s: ["impute", s, "-o", d / "o.h5ad", "--model", d, "--seed", "3"],
        "--seed only apply when training",
    ),
    "save-model onto a saved model": (
        lambda d, s: ["impute", s, "-o", d / "o.h5ad", "--save-model", _touch(_mkdir(d / "m") / "config.json").parent],
        "already holds a saved model",
    ),
    "save-model into a non-empty folder": (
        lambda d, s: ["impute", s, "-o", d / "o.h5ad", "--save-model", _touch(_mkdir(d / "m") / "notes.txt").parent],
        "exists and is not empty",
    ),
    "save-model onto a file": (
        lambda d, s: ["impute", s, "-o", d / "o.h5ad", "--save-model", _touch(d / "model")],
        "is a file",
    ),
    "cell axis on h5ad": (
        lambda d, s: ["impute", s, "-o", d / "o.h5ad", "--cell-axis", "columns"],
        "CSV/TSV input only",
    ),
    "chunks on csv": (
        lambda d, s: ["impute", _csv(d / "y.csv", ok=True), "-o", d / "o.h5ad", "--chunk-size", "10"],
        "needs an .h5ad or .zarr input",
    ),
    "fill on h5ad": (lambda d, s: ["impute", s, "-o", d / "o.h5ad", "--fill", "detected"], "CSV/TSV output"),
    "output is input": (lambda d, s: ["impute", s, "-o", s], "OUTPUT is the INPUT"),
    "negative counts": (lambda d, s: ["impute", _csv(d / "neg.csv", neg=True), "-o", d / "o.h5ad"], "negative values"),
}


def _touch(p: Path, content: bytes = b"") -> Path:
    p.write_bytes(content)
    return p


def _mkdir(p: Path) -> Path:
    p.mkdir()
    return p


def _h5(p: Path) -> Path:
    with h5py.File(p, "w") as f:
        f["something"] = np.arange(3)
    return p


def _csv(p: Path, *, ok: bool = False, neg: bool = False) -> Path:
    X = make_counts(30, 6, seed=1)
    if neg:
        X[0, 0] = -1
    df = pd.DataFrame(X, columns=[f"g{j}" for j in range(6)]).astype(object)
    if not (ok or neg):
        df.iloc[3, 2] = "many"
    df.to_csv(p)
    return p


def _genes(d: Path) -> Path:
    p = d / "genes.txt"
    p.write_text("gene1\nNOT_A_GENE\n")
    return p


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_one_line_error(case, tmp_path, small_h5ad, capsys):
    make_args, expected = BAD[case]
    assert main([*map(str, make_args(tmp_path, small_h5ad)), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("scdeepimpute: error: "), err[0]
    assert expected in err[0], err[0]


def test_usage_errors_exit_2(capsys):
    for argv in (
        [],
        ["impute"],
        ["impute", "x.h5ad"],
        ["impute", "x.h5ad", "-o", "y.h5ad", "--train-size", "-1"],
        ["frobnicate"],
    ):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["impute", "--help"])
    assert e.value.code == 0
    assert "examples:" in capsys.readouterr().out


# --------------------------------------------------------------------------- the installed console script
def _console_script() -> str:
    script = Path(sys.executable).with_name("scdeepimpute")
    if not script.exists():
        pytest.skip("the scdeepimpute console script is not installed next to this Python")
    return str(script)


def test_console_script_end_to_end(tmp_path, counts, names):
    src = write_table(tmp_path / "in.csv", counts, names)
    out = tmp_path / "out.csv"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    ok = subprocess.run([_console_script(), "impute", src, "-o", out, *FAST], capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    assert "Traceback" not in ok.stderr
    assert "I0000" not in ok.stderr
    df = pd.read_csv(out, index_col=0)
    assert df.shape == counts.shape
    bad = subprocess.run(
        [_console_script(), "impute", tmp_path / "missing.h5ad", "-o", out], capture_output=True, text=True
    )
    assert bad.returncode == 1
    assert bad.stderr.strip() == f"scdeepimpute: error: input not found: {tmp_path / 'missing.h5ad'}"


def test_python_dash_m(tmp_path):
    """``python -m scdeepimpute`` is the same command line as the console script."""
    run = [sys.executable, "-m", "scdeepimpute"]
    helped = subprocess.run([*run, "impute", "--help"], capture_output=True, text=True)
    assert helped.returncode == 0
    assert helped.stdout.startswith("usage: scdeepimpute impute")
    missing = tmp_path / "missing.h5ad"
    bad = subprocess.run([*run, "impute", missing, "-o", tmp_path / "o.h5ad"], capture_output=True, text=True)
    assert bad.returncode == 1
    assert bad.stderr.strip() == f"scdeepimpute: error: input not found: {missing}"
