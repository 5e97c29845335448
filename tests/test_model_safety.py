"""Issue 16: the model API is as safe as ``pp.deepimpute``.

Checked input on every entry point, guarded ``save``, validated ``load``, atomic ``fit``, training-only
arguments refused with ``model=``, and a property test over random inputs: every call either imputes
(observed counts kept, shape and dtype right, input untouched) or raises ``ValueError`` and changes nothing.
Only the public API is used (plus ``Trainer.evaluate`` as the seam where a training failure is injected).
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from scipy import sparse

import scdeepimpute as sdi
from scdeepimpute._cli import main

from .conftest import FAST, make_counts

# Written before the implementation of issue 16: on 2962df5 most fault rows failed, as the issue reports.

N_CELLS, N_GENES = 120, 40
NAMES = [f"g{i}" for i in range(N_GENES)]
FORMATS = {"dense": np.asarray, "csr": sparse.csr_matrix, "csc": sparse.csc_matrix}


# --------------------------------------------------------------------------- helpers
def _adata(X, names=NAMES) -> ad.AnnData:
    a = ad.AnnData(X)
    a.var_names = list(names)
    a.obs_names = [f"c{i}" for i in range(a.n_obs)]
    a.obs["batch"] = "b"
    a.var["note"] = 1
    a.uns["keep"] = {"x": 1}
    return a


def _copy(M):
    if sparse.issparse(M):
        return M.copy()
    if type(M).__module__.startswith("dask."):
        return np.asarray(M.compute())
    return np.array(M, copy=True)


def _assert_same_matrix(got, want) -> None:
    if type(got).__module__.startswith("dask."):
        got = np.asarray(got.compute())
    assert sparse.issparse(got) == sparse.issparse(want), (type(got), type(want))
    assert sparse.issparse(got) or isinstance(got, np.ndarray), type(got)
    assert got.dtype == want.dtype
    assert got.shape == want.shape
    if sparse.issparse(want):
        assert got.format == want.format
        got, want = got.toarray(), want.toarray()
    np.testing.assert_array_equal(got, want)  # NaN at the same place counts as equal


def _snapshot(a: ad.AnnData) -> dict:
    return {
        "X": _copy(a.X),
        "layers": {k: _copy(v) for k, v in a.layers.items()},
        "obs": a.obs.copy(),
        "var": a.var.copy(),
        "uns": sorted(a.uns.keys()),
        "obsm": sorted(a.obsm.keys()),
        "is_view": a.is_view,
    }


def _assert_unchanged(a: ad.AnnData, snap: dict) -> None:
    assert a.is_view == snap["is_view"]
    assert sorted(a.layers.keys()) == sorted(snap["layers"])
    for k, v in snap["layers"].items():
        _assert_same_matrix(a.layers[k], v)
    _assert_same_matrix(a.X, snap["X"])
    assert a.obs.equals(snap["obs"])
    assert list(a.obs.columns) == list(snap["obs"].columns)
    assert a.var.equals(snap["var"])
    assert list(a.var.columns) == list(snap["var"].columns)
    assert sorted(a.uns.keys()) == snap["uns"]
    assert sorted(a.obsm.keys()) == snap["obsm"]


def _assert_message(error: pytest.ExceptionInfo, *required) -> None:
    """Each entry of ``required`` (a string, or a tuple of alternatives) appears in the message (any case)."""
    msg = str(error.value).lower()
    for need in required:
        options = need if isinstance(need, tuple) else (need,)
        assert any(o.lower() in msg for o in options), f"{options} not in {str(error.value)!r}"


def _folder(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def _fail_on_epoch(monkeypatch, error: type[BaseException], epoch: int = 2) -> None:
    """Raise ``error`` at the validation of ``epoch``: that epoch's optimiser steps have already run."""
    from scdeepimpute._training import Trainer

    original = Trainer.evaluate
    calls = [0]

    def evaluate(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == epoch:
            raise error("injected training failure")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "evaluate", evaluate)


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def counts16() -> np.ndarray:
    return make_counts(N_CELLS, N_GENES, seed=16)


@pytest.fixture(scope="module")
def model(counts16) -> sdi.DeepImpute:
    return sdi.DeepImpute(**FAST).fit(counts16, var_names=NAMES, progress=False)


@pytest.fixture(scope="module")
def other_model(counts16) -> sdi.DeepImpute:
    return sdi.DeepImpute(**FAST, random_state=7).fit(counts16, var_names=NAMES, progress=False)


@pytest.fixture(scope="module")
def saved(model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("saved") / "model"
    model.save(path)
    return path


# --------------------------------------------------------------------------- input checks (table rows 1-3)
DEFECTS = {"nan": (np.nan, "NaN"), "inf": (np.inf, "infinite"), "negative": (-1.0, "negative")}
ENTRIES = ["predict", "predict_matrix", "impute", "fit", "refit", "pp_model", "pp_train"]


def _call(entry, model, data, **kwargs):
    """One entry point on ``data`` (an AnnData, or a matrix for ``predict_matrix``)."""
    if entry == "predict":
        return model.predict(data, **kwargs)
    if entry == "predict_matrix":
        return model.predict(data, var_names=NAMES, **kwargs)
    if entry == "impute":
        return model.impute(data, **kwargs)
    if entry == "fit":
        return sdi.DeepImpute(**FAST).fit(data, progress=False, **kwargs)
    if entry == "refit":
        return model.fit(data, progress=False, **kwargs)
    if entry == "pp_model":
        return sdi.pp.deepimpute(data, model=model, **kwargs)
    return sdi.pp.deepimpute(data, **FAST, **kwargs)


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("defect", list(DEFECTS))
@pytest.mark.parametrize("entry", ENTRIES)
def test_invalid_counts_raise_and_change_nothing(model, counts16, entry, defect, fmt):
    value, match = DEFECTS[defect]
    bad = counts16.copy()
    bad[3, 5] = value
    bad = FORMATS[fmt](bad)
    reference = model.impute(counts16, var_names=NAMES)
    if entry == "predict_matrix":
        kept = _copy(bad)
        with pytest.raises(ValueError, match=match):
            _call(entry, model, bad)
        _assert_same_matrix(bad, kept)
    else:
        a = _adata(bad)
        snap = _snapshot(a)
        with pytest.raises(ValueError, match=match):
            _call(entry, model, a)
        _assert_unchanged(a, snap)
    after = model.impute(counts16, var_names=NAMES)  # a rejected refit leaves the model as it was
    for fill, values in reference.items():
        np.testing.assert_array_equal(after[fill], values)


@pytest.mark.parametrize("entry", ["predict", "impute", "fit", "pp_model", "pp_train"])
def test_log_transformed_input_warns_once_and_raises_with_check_counts(model, counts16, entry):
    logged = _adata(sparse.csr_matrix(np.log1p(counts16)))
    kwargs = {"copy": True} if entry.startswith("pp") else {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _call(entry, model, logged, **kwargs)
    found = [w for w in caught if issubclass(w.category, UserWarning) and "non-integer" in str(w.message)]
    assert len(found) == 1, [str(w.message) for w in caught]  # one check per call, not one per layer of code
    assert "log-transformed" in str(found[0].message)
    snap = _snapshot(logged)
    with pytest.raises(ValueError, match="non-integer"):
        _call(entry, model, logged, check_counts=True)
    _assert_unchanged(logged, snap)


@pytest.mark.parametrize("entry", ["predict", "fit", "pp_model"])
def test_the_non_integer_warning_points_at_the_users_call(model, counts16, entry):
    logged = _adata(np.log1p(counts16))
    with pytest.warns(UserWarning, match="non-integer") as caught:
        _call(entry, model, logged)
    assert {Path(w.filename).name for w in caught if "non-integer" in str(w.message)} == {Path(__file__).name}


def test_pp_refuses_an_unknown_policy_before_training(monkeypatch, counts16):
    from scdeepimpute._training import Trainer

    def fit(*args, **kwargs):
        raise AssertionError("trained before checking the policy")

    monkeypatch.setattr(Trainer, "fit", fit)
    with pytest.raises(ValueError, match="unknown policy"):
        sdi.pp.deepimpute(_adata(counts16), policy="everything", **FAST)


def test_predict_with_reordered_genes_leaves_the_input_untouched(model, counts16):
    """Gene alignment by name must not write into the caller's matrix (dense float32 is used without a copy)."""
    order = np.arange(N_GENES)[::-1]
    X = counts16[:, order].copy()
    kept = X.copy()
    out = model.predict(X, var_names=np.array(NAMES)[order])
    np.testing.assert_array_equal(X, kept)
    assert not np.shares_memory(out, X)
    a = _adata(counts16[:, order].copy(), np.array(NAMES)[order])
    snap = _snapshot(a)
    sdi.pp.deepimpute(a, model=model)
    _assert_same_matrix(a.X, snap["X"])
    assert not np.shares_memory(a.X, a.layers["imputed"])
    assert not np.shares_memory(a.X, a.layers["imputed_detected"])


# --------------------------------------------------------------------------- save (table row 4)
def test_save_refuses_an_existing_model_folder(model, other_model, counts16, tmp_path):
    path = tmp_path / "m"
    model.save(path)
    before = _folder(path)
    with pytest.raises(ValueError, match="overwrite=True"):
        other_model.save(path)
    assert _folder(path) == before
    np.testing.assert_array_equal(
        sdi.DeepImpute.load(path).predict(counts16, var_names=NAMES), model.predict(counts16, var_names=NAMES)
    )


def test_save_with_overwrite_replaces_the_model(model, other_model, counts16, tmp_path):
    path = tmp_path / "m"
    model.save(path)
    other_model.save(path, overwrite=True)
    got = sdi.DeepImpute.load(path).predict(counts16, var_names=NAMES)
    np.testing.assert_array_equal(got, other_model.predict(counts16, var_names=NAMES))
    assert not np.array_equal(got, model.predict(counts16, var_names=NAMES))
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary or old folder left beside it
    assert sorted(_folder(path)) == ["config.json", "model.weights.h5"]


def test_save_into_an_existing_empty_folder(model, counts16, tmp_path):
    """An empty folder holds no model: saving into it needs no ``overwrite`` (the dask path saves into a temp dir)."""
    path = tmp_path / "empty"
    path.mkdir()
    model.save(path)
    np.testing.assert_array_equal(
        sdi.DeepImpute.load(path).predict(counts16, var_names=NAMES), model.predict(counts16, var_names=NAMES)
    )


@pytest.mark.parametrize("overwrite", [False, True])
def test_save_never_replaces_what_is_not_a_model(model, tmp_path, overwrite):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="results"):
        model.save(folder, overwrite=overwrite)
    assert _folder(folder) == {"notes.txt": b"keep me"}
    file = tmp_path / "model.txt"
    file.write_text("a file")
    with pytest.raises(ValueError, match="model.txt"):
        model.save(file, overwrite=overwrite)
    assert file.read_text() == "a file"


def test_save_with_overwrite_through_a_link_replaces_the_folder_it_points_to(model, other_model, counts16, tmp_path):
    target = tmp_path / "store" / "m"
    model.save(target)
    link = tmp_path / "latest"
    link.symlink_to(target)
    other_model.save(link, overwrite=True)
    assert link.is_symlink()
    np.testing.assert_array_equal(
        sdi.DeepImpute.load(target).predict(counts16, var_names=NAMES), other_model.predict(counts16, var_names=NAMES)
    )
    assert [p.name for p in (tmp_path / "store").iterdir()] == ["m"]


@pytest.mark.parametrize("error", [OSError, KeyboardInterrupt])
@pytest.mark.parametrize("existing", [False, True], ids=["new", "existing"])
def test_interrupted_save_leaves_no_half_model(model, other_model, counts16, tmp_path, monkeypatch, error, existing):
    path = tmp_path / "m"
    if existing:
        model.save(path)
        before = _folder(path)

    def failing_save_weights(self, filepath, *args, **kwargs):
        Path(filepath).write_bytes(b"half a weights file")
        raise error("disk full")

    monkeypatch.setattr(type(other_model.network_), "save_weights", failing_save_weights)
    with pytest.raises(error):
        other_model.save(path, overwrite=True)
    monkeypatch.undo()
    if existing:
        assert _folder(path) == before
        np.testing.assert_array_equal(
            sdi.DeepImpute.load(path).predict(counts16, var_names=NAMES), model.predict(counts16, var_names=NAMES)
        )
        assert [p.name for p in tmp_path.iterdir()] == ["m"]
    else:
        assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- load (table rows 5-7)
def _edit_config(edit):
    def damage(path: Path) -> None:
        config = json.loads((path / "config.json").read_text())
        edit(config)
        (path / "config.json").write_text(json.dumps(config))

    return damage


def _edit_weights(edit):
    def damage(path: Path) -> None:
        with h5py.File(path / "model.weights.h5", "a") as f:
            edit(f)

    return damage


def _truncate_weights(path: Path) -> None:
    data = (path / "model.weights.h5").read_bytes()
    (path / "model.weights.h5").write_bytes(data[: len(data) // 2])


def _empty_weights(path: Path) -> None:
    (path / "model.weights.h5").unlink()
    h5py.File(path / "model.weights.h5", "w").close()


def _last_array(f: h5py.File) -> str:
    return f"vars/{max(int(k) for k in f['vars'])}"


def _narrow_array(f: h5py.File) -> None:
    name = "vars/1"
    values = f[name][()]
    del f[name]
    f[name] = values[:, : values.shape[1] // 2]


WEIGHTS, CONFIG = "model.weights.h5", "config.json"
EITHER = (WEIGHTS, CONFIG)
#: damage -> what the ValueError must name (strings, or tuples of alternatives)
LOAD_DAMAGE = {
    "config not json": (lambda p: (p / CONFIG).write_text('{"format_version": 2, "blocks": [[1,'), [CONFIG]),
    "config empty": (lambda p: (p / CONFIG).write_text(""), [CONFIG]),
    "config not an object": (lambda p: (p / CONFIG).write_text("[1, 2]"), [CONFIG]),
    "config lacks a key": (_edit_config(lambda c: c.pop("log_max")), [CONFIG, "log_max"]),
    "config lacks a parameter": (_edit_config(lambda c: c["params"].pop("hidden_units")), [CONFIG, "hidden_units"]),
    "config missing": (lambda p: (p / CONFIG).unlink(), [CONFIG]),
    "folder missing": (shutil.rmtree, [CONFIG]),
    "weights missing": (lambda p: (p / WEIGHTS).unlink(), [WEIGHTS]),
    "weights not hdf5": (lambda p: (p / WEIGHTS).write_bytes(b"not an HDF5 file"), [WEIGHTS]),
    "weights truncated": (_truncate_weights, [WEIGHTS]),
    "weights empty hdf5": (_empty_weights, [WEIGHTS]),
    "weights lack an array": (_edit_weights(lambda f: f.__delitem__(_last_array(f))), [WEIGHTS]),
    "weights array of another shape": (_edit_weights(_narrow_array), [WEIGHTS, "shape"]),
    "fewer blocks than predictor sets": (_edit_config(lambda c: c.update(blocks=c["blocks"][:1])), [CONFIG, "block"]),
    "block count differs from weights": (
        _edit_config(lambda c: c.update(blocks=c["blocks"][:1], predictors=c["predictors"][:1])),
        [EITHER, "block"],
    ),
    "hidden_units differs from weights": (_edit_config(lambda c: c["params"].update(hidden_units=32)), [EITHER]),
    "library_size differs from weights": (_edit_config(lambda c: c["params"].update(library_size=False)), [EITHER]),
    "detection_head differs from weights": (
        _edit_config(lambda c: c["params"].update(detection_head=False)),
        [EITHER],
    ),
    "fewer genes than the blocks use": (_edit_config(lambda c: c.update(var_names=c["var_names"][:10])), [CONFIG]),
    "gene count differs from zero_fraction": (
        _edit_config(lambda c: c.update(var_names=[*c["var_names"], "extra"])),
        [CONFIG],
    ),
    "gene index out of range": (_edit_config(lambda c: c["blocks"][0].__setitem__(0, 10**6)), [CONFIG]),
    "unknown format version": (_edit_config(lambda c: c.update(format_version=99)), ["format", "99"]),
    "no format version": (_edit_config(lambda c: c.pop("format_version")), ["format"]),
}


@pytest.mark.parametrize("damage", list(LOAD_DAMAGE))
def test_load_rejects_damaged_models_naming_the_file(saved, tmp_path, damage):
    apply, required = LOAD_DAMAGE[damage]
    path = tmp_path / "m"
    shutil.copytree(saved, path)
    apply(path)
    before = _folder(path) if path.exists() else None
    with pytest.raises(ValueError) as error:  # noqa: PT011 - the message is checked below
        sdi.DeepImpute.load(path)
    _assert_message(error, *required)
    assert (_folder(path) if path.exists() else None) == before  # load never writes


@pytest.mark.parametrize("damage", ["config not json", "weights not hdf5", "block count differs from weights"])
def test_cli_reports_a_damaged_model_in_one_line(saved, tmp_path, counts16, capsys, damage):
    apply, required = LOAD_DAMAGE[damage]
    path = tmp_path / "m"
    shutil.copytree(saved, path)
    apply(path)
    src = tmp_path / "in.h5ad"
    _adata(sparse.csr_matrix(counts16)).write_h5ad(src)
    out = tmp_path / "out.h5ad"
    assert main(["impute", str(src), "-o", str(out), "--model", str(path), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("scdeepimpute: error: ")
    names = required[0] if isinstance(required[0], tuple) else (required[0],)
    assert any(n in err[0] for n in names), err[0]
    assert not out.exists()


# --------------------------------------------------------------------------- pp.deepimpute(model=...) (row 8)
#: A valid value, different from both presets' defaults, for every hyperparameter.
HYPERPARAMETER_VALUES = {
    "min_vmr": 0.1,
    "subset_size": 8,
    "n_predictors": 3,
    "hidden_units": 8,
    "dropout_rate": 0.1,
    "learning_rate": 1e-2,
    "batch_size": 16,
    "max_epochs": 2,
    "patience": 2,
    "tol": 0.01,
    "epoch_size": 50,
    "validation_fraction": 0.1,
    "restore_best_weights": False,
    "detection_head": False,
    "library_size": False,
    "value_loss": "weighted",
    "precision": "float32",
    "neighbors": 10,
    "neighbor_weight": 0.5,
}
TRAINING_ONLY = {
    **HYPERPARAMETER_VALUES,
    "train_size": 0.5,
    "genes": ["g0", "g1"],
    "preset": "paper",
    "random_state": 3,
}


def test_the_hyperparameter_list_is_complete():
    assert set(HYPERPARAMETER_VALUES) == set(sdi.DeepImpute().params)


@pytest.mark.parametrize("name", list(TRAINING_ONLY))
def test_pp_with_a_model_rejects_training_arguments(model, counts16, name):
    a = _adata(sparse.csr_matrix(counts16))
    snap = _snapshot(a)
    with pytest.raises(ValueError, match=name):
        sdi.pp.deepimpute(a, model=model, **{name: TRAINING_ONLY[name]})
    _assert_unchanged(a, snap)


def test_pp_with_a_model_names_every_training_argument_given(model, counts16):
    a = _adata(sparse.csr_matrix(counts16))
    snap = _snapshot(a)
    with pytest.raises(ValueError) as error:  # noqa: PT011 - the message is checked below
        sdi.pp.deepimpute(a, model=model, train_size=0.5, max_epochs=3)
    _assert_message(error, "train_size", "max_epochs")
    _assert_unchanged(a, snap)
    assert "train_size" not in str(a.uns.get("imputed", ""))


def test_pp_with_a_model_keeps_its_prediction_arguments(model, counts16):
    a = _adata(sparse.csr_matrix(counts16))
    a.layers["counts"] = a.X.copy()
    out = sdi.pp.deepimpute(
        a, model=model, layer="counts", key_added="di", policy="max", check_counts=True, n_jobs=None, copy=True
    )
    assert {"di", "di_detected"} <= set(out.layers)
    assert out.uns["di"]["params"]["pretrained"] is True
    assert "di" not in a.layers


# --------------------------------------------------------------------------- atomic fit
@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failed_fit_leaves_a_fresh_model_unfitted(monkeypatch, counts16, error):
    fresh = sdi.DeepImpute(**FAST)
    unfitted = {k: v for k, v in vars(fresh).items() if k.endswith("_")}
    _fail_on_epoch(monkeypatch, error)
    with pytest.raises(error, match="injected"):
        fresh.fit(counts16, var_names=NAMES, progress=False)
    monkeypatch.undo()
    with pytest.raises(RuntimeError, match="not fitted"):
        fresh.predict(counts16, var_names=NAMES)
    assert {k: v for k, v in vars(fresh).items() if k.endswith("_")} == unfitted
    assert "unfitted" in repr(fresh)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failed_refit_leaves_the_model_as_it_was(monkeypatch, counts16, error):
    fitted = sdi.DeepImpute(**FAST).fit(counts16, var_names=NAMES, progress=False)
    before = fitted.impute(counts16, var_names=NAMES)
    state = (fitted.targets_.copy(), list(fitted.history_.loss), fitted.n_cells_fit_, list(fitted.var_names_))
    # other cells, other depth and other genes: every fitted attribute would differ after this fit
    other = make_counts(150, 30, seed=99) * 5
    _fail_on_epoch(monkeypatch, error)
    with pytest.raises(error, match="injected"):
        fitted.fit(other, var_names=[f"h{i}" for i in range(30)], train_size=100, progress=False)
    monkeypatch.undo()
    after = fitted.impute(counts16, var_names=NAMES)
    for fill, values in before.items():
        np.testing.assert_array_equal(after[fill], values)
    np.testing.assert_array_equal(fitted.targets_, state[0])
    assert (list(fitted.history_.loss), fitted.n_cells_fit_, list(fitted.var_names_)) == state[1:]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
@pytest.mark.parametrize("kind", ["csr", "dense", "view", "dask"])
def test_failed_training_in_pp_leaves_the_anndata_untouched(monkeypatch, counts16, error, kind):
    if kind == "dask":
        da = pytest.importorskip("dask.array")
        a = _adata(da.from_array(counts16, chunks=(50, -1)))
    else:
        a = _adata(sparse.csr_matrix(counts16) if kind != "dense" else counts16.copy())
    a.layers["counts"] = counts16.copy()
    parent = None
    if kind == "view":
        parent, parent_snap = a, _snapshot(a)
        a = a[10:110]
    snap = _snapshot(a)
    _fail_on_epoch(monkeypatch, error)
    with pytest.raises(error, match="injected"):
        sdi.pp.deepimpute(a, **FAST)
    _assert_unchanged(a, snap)
    if parent is not None:
        _assert_unchanged(parent, parent_snap)


# --------------------------------------------------------------------------- what already holds
_SEED_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[1])
    import anndata as ad, numpy as np
    from scipy import sparse
    import scdeepimpute as sdi
    from conftest import FAST, make_counts

    a = ad.AnnData(sparse.csr_matrix(make_counts(120, 40, seed=5)))
    sdi.pp.deepimpute(a, random_state=3, **FAST)
    np.savez(sys.argv[2], imputed=a.layers["imputed"], detected=a.layers["imputed_detected"])
    """
)


@pytest.mark.slow  # a fresh Python process starting TensorFlow: 10-40 s on two loaded cores
def test_same_seed_in_two_processes_gives_identical_output(tmp_path):
    """A fresh process and this one (which has trained other models already) give the same layers."""
    out = tmp_path / "run.npz"
    tests = str(Path(__file__).resolve().parent)
    proc = subprocess.run(
        [sys.executable, "-c", _SEED_SCRIPT, tests, str(out)], capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    a = ad.AnnData(sparse.csr_matrix(make_counts(120, 40, seed=5)))
    sdi.pp.deepimpute(a, random_state=3, **FAST)
    other = np.load(out)
    np.testing.assert_array_equal(other["imputed"], a.layers["imputed"])
    np.testing.assert_array_equal(other["detected"], a.layers["imputed_detected"])


def test_model_on_an_anndata_view(model, counts16):
    base = _adata(sparse.csr_matrix(counts16))
    view = base[10:90]
    snap = _snapshot(view)
    np.testing.assert_array_equal(model.predict(view), model.predict(view.copy()))
    refit = sdi.DeepImpute(**FAST).fit(view, progress=False)
    assert refit.n_cells_fit_ == 80
    _assert_unchanged(view, snap)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_all_zero_genes_and_cells(fmt):
    X = make_counts(100, 30, seed=8)
    X[:, [0, 7]] = 0
    X[[3, 50], :] = 0
    a = _adata(FORMATS[fmt](X), NAMES[:30])
    sdi.pp.deepimpute(a, **FAST)
    for key in ("imputed", "imputed_detected"):
        out = a.layers[key]
        assert np.isfinite(out).all()
        assert (out >= 0).all()
        np.testing.assert_array_equal(out[X > 0], X[X > 0])
        np.testing.assert_array_equal(out[:, [0, 7]], 0)  # no variance: not a target, kept as zeros
    assert not a.var["imputed_target"].iloc[[0, 7]].any()


def test_counts_up_to_1e7():
    X = make_counts(100, 30, seed=9).astype(np.int64)
    X[[0, 1, 2], [4, 5, 6]] = 10_000_000
    a = _adata(sparse.csr_matrix(X), NAMES[:30])
    sdi.pp.deepimpute(a, **FAST)
    for key in ("imputed", "imputed_detected"):
        out = a.layers[key]
        assert np.isfinite(out).all()
        assert (out >= 0).all()
        np.testing.assert_array_equal(out[X > 0], X[X > 0].astype(np.float32))


# --------------------------------------------------------------------------- property test
#: Tiny hyperparameters: each training example takes about a second.
TINY = {"hidden_units": 8, "max_epochs": 1, "subset_size": 64, "n_predictors": 3, "batch_size": 64}
_PROPERTY_GENES = [f"g{i}" for i in range(60)]


@functools.cache
def _property_model() -> sdi.DeepImpute:
    """One fitted model for the examples that take the ``model=`` path (built once, on first use)."""
    X = make_counts(150, len(_PROPERTY_GENES), seed=61)
    return sdi.DeepImpute(**TINY).fit(X, var_names=_PROPERTY_GENES, progress=False)


@st.composite
def _cases(draw):
    return {
        "n_cells": draw(st.integers(1, 300)),
        "n_genes": draw(st.integers(1, 600)),
        "density": draw(st.sampled_from([0.0, 0.02, 0.2, 0.6, 1.0])),
        "dtype": draw(st.sampled_from(["int32", "int64", "float32", "float64"])),
        "fmt": draw(st.sampled_from(list(FORMATS))),
        "view": draw(st.booleans()),
        "layer": draw(st.booleans()),
        "pretrained": draw(st.booleans()),
        "defect": draw(st.sampled_from([None, None, None, "nan", "negative"])),
        "seed": draw(st.integers(0, 2**16)),
    }


_EXAMPLE = {
    "n_cells": 200,
    "n_genes": 60,
    "density": 0.2,
    "dtype": "float32",
    "fmt": "dense",
    "view": False,
    "layer": False,
    "pretrained": False,
    "defect": None,
    "seed": 1,
}


def _make_anndata(case) -> tuple[ad.AnnData, ad.AnnData | None]:
    rng = np.random.default_rng(case["seed"])
    n, g = case["n_cells"], case["n_genes"]
    extra = 4 if case["view"] else 0
    mean = rng.gamma(0.5, 4.0, size=g)[None, :] * rng.lognormal(0, 0.5, size=(n + extra, 1))
    X = rng.poisson(mean) * (rng.random((n + extra, g)) < case["density"])
    X = X.astype(case["dtype"])
    keep = np.sort(rng.choice(n + extra, size=n, replace=False))  # the cells of the view
    if case["defect"] is not None and X.size:
        if not np.issubdtype(X.dtype, np.floating):
            X = X.astype(np.float64)
        # in a cell the view keeps: a defect only in the parent's other cells is not one of the input
        X[rng.choice(keep), rng.integers(g)] = np.nan if case["defect"] == "nan" else -2
    if case["pretrained"]:  # model genes in a random order, then genes the model never saw
        known = list(rng.permutation(_PROPERTY_GENES))[:g]
        names = known + [f"new{i}" for i in range(g - len(known))]
    else:
        names = [f"g{i}" for i in range(g)]
    M = FORMATS[case["fmt"]](X)
    if case["layer"]:  # counts in a layer, something else in X (which must stay as it is)
        a = _adata(np.log1p(np.abs(X[:, ::-1])).astype(np.float32), names)
        a.layers["counts"] = M
    else:
        a = _adata(M, names)
    if not case["view"]:
        return a, None
    return a[keep], a


def _assert_imputed(a: ad.AnnData, snap: dict, layer: str | None) -> None:
    raw = snap["layers"][layer] if layer else snap["X"]
    raw = raw.toarray() if sparse.issparse(raw) else np.asarray(raw)
    observed = raw > 0
    for key in a.uns["imputed"]["layers"]:
        out = a.layers[key]
        assert isinstance(out, np.ndarray)
        assert out.dtype == np.float32
        assert out.shape == raw.shape
        assert np.isfinite(out).all()
        assert (out >= 0).all()
        np.testing.assert_array_equal(out[observed], raw[observed].astype(np.float32))
    _assert_same_matrix(a.X, snap["X"])
    for k, v in snap["layers"].items():
        _assert_same_matrix(a.layers[k], v)


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=_cases())
# the gene-aligned predict path with dense float32 counts, in X and in a layer; the smallest inputs
@example(case={**_EXAMPLE, "pretrained": True})
@example(case={**_EXAMPLE, "pretrained": True, "layer": True, "view": True})
@example(case={**_EXAMPLE, "n_cells": 1, "n_genes": 1, "pretrained": True})
@example(case={**_EXAMPLE, "n_cells": 25, "n_genes": 1})
def test_every_call_imputes_or_raises_value_error_changing_nothing(case):
    a, parent = _make_anndata(case)
    parent_snap = None if parent is None else _snapshot(parent)
    snap = _snapshot(a)
    layer = "counts" if case["layer"] else None
    kwargs = {"model": _property_model()} if case["pretrained"] else TINY
    event("model= path" if case["pretrained"] else "training path")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            sdi.pp.deepimpute(a, layer=layer, **kwargs)
    except ValueError:
        event("raised ValueError")
        _assert_unchanged(a, snap)
    else:
        event("imputed")
        assert case["defect"] is None, "invalid counts were imputed"
        _assert_imputed(a, snap, layer)
    if parent is not None:
        _assert_unchanged(parent, parent_snap)  # the view's parent never changes
