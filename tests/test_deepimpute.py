"""``pp.deepimpute`` and the ``DeepImpute`` model: outputs, input handling, errors, determinism, persistence."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
from scipy import sparse

import scdeepimpute as sdi

from .conftest import FAST, make_counts


@pytest.fixture(scope="module")
def imputed():
    a = ad.AnnData(sparse.csr_matrix(make_counts(150, 40, seed=11)))
    a.var_names = [f"g{i}" for i in range(a.n_vars)]
    a.layers["counts"] = a.X.copy()
    before = a.copy()
    sdi.pp.deepimpute(a, **FAST)
    return before, a


def test_outputs_shape_dtype_location(imputed):
    before, a = imputed
    for key in ("imputed", "imputed_detected"):
        assert a.layers[key].shape == a.shape
        assert a.layers[key].dtype == np.float32
        assert isinstance(a.layers[key], np.ndarray)
    assert a.var["imputed_target"].dtype == bool
    assert (a.var["imputed_block"] >= 0).sum() == a.var["imputed_target"].sum()
    info = a.uns["imputed"]
    assert info["params"]["hidden_units"] == 16
    assert info["epochs"] == len(info["val_loss"]) <= 3
    # X and the other layers are untouched
    assert (a.X != before.X).nnz == 0
    assert (a.layers["counts"] != before.layers["counts"]).nnz == 0


def test_restore_keeps_observed_values_and_fills_zeros(imputed):
    """Property: every non-zero input is returned exactly; zeros of target genes become positive."""
    before, a = imputed
    X = before.X.toarray()
    targets = a.var["imputed_target"].to_numpy()
    for key in ("imputed", "imputed_detected"):
        out = a.layers[key]
        np.testing.assert_array_equal(out[X > 0], X[X > 0])
        np.testing.assert_array_equal(out[:, ~targets], X[:, ~targets])
        zeros = (X == 0) & targets[None, :]
        assert np.all(out[zeros] > 0)
    # expected value = P(detected) x value-if-detected <= value-if-detected
    zeros = X == 0
    assert np.all(a.layers["imputed"][zeros] <= a.layers["imputed_detected"][zeros] + 1e-6)


def test_hypothesis_like_restore_on_random_inputs():
    """The restore rule holds for any seed and sparsity pattern."""
    for seed in range(3):
        X = make_counts(60, 20, seed=100 + seed)
        model = sdi.DeepImpute(preset="paper", random_state=seed, min_vmr=0, **FAST).fit(X)
        out = model.predict(X)
        np.testing.assert_array_equal(out[X > 0], X[X > 0])
        assert np.all(out >= 0)


@pytest.mark.parametrize("fmt", ["csc", "dense", "int"])
def test_dense_sparse_and_dtypes_agree(fmt):
    X = make_counts(100, 30, seed=3)
    ref = sdi.DeepImpute(**FAST).fit(sparse.csr_matrix(X)).predict(sparse.csr_matrix(X))
    M = {"csc": sparse.csc_matrix(X), "dense": X, "int": X.astype(np.int64)}[fmt]
    got = sdi.DeepImpute(**FAST).fit(M).predict(M)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_same_seed_same_result_other_seed_differs():
    X = make_counts(100, 30, seed=4)
    a = sdi.DeepImpute(random_state=1, **FAST).fit(X).predict(X)
    b = sdi.DeepImpute(random_state=1, **FAST).fit(X).predict(X)
    c = sdi.DeepImpute(random_state=2, **FAST).fit(X).predict(X)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_copy_layer_view_and_key_added(adata):
    adata.layers["raw"] = adata.X.copy()
    adata.X = sparse.csr_matrix(np.log1p(adata.X.toarray()))  # X is no longer counts: read the layer
    out = sdi.pp.deepimpute(adata, layer="raw", key_added="di", copy=True, **FAST)
    assert out is not adata
    assert "di" in out.layers
    assert "di_detected" in out.layers
    assert "di" not in adata.layers
    assert "di" not in adata.uns
    assert out.uns["di"]["params"]["layer"] == "raw"

    view = adata[:100, :]
    assert sdi.pp.deepimpute(view, layer="raw", **FAST) is None
    assert not view.is_view
    assert "imputed" in view.layers
    assert "imputed" not in adata.layers  # the parent is not modified through the view


def test_paper_preset_writes_one_layer(adata):
    sdi.pp.deepimpute(adata, preset="paper", min_vmr=0.0, **FAST)
    assert "imputed" in adata.layers
    assert "imputed_detected" not in adata.layers
    assert adata.uns["imputed"]["params"]["learning_rate"] == 1e-4
    assert adata.uns["imputed"]["params"]["detection_head"] is False


def test_genes_argument_restricts_targets(adata):
    genes = list(adata.var_names[:6])
    sdi.pp.deepimpute(adata, genes=genes, **FAST)
    assert set(adata.var_names[adata.var["imputed_target"]]) == set(genes)


def test_policy_all_changes_observed_values(adata):
    sdi.pp.deepimpute(adata, policy="all", **FAST)
    X = adata.X.toarray()
    t = adata.var["imputed_target"].to_numpy()
    assert not np.allclose(adata.layers["imputed_detected"][:, t][X[:, t] > 0], X[:, t][X[:, t] > 0])


def _bad_inputs():
    X = make_counts(60, 20, seed=7)
    neg = X.copy()
    neg[0, 0] = -1
    nan = X.copy()
    nan[1, 1] = np.nan
    inf = X.copy()
    inf[2, 2] = np.inf
    return [
        (neg, {}, "negative"),
        (nan, {}, "NaN"),
        (inf, {}, "infinite"),
        (np.zeros((0, 20), np.float32), {}, "empty"),
        (X[:10], {}, "at least 20 cells"),
        (X, {"min_vmr": 1e6}, "min_vmr"),
        (X, {"layer": "nope"}, "layer 'nope' not found"),
        (X, {"genes": ["gene0", "not_a_gene"]}, "not in var_names"),
        (X, {"key_added": "counts", "layer": "counts"}, "input layer"),
        (X, {"learning_rate": -1.0}, "learning_rate"),
        (X, {"preset": "fastest"}, "unknown preset"),
    ]


@pytest.mark.parametrize(("X", "kwargs", "match"), _bad_inputs(), ids=lambda v: v if isinstance(v, str) else "")
def test_bad_input_raises_and_leaves_adata_unchanged(X, kwargs, match):
    a = ad.AnnData(X)
    a.var_names = [f"gene{i}" for i in range(a.n_vars)]
    a.layers["counts"] = X.copy()
    snapshot = a.copy()
    with pytest.raises(ValueError, match=match):
        sdi.pp.deepimpute(a, **{**FAST, **kwargs})
    assert set(a.layers.keys()) == {"counts"}
    assert a.uns.keys() == snapshot.uns.keys()
    assert list(a.var.columns) == list(snapshot.var.columns)
    np.testing.assert_array_equal(a.X, snapshot.X)


def test_non_integer_input_warns_or_raises(adata):
    logged = adata.copy()
    logged.X = logged.X.log1p()
    with pytest.warns(UserWarning, match="log-transformed"):
        sdi.pp.deepimpute(logged, copy=True, **FAST)
    with pytest.raises(ValueError, match="non-integer"):
        sdi.pp.deepimpute(logged, check_counts=True, **FAST)
    assert "imputed" not in logged.layers


def test_save_load_roundtrip(tmp_path):
    X = make_counts(100, 30, seed=9)
    names = [f"g{i}" for i in range(30)]
    model = sdi.DeepImpute(**FAST).fit(X, var_names=names)
    model.save(tmp_path / "m")
    loaded = sdi.DeepImpute.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.targets_, model.targets_)
    np.testing.assert_array_equal(loaded.predict(X, var_names=names), model.predict(X, var_names=names))
    assert (tmp_path / "m" / "config.json").exists()
    for fill in ("expected", "detected"):
        np.testing.assert_array_equal(
            loaded.predict(X, var_names=names, fill=fill), model.predict(X, var_names=names, fill=fill)
        )
    np.testing.assert_array_equal(loaded.zero_fraction_, model.zero_fraction_)


def test_load_rejects_old_format(tmp_path):
    import json

    X = make_counts(60, 20, seed=9)
    sdi.DeepImpute(**FAST).fit(X).save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["format_version"] = 1
    del config["zero_fraction"]
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="model format 1.*refit"):
        sdi.DeepImpute.load(tmp_path / "m")


def test_detected_fill_combines_value_head_and_poisson_link():
    """fill='detected' = expm1((1 - z) v + z * poisson_link(p)), z the gene's zero fraction in the fit data.

    With z forced to 0 the detected fill is the value head alone, expm1(v); ``expected`` / ``detected`` is p.
    """
    from scdeepimpute._fills import poisson_log1p_if_detected

    X = make_counts(120, 30, seed=13)
    model = sdi.DeepImpute(**FAST, neighbors=0).fit(X)  # the network alone: no hidden entries, no blend
    np.testing.assert_allclose(model.zero_fraction_, (X == 0).mean(axis=0))
    out = model.impute(X, policy="all")
    z = model.zero_fraction_.copy()
    model.zero_fraction_ = np.zeros_like(z)
    value_only = model.impute(X, policy="all", fills=("detected",))["detected"]
    t = np.sort(np.concatenate(model.blocks_))
    p = out["expected"][:, t] / out["detected"][:, t]
    v = np.log1p(value_only[:, t].astype(np.float64))
    want = np.expm1((1 - z[t]) * v + z[t] * poisson_log1p_if_detected(p))
    np.testing.assert_allclose(out["detected"][:, t], want, rtol=2e-4, atol=1e-5)
    assert np.abs(out["detected"][:, t] - value_only[:, t]).max() > 1e-3  # the link changes the fill


def test_unfitted_and_misaligned_model_errors():
    X = make_counts(60, 20, seed=10)
    with pytest.raises(RuntimeError, match="not fitted"):
        sdi.DeepImpute().predict(X)
    model = sdi.DeepImpute(**FAST).fit(X)
    with pytest.raises(ValueError, match="genes the model reads are missing"):
        model.predict(X[:, :5])
    with pytest.raises(ValueError, match="fill='expected'"):
        sdi.DeepImpute(preset="paper", min_vmr=0, **FAST).fit(X).predict(X, fill="expected")


def test_train_size_subsamples_cells():
    X = make_counts(200, 20, seed=12)
    model = sdi.DeepImpute(**FAST).fit(X, train_size=0.5)
    assert model.n_cells_fit_ == 100
    assert model.predict(X).shape == X.shape
    with pytest.raises(ValueError, match="train_size"):
        sdi.DeepImpute(**FAST).fit(X, train_size=1.5)


def test_transfer_to_data_with_partly_different_genes():
    """A model trained on one gene set imputes another, aligned by name: shared genes imputed, new genes kept.

    Missing genes count as zeros, so the result must equal predicting the original genes with the
    dropped ones zeroed.
    """
    X = make_counts(150, 30, seed=13)
    names = np.array([f"g{i}" for i in range(30)])
    model = sdi.DeepImpute(**FAST).fit(X, var_names=names)

    # same cells, genes reordered, two model genes (g0, g1) dropped and one unknown gene added
    keep = np.arange(29, 1, -1)
    other = np.concatenate([X[:, keep], np.full((150, 1), 3.0, np.float32)], axis=1)
    other_names = np.concatenate([names[keep], ["new_gene"]])
    got = model.predict(other, var_names=other_names)

    zeroed = X.copy()
    zeroed[:, :2] = 0
    expected = model.predict(zeroed, var_names=names)[:, keep]
    assert got.shape == other.shape
    np.testing.assert_array_equal(got[:, -1], 3.0)  # the unknown gene passes through
    np.testing.assert_allclose(got[:, :-1], expected, rtol=1e-6)
    np.testing.assert_array_equal(got[other > 0], other[other > 0])
    assert {0, 1} & set(model.layout_.columns), "the dropped genes are inputs, so the warning path is exercised"


def test_pretrained_model_in_pp(adata):
    model = sdi.DeepImpute(**FAST).fit(adata)
    other = adata[:, ::-1].copy()
    sdi.pp.deepimpute(other, model=model)
    assert other.uns["imputed"]["params"]["pretrained"] is True
    np.testing.assert_array_equal(other.var["imputed_target"].to_numpy(), np.isin(other.var_names, model.targets_))


@pytest.mark.parametrize("func", [sdi.DeepImpute, sdi.pp.deepimpute], ids=["DeepImpute", "pp.deepimpute"])
def test_every_hyperparameter_is_a_documented_keyword(func):
    """The one declaration gives both entry points a keyword-only parameter and a docstring entry per hyperparameter."""
    import inspect
    import typing

    from scdeepimpute._params import HYPERPARAMETERS, PRESETS

    params = inspect.signature(func).parameters
    missing = [h for h in HYPERPARAMETERS if h not in params]
    assert not missing, f"{func.__qualname__} lacks {missing}"
    assert all(params[h].default is None and params[h].kind is inspect.Parameter.KEYWORD_ONLY for h in HYPERPARAMETERS)
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    annotations = (func.__init__ if isinstance(func, type) else func).__annotations__  # what autodoc-typehints reads
    assert all(type(None) in typing.get_args(annotations[h]) for h in HYPERPARAMETERS)
    doc = inspect.getdoc(func)
    assert "{hyperparameters}" not in doc
    for h in HYPERPARAMETERS:
        assert f"\n{h}\n" in doc, f"{h} is not documented"
    assert f"``{PRESETS['paper']['learning_rate']!r}`` (paper)" in doc
    with pytest.raises(TypeError, match="unexpected keyword argument 'min_vrm'"):
        func(min_vrm=0.5) if isinstance(func, type) else func(None, min_vrm=0.5)


@pytest.mark.parametrize(("name", "value"), [("subset_size", 0), ("dropout_rate", 1.0), ("value_loss", "mse")])
def test_invalid_hyperparameters_raise(name, value):
    with pytest.raises(ValueError, match=f"invalid {name}="):
        sdi.DeepImpute(**{name: value})
    sdi.DeepImpute(**{name: None})  # None: the preset's value


def test_loading_config_and_building_batches_needs_no_tensorflow():
    """Presets, layouts, batches, fills and the dask module are numpy only: TensorFlow starts with the network."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "import scdeepimpute as sdi, scdeepimpute.dask\n"
        "from scdeepimpute._layout import BlockLayout, batch\n"
        "from scdeepimpute._fills import value_if_detected\n"
        "m = sdi.DeepImpute(preset='paper')\n"
        "layout = BlockLayout.from_blocks([np.array([0, 1])], [np.array([2])])\n"
        "batch(np.ones((2, 3), np.float32), layout, None)\n"
        "value_if_detected(np.ones((2, 2)), np.full((2, 2), 0.5), np.zeros(2))\n"
        "assert 'tensorflow' not in sys.modules and 'dask' not in sys.modules, sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_experimental_is_a_deprecated_alias_of_dask():
    import importlib
    import sys

    sys.modules.pop("scdeepimpute.experimental", None)
    with pytest.warns(FutureWarning, match="scdeepimpute.dask"):
        experimental = importlib.import_module("scdeepimpute.experimental")
    assert experimental.impute_to_zarr is sdi.dask.impute_to_zarr
    assert experimental.read_lazy is sdi.dask.read_lazy


@pytest.mark.parametrize(("tol", "patience"), [(0.9, 2), (0.9, 4)])
def test_tol_counts_only_large_improvements(tol, patience):
    """No epoch lowers the validation loss by 90%, so a 0.9 threshold stops right after ``patience`` epochs."""
    X = make_counts(120, 40, seed=7)
    params = {**FAST, "max_epochs": 30}
    strict = sdi.DeepImpute(**params, tol=tol, patience=patience).fit(X, progress=False)
    assert strict.history_.stopped_epoch == 1 + patience
    loose = sdi.DeepImpute(**params, tol=0.0, patience=patience).fit(X, progress=False)
    assert loose.history_.stopped_epoch > 1 + patience  # the loss still falls by small steps
    with pytest.raises(ValueError, match="tol"):
        sdi.DeepImpute(tol=-0.1)


@pytest.mark.parametrize(
    ("loss", "best", "tol", "expected"),
    [
        (5.0, np.inf, 0.5, True),  # the first epoch always counts
        (0.999, 1.0, 0.0, True),
        (1.0, 1.0, 0.0, False),  # equal is no improvement
        (0.9995, 1.0, 1e-3, False),  # below the relative threshold
        (0.998, 1.0, 1e-3, True),
        (np.nan, 1.0, 0.0, False),
        (np.nan, np.inf, 0.0, True),  # a NaN first epoch is the best so far; later NaNs never improve on it
    ],
)
def test_early_stopping_rule(loss, best, tol, expected):
    from scdeepimpute._training import improves

    assert improves(loss, best, tol) is expected


def test_epoch_size_takes_consecutive_slices_of_shuffled_passes(monkeypatch):
    """With ``epoch_size`` below the training cells, each epoch trains on the next ``epoch_size`` cells of a pass."""
    import scdeepimpute._model as model_module

    loads = []
    original = model_module.batch_loader

    def recording(X, layout, covariates):
        load = original(X, layout, covariates)
        return lambda rows: loads.append(np.array(rows)) or load(rows)

    monkeypatch.setattr(model_module, "batch_loader", recording)
    X = make_counts(200, 30, seed=3)
    params = {**FAST, "max_epochs": 6, "patience": 100}
    sdi.DeepImpute(**params, epoch_size=50).fit(X, progress=False)
    train, val = loads[0::2], loads[1::2]  # per epoch: one training chunk, then the validation cells
    assert [t.size for t in train] == [50] * 6
    n_train = 200 - val[0].size
    first_pass = np.concatenate(train[: n_train // 50])
    assert np.unique(first_pass).size == first_pass.size  # no cell twice within a pass
    assert not np.isin(first_pass, val[0]).any()
    assert all(np.array_equal(v, val[0]) for v in val)
    with pytest.raises(ValueError, match="epoch_size"):
        sdi.DeepImpute(epoch_size=0)


def test_epoch_size_at_least_the_training_cells_is_one_pass_per_epoch():
    X = make_counts(120, 30, seed=5)
    runs = [sdi.DeepImpute(**FAST, epoch_size=size).fit(X, progress=False) for size in (None, 10**6)]
    np.testing.assert_array_equal(runs[0].history_.loss, runs[1].history_.loss)
    np.testing.assert_array_equal(runs[0].predict(X), runs[1].predict(X))


def test_prediction_does_not_depend_on_chunking(monkeypatch):
    import scdeepimpute._model as model_module

    X = sparse.csr_matrix(make_counts(150, 30, seed=8))
    model = sdi.DeepImpute(**FAST).fit(X, progress=False)
    whole = model.impute(X)
    monkeypatch.setattr(model_module, "PREDICT_ROWS", 7)  # 22 chunks, the last one short
    for fill, values in model.impute(X).items():
        np.testing.assert_allclose(values, whole[fill], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("fmt", ["csr", "csc", "dense"])
@pytest.mark.parametrize("every_column", [True, False])
@pytest.mark.parametrize("with_covariates", [True, False])
def test_training_batches_are_the_prediction_batches(fmt, every_column, with_covariates):
    """The training loader (rows densified straight into the batch) builds the batch predict builds."""
    from scdeepimpute._layout import BlockLayout, batch, batch_loader

    counts = make_counts(40, 12, seed=2)
    X = {"csr": sparse.csr_matrix, "csc": sparse.csc_matrix, "dense": np.asarray}[fmt](counts)
    genes = np.arange(12) if every_column else np.array([0, 2, 3, 5, 8, 9, 11])
    layout = BlockLayout.from_blocks([genes[:3], genes[3:]], [genes[3:5], genes[:2]], n_extra=int(with_covariates))
    covariates = np.linspace(-1, 1, 40, dtype=np.float32)[:, None] if with_covariates else None
    rows = np.array([7, 3, 3, 39, 0])
    wanted_covariates = None if covariates is None else covariates[rows]
    expected = batch(counts[rows].astype(np.float32), layout, wanted_covariates)
    got = batch_loader(X, layout, covariates)(rows)
    assert got.dtype == np.float32
    assert got.shape == (rows.size, layout.width)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert (got[:, layout.pad] == 0).all()
