"""The ``"lognorm"`` fill: the expected log-normalised expression under the model's Poisson rate."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scanpy as sc
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import sparse, stats

import scdeepimpute as sdi
from scdeepimpute._fills import LOG_TARGET_SUM, expected_log1p_scaled, gene_dispersion, posterior_rate

from .conftest import FAST, make_counts

#: The network alone (a neighbourhood would make the transfer comparison depend on the cells imputed).
NET = {**FAST, "neighbors": 0}


def _brute_force(rate: float, scale: float) -> float:
    k = np.arange(0, int(rate + 20 * np.sqrt(rate) + 60))
    return float(np.sum(stats.poisson.pmf(k, rate) * np.log1p(scale * k)))


@pytest.mark.parametrize("rate", [1e-5, 0.01, 0.3, 1.0, 4.0, 30.0, 99.0, 101.0, 400.0, 3000.0])
@pytest.mark.parametrize("scale", [0.01, 0.5, 3.0, 40.0, 500.0])
def test_expectation_matches_a_poisson_sum(rate, scale):
    got = float(expected_log1p_scaled(np.array([rate]), np.array([scale]))[0])
    # the table's interpolation error, measured over rates 1e-5..3e3 and scales 0.01..300: below 1e-3
    assert got == pytest.approx(_brute_force(rate, scale), abs=1e-3, rel=1e-3)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    rates=st.lists(st.floats(0.0, 5e3), min_size=2, max_size=30),
    scale=st.floats(1e-3, 1e3),
)
def test_expectation_is_monotone_and_below_the_plug_in(rates, scale):
    rate = np.sort(np.array(rates, dtype=np.float32))
    got = expected_log1p_scaled(rate, np.float32(scale))
    assert np.all(got >= 0)
    assert np.all(np.diff(got) >= -1e-4)  # more expression never lowers the expectation
    # Jensen: E log1p(sY) <= log1p(s E Y), up to the float32 rounding of the table
    assert np.all(got <= np.log1p(np.float32(scale) * rate) * (1 + 1e-4) + 1e-6)
    assert np.all(got[rate == 0] == 0)


@pytest.fixture(scope="module")
def data() -> ad.AnnData:
    a = ad.AnnData(sparse.csr_matrix(make_counts(200, 40, seed=5)))
    a.var_names = [f"g{j}" for j in range(a.n_vars)]
    a.obs_names = [f"c{i}" for i in range(a.n_obs)]
    return a


def _log_normalized(a: ad.AnnData) -> np.ndarray:
    b = a.copy()
    sc.pp.normalize_total(b, target_sum=LOG_TARGET_SUM)
    sc.pp.log1p(b)
    return b.X.toarray() if sparse.issparse(b.X) else np.asarray(b.X)


def test_pp_writes_the_lognorm_layer(data):
    a = data.copy()
    sdi.pp.deepimpute(a, fills=("expected", "detected", "lognorm"), min_vmr=0.5, **FAST)
    assert a.uns["imputed"]["layers"] == ["imputed", "imputed_detected", "imputed_lognorm"]
    layer = a.layers["imputed_lognorm"]
    assert layer.dtype == np.float32
    assert layer.shape == a.shape
    target = a.var["imputed_target"].to_numpy()
    assert 0 < target.sum() < a.n_vars  # both kinds of gene are checked
    reference = _log_normalized(data)
    # genes the model does not impute are scanpy's normalize_total(1e4) + log1p of the counts
    np.testing.assert_allclose(layer[:, ~target], reference[:, ~target], rtol=1e-5, atol=1e-6)
    # imputed genes: the model's estimate (next test), not the observed values
    assert np.all(np.isfinite(layer))
    assert np.all(layer >= 0)
    assert not np.allclose(layer[:, target], reference[:, target])


def test_gene_dispersion_recovers_a_negative_binomial_shape():
    rng = np.random.default_rng(0)
    rate = rng.gamma(2.0, 3.0, size=(20_000, 1)) * np.ones((1, 3))
    shape = np.array([0.5, 2.0, 10.0])
    counts = rng.poisson(rng.gamma(shape, rate / shape))
    np.testing.assert_allclose(gene_dispersion(counts, rate), 1 / shape, rtol=0.1)
    # Poisson counts: no spread beyond Poisson noise, the lower clip
    assert np.all(gene_dispersion(rng.poisson(rate), rate) < 0.02)


def test_posterior_rate_moves_from_the_model_to_the_count():
    observed = np.array([[0.0, 5.0, 50.0]], dtype=np.float32)
    rate = np.full((1, 3), 5.0, dtype=np.float32)
    np.testing.assert_allclose(posterior_rate(observed, rate, np.full(3, 1e-6)), rate, rtol=1e-4)
    np.testing.assert_allclose(posterior_rate(observed, rate, np.full(3, 1e6)), observed, atol=1e-4)
    middle = posterior_rate(observed, rate, np.ones(3))  # shape 1: the count weighs 5 / 6
    np.testing.assert_allclose(middle, (observed + 1) * 5 / 6, rtol=1e-6)
    assert posterior_rate(np.zeros((1, 1)), np.zeros((1, 1)), np.ones(1))[0, 0] == 0


def test_lognorm_is_the_expectation_of_the_posterior_rate(data):
    model = sdi.DeepImpute(**NET).fit(data)
    target = model._target_genes()
    assert model.dispersion_.shape == (data.n_vars,)
    assert np.all(np.isfinite(model.dispersion_[target]))
    out = model.impute(data, policy="all", fills=("expected", "lognorm"))
    totals = np.asarray(data.X.sum(axis=1)).reshape(-1, 1)
    rate = posterior_rate(data.X.toarray()[:, target], out["expected"][:, target], model.dispersion_[target])
    want = expected_log1p_scaled(rate, LOG_TARGET_SUM / totals)
    np.testing.assert_allclose(out["lognorm"][:, target], want, rtol=1e-6)
    # the policy does not change it: every entry of a target gene is the model's
    restored = model.impute(data, fills=("lognorm",))["lognorm"]
    np.testing.assert_array_equal(restored, out["lognorm"])


def test_transfer_normalises_by_the_data_genes(data):
    model = sdi.DeepImpute(**NET).fit(data[:, :30].copy())
    extra = data.copy()  # 10 genes the model has never seen, which still count in each cell's total
    lognorm = model.impute(extra, fills=("lognorm",))["lognorm"]
    reference = _log_normalized(extra)
    np.testing.assert_allclose(lognorm[:, 30:], reference[:, 30:], rtol=1e-5, atol=1e-6)
    totals = np.asarray(extra.X.sum(axis=1)).reshape(-1, 1)
    expected = model.impute(extra, policy="all", fills=("expected",))["expected"]
    target = model._target_genes()
    rate = posterior_rate(extra.X.toarray()[:, target], expected[:, target], model.dispersion_[target])
    want = expected_log1p_scaled(rate, LOG_TARGET_SUM / totals)
    np.testing.assert_allclose(lognorm[:, target], want, rtol=1e-6)


def test_save_load_keeps_the_lognorm_fill(data, tmp_path):
    import json

    model = sdi.DeepImpute(**NET).fit(data)
    want = model.impute(data, fills=("lognorm",))["lognorm"]
    model.save(tmp_path / "m")
    loaded = sdi.DeepImpute.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.impute(data, fills=("lognorm",))["lognorm"], want)
    # a model saved before the fill existed has no dispersion: the rate is then the model's alone
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    del config["dispersion"]
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    old = sdi.DeepImpute.load(tmp_path / "m")
    assert old.dispersion_ is None
    totals = np.asarray(data.X.sum(axis=1)).reshape(-1, 1)
    target = model._target_genes()
    expected = model.impute(data, policy="all", fills=("expected",))["expected"][:, target]
    got = old.impute(data, fills=("lognorm",))["lognorm"][:, target]
    np.testing.assert_allclose(got, expected_log1p_scaled(expected, LOG_TARGET_SUM / totals), rtol=1e-6)


def test_dask_lognorm_equals_in_memory(data):
    sdx = pytest.importorskip("scdeepimpute.dask")
    da = pytest.importorskip("dask.array")
    model = sdi.DeepImpute(**NET).fit(data)
    lazy = da.from_array(data.X, chunks=(64, data.n_vars))
    got = sdx.impute(model, lazy, var_names=data.var_names, fills=("lognorm",))["lognorm"].compute()
    np.testing.assert_array_equal(got, model.impute(data, fills=("lognorm",))["lognorm"])


@pytest.mark.parametrize(
    ("fills", "match"),
    [
        ((), "at least one fill"),
        (("expected", "expected"), "each once"),
        (("lognormal",), "unknown fill"),
    ],
)
def test_bad_fills_are_refused_before_training(data, fills, match):
    a = data.copy()
    with pytest.raises(ValueError, match=match):
        sdi.pp.deepimpute(a, fills=fills, max_epochs=10_000)  # would take minutes if it trained
    assert list(a.layers) == []


def test_lognorm_needs_the_detection_head(data):
    with pytest.raises(ValueError, match="detection_head"):
        sdi.pp.deepimpute(data.copy(), preset="paper", fills=("lognorm",), max_epochs=10_000)


def test_a_single_fill_as_a_string(data):
    a = data.copy()
    sdi.pp.deepimpute(a, fills="lognorm", **FAST)
    assert a.uns["imputed"]["layers"] == ["imputed"]  # the first fill takes key_added
    target = a.var["imputed_target"].to_numpy()
    np.testing.assert_allclose(a.layers["imputed"][:, ~target], _log_normalized(data)[:, ~target], rtol=1e-5, atol=1e-6)


def test_lognorm_beats_no_imputation_in_molecular_cross_validation():
    """The property the fill is for: closer to held-out molecules in log-normalised space than the counts."""
    adata = sdi.datasets.simulate(n_obs=400, n_vars=200, group_prob=[0.3, 0.3, 0.4], random_state=2)
    train, test = sdi.tl.molecular_split(adata, random_state=0)
    sdi.pp.deepimpute(train, fills=("expected", "lognorm"), **FAST)
    none = sdi.tl.mcv_scores(train.X, test)["mse"]
    lognorm = sdi.tl.mcv_scores(np.expm1(train.layers["imputed_lognorm"]), test)["mse"]
    assert lognorm < none
