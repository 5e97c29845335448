from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scanpy as sc
from scipy import sparse

import scdeepimpute.tl as tl
from scdeepimpute.datasets import simulate

FORMATS = {"dense": np.asarray, "csr": sparse.csr_matrix, "csc": sparse.csc_matrix}


def _counts(n_obs=200, n_vars=60, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    mu = rng.gamma(0.6, 5.0, size=n_vars)
    return rng.poisson(rng.gamma(2.0, mu / 2.0, size=(n_obs, n_vars))).astype(dtype)


def _dense(M):
    return M.toarray() if sparse.issparse(M) else np.asarray(M)


# --------------------------------------------------------------------------- split
@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_split_adds_up_and_keeps_format(fmt, dtype):
    X = _counts(dtype=dtype)
    a = ad.AnnData(FORMATS[fmt](X))
    a.obs["g"] = "x"
    train, test = tl.molecular_split(a, random_state=0)
    for part in (train, test):
        assert part.shape == a.shape
        assert part.X.dtype == np.dtype(dtype)
        assert sparse.issparse(part.X) == (fmt != "dense")
        if fmt != "dense":
            assert part.X.format == "csr"
            assert np.all(part.X.data != 0)
        assert _dense(part.X).min() >= 0
        assert list(part.obs_names) == list(a.obs_names)
        assert list(part.var_names) == list(a.var_names)
        assert "g" in part.obs
    np.testing.assert_array_equal(_dense(train.X) + _dense(test.X), X)
    np.testing.assert_array_equal(_dense(a.X), X)  # input untouched
    assert test.uns["mcv"]["train_total"] == float(_dense(train.X).sum())


@pytest.mark.parametrize("train_fraction", [0.9, 0.5, 0.2])
def test_split_fraction_within_binomial_sd(train_fraction):
    X = _counts(n_obs=400, n_vars=100, seed=1)
    n = X.sum()
    _, test = tl.molecular_split(ad.AnnData(sparse.csr_matrix(X)), train_fraction=train_fraction, random_state=3)
    q = 1 - train_fraction
    sd = np.sqrt(n * q * (1 - q))
    assert abs(test.X.sum() - n * q) < 4 * sd
    # every molecule is split on its own: entries with a larger count give a larger test share, in proportion
    big = X >= 10
    assert abs(_dense(test.X)[big].sum() / X[big].sum() - q) < 4 * np.sqrt(q * (1 - q) / X[big].sum())


def test_split_is_deterministic_and_seeded():
    a = ad.AnnData(sparse.csr_matrix(_counts()))
    t1, _ = tl.molecular_split(a, random_state=7)
    t2, _ = tl.molecular_split(a, random_state=7)
    t3, _ = tl.molecular_split(a, random_state=8)
    assert (t1.X != t2.X).nnz == 0
    assert (t1.X != t3.X).nnz > 0
    t4, _ = tl.molecular_split(a, random_state=np.random.default_rng(7))
    assert (t1.X != t4.X).nnz == 0


@pytest.mark.parametrize("fmt", ["dense", "csr"])
def test_split_of_view_and_layer(fmt):
    X = _counts()
    a = ad.AnnData(np.zeros_like(X), layers={"counts": FORMATS[fmt](X)})
    rows = np.arange(0, X.shape[0], 3)
    view = a[rows, 5:40]
    assert view.is_view
    tr_v, te_v = tl.molecular_split(view, layer="counts", random_state=1)
    tr_c, te_c = tl.molecular_split(view.copy(), layer="counts", random_state=1)
    assert view.is_view  # not actualised
    np.testing.assert_array_equal(_dense(tr_v.X), _dense(tr_c.X))
    np.testing.assert_array_equal(_dense(tr_v.X) + _dense(te_v.X), X[rows, 5:40])
    assert list(tr_v.obs_names) == list(view.obs_names)


@pytest.mark.parametrize(
    ("bad", "match"),
    [(-1.0, "negative"), (np.nan, "NaN"), (np.inf, "infinite"), (0.5, "non-integer")],
)
@pytest.mark.parametrize("fmt", ["dense", "csr"])
def test_split_rejects_non_counts(bad, match, fmt):
    X = _counts(n_obs=20, n_vars=10)
    X[3, 4] = bad
    with pytest.raises(ValueError, match=match):
        tl.molecular_split(ad.AnnData(FORMATS[fmt](X)))


@pytest.mark.parametrize("frac", [0.0, 1.0, 1.5, -0.1])
def test_split_rejects_bad_fraction(frac):
    with pytest.raises(ValueError, match="train_fraction"):
        tl.molecular_split(ad.AnnData(_counts(n_obs=5, n_vars=5)), train_fraction=frac)


def test_split_hypothesis_property():
    hyp = pytest.importorskip("hypothesis")
    st = pytest.importorskip("hypothesis.strategies")
    hnp = pytest.importorskip("hypothesis.extra.numpy")

    @hyp.settings(max_examples=60, deadline=None)
    @hyp.given(
        X=hnp.arrays(
            dtype=st.sampled_from([np.int32, np.int64, np.float32, np.float64]),
            shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=12),
            elements=st.integers(0, 1000),
        ),
        fmt=st.sampled_from(list(FORMATS)),
        frac=st.floats(0.01, 0.99),
        seed=st.integers(0, 2**31 - 1),
    )
    def check(X, fmt, frac, seed):
        train, test = tl.molecular_split(ad.AnnData(FORMATS[fmt](X)), train_fraction=frac, random_state=seed)
        tr, te = _dense(train.X), _dense(test.X)
        np.testing.assert_array_equal(tr + te, X)
        assert tr.min() >= 0
        assert te.min() >= 0
        assert tr.dtype == X.dtype
        assert te.dtype == X.dtype

    check()


# --------------------------------------------------------------------------- scores
#: Imputed train part, test part and train total of the hand computation below.
Y_HAND = np.array([[1.0, 2.0, 1.0], [0.0, 3.0, 1.0]])
T_HAND = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
TRAIN_TOTAL = 20.0


def _hand():
    # mse: each row of Y scaled to 1e4 (row sums 4 and 4), then log1p; T's first row sums to 1, its second
    # row has no molecules and stays zero; mean over all 6 entries
    y_log = np.log1p(np.array([[2500.0, 5000.0, 2500.0], [0.0, 7500.0, 2500.0]]))
    t_log = np.log1p(np.array([[0.0, 1e4, 0.0], [0.0, 0.0, 0.0]]))
    mse = ((y_log - t_log) ** 2).sum() / 6
    # poisson: mu = Y * sum(T) / train total = Y * 1 / 20; sum(mu) = 8 / 20 = 0.4; the only non-zero y is
    # 1 at mu = 2 / 20 = 0.1, so the loss is (0.4 - 1 * log(0.1 + 1e-6)) / 6
    poisson = (0.4 - np.log(0.1 + 1e-6)) / 6
    return mse, poisson


@pytest.mark.parametrize("fmt", ["dense", "csr", "anndata"])
def test_scores_match_hand_computation(fmt):
    mse, poisson = _hand()
    wrap = {"dense": np.asarray, "csr": sparse.csr_matrix, "anndata": lambda M: ad.AnnData(M)}[fmt]
    s = tl.mcv_scores(wrap(Y_HAND), wrap(T_HAND), train=TRAIN_TOTAL)
    assert s["mse"] == pytest.approx(mse, rel=1e-12)
    assert s["poisson"] == pytest.approx(poisson, rel=1e-12)
    # the train part may be passed as a matrix, or read from the test part's uns
    train = np.array([[10.0, 0.0, 5.0], [5.0, 0.0, 0.0]])
    assert tl.mcv_scores(Y_HAND, T_HAND, train=train)["poisson"] == pytest.approx(poisson, rel=1e-12)
    test = ad.AnnData(T_HAND, uns={"mcv": {"train_total": TRAIN_TOTAL}})
    assert tl.mcv_scores(Y_HAND, test)["poisson"] == pytest.approx(poisson, rel=1e-12)


def test_mse_matches_scanpy_normalisation():
    """The log-space MSE equals the benchmark's recipe: sc.pp.normalize_total(1e4) + sc.pp.log1p on both."""
    rng = np.random.default_rng(0)
    Y = rng.gamma(1.0, 2.0, size=(50, 30)) * (rng.random((50, 30)) > 0.3)
    T = rng.poisson(0.3, size=(50, 30)).astype(np.float64)
    T[4] = 0  # a cell without test molecules
    parts = []
    for M in (Y, T):
        b = ad.AnnData(M.copy())
        sc.pp.normalize_total(b, target_sum=1e4)
        sc.pp.log1p(b)
        parts.append(b.X)
    expected = np.mean((parts[0] - parts[1]) ** 2)
    assert tl.mcv_scores(Y, T, train=100.0)["mse"] == pytest.approx(expected, rel=1e-10)


def test_poisson_loss_rewards_the_true_mean():
    """On Poisson counts the true expression has a lower Poisson loss than the noisy train counts.

    (Not so the log-space MSE: against a sparse 10% test part, log1p of the normalised mean is far from
    log1p of mostly-zero counts, and here it scores worse than the train counts themselves.)
    """
    rng = np.random.default_rng(0)
    mean = rng.gamma(0.8, 2.0, size=(40, 1)) * rng.gamma(0.8, 2.0, size=(1, 300))  # cell x gene rates
    a = ad.AnnData(rng.poisson(mean).astype(np.float32))
    train, test = tl.molecular_split(a, random_state=0)
    none = tl.mcv_scores(train.X, test)
    oracle = tl.mcv_scores(mean, test)  # any global scale: the Poisson scale is the ratio of the totals
    assert oracle["poisson"] < none["poisson"]


def test_scores_errors():
    with pytest.raises(ValueError, match="shape"):
        tl.mcv_scores(Y_HAND, T_HAND[:, :2], train=1.0)
    with pytest.raises(ValueError, match="non-negative"):
        tl.mcv_scores(-Y_HAND, T_HAND, train=1.0)
    with pytest.raises(ValueError, match="train"):
        tl.mcv_scores(Y_HAND, T_HAND)
    with pytest.raises(ValueError, match="positive"):
        tl.mcv_scores(Y_HAND, T_HAND, train=0.0)


# --------------------------------------------------------------------------- compare
def test_compare_mcv_columns():
    a = simulate(n_obs=150, n_vars=120, group_prob=[0.5, 0.5], random_state=0)
    tl.mask(a, random_state=0)
    df = tl.compare(a, methods=["none", "nzmean"], mask_key="masked", mcv=True, random_state=2)
    wide = df.pivot(index="method", columns="metric", values="value")
    assert set(wide.columns) == {"mse", "pearson", "time_s", "mcv_mse", "mcv_poisson"}
    # the split is of the counts before masking (adata.X), with compare's random_state
    train, test = tl.molecular_split(a, random_state=2)
    for name, f in {"none": tl.impute_none, "nzmean": tl.impute_nzmean}.items():
        s = tl.mcv_scores(f(train), test)
        assert wide.loc[name, "mcv_mse"] == pytest.approx(s["mse"])
        assert wide.loc[name, "mcv_poisson"] == pytest.approx(s["poisson"])
    # masked metrics unchanged by the extra runs
    plain = tl.compare(a, methods=["none", "nzmean"], mask_key="masked", random_state=2)
    plain = plain.pivot(index="method", columns="metric", values="value")
    assert set(plain.columns) == {"mse", "pearson", "time_s"}
    np.testing.assert_allclose(wide[["mse", "pearson"]], plain[["mse", "pearson"]])


def test_compare_mcv_dict_outputs_and_failures():
    a = simulate(n_obs=100, n_vars=80, random_state=1)

    def two(b):
        X = tl.impute_none(b)
        return {"raw": X, "plus": X + 1}

    calls = []

    def fails_on_train(b):
        calls.append(b.X.sum())
        if len(calls) == 2:
            raise RuntimeError("boom")
        return tl.impute_none(b)

    df = tl.compare(a, methods={"two": two, "flaky": fails_on_train}, mcv=True, on_error="warn")
    wide = df.pivot(index="method", columns="metric", values="value")
    assert wide.loc[["two_raw", "two_plus"], "mcv_poisson"].notna().all()
    assert np.isnan(wide.loc["flaky", "mcv_poisson"])
    assert wide.loc["flaky", "time_s"] >= 0
    # the second call got the train part: about 90% of the molecules
    assert calls[1] / calls[0] == pytest.approx(0.9, abs=0.02)
    calls.clear()
    with pytest.raises(RuntimeError, match="boom"):
        tl.compare(a, methods={"flaky": fails_on_train}, mcv=True)
