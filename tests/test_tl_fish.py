from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

import scdeepimpute.tl as tl

SHARED = Path(__file__).resolve().parents[2] / "shared"
FISH = SHARED / "data" / "melanoma_fish" / "melanoma_fish.h5ad"


def gini_mad(x: np.ndarray) -> float:
    """Independent Gini: mean absolute difference over twice the mean (all ordered pairs)."""
    x = np.asarray(x, dtype=np.float64)
    return float(np.abs(x[:, None] - x[None, :]).sum() / (2 * x.size**2 * x.mean()))


def gini_lorenz(x: np.ndarray) -> float:
    """Independent Gini for large n: one minus twice the area under the Lorenz curve (trapezoids)."""
    x = np.sort(np.asarray(x, dtype=np.float64))
    lorenz = np.concatenate([[0.0], np.cumsum(x) / x.sum()])
    return float(1 - (lorenz[1:] + lorenz[:-1]).sum() / x.size)


def test_gini_hand_examples():
    assert tl.gini([2, 2, 2]) == 0.0
    assert tl.gini([0, 0, 0, 4]) == pytest.approx(0.75)  # (n - 1) / n
    assert tl.gini([1, 2, 3, 4]) == pytest.approx(0.25)  # sum |xi - xj| = 20; 20 / (2 * 16 * 2.5)
    assert tl.gini([1, np.nan, 2, 3, 4]) == pytest.approx(0.25)  # NaN ignored
    assert np.isnan(tl.gini([0, 0]))
    assert np.isnan(tl.gini([np.nan]))
    with pytest.raises(ValueError, match="non-negative"):
        tl.gini([-1, 2])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gini_equals_mean_absolute_difference(seed):
    x = np.random.default_rng(seed).gamma(0.7, 3.0, size=300)
    assert tl.gini(x) == pytest.approx(gini_mad(x))
    assert tl.gini(x) == pytest.approx(gini_lorenz(x))


def test_gini_2d_axis():
    rng = np.random.default_rng(0)
    X = rng.exponential(size=(50, 4))
    np.testing.assert_allclose(tl.gini(X, axis=0), [gini_mad(X[:, j]) for j in range(4)])
    np.testing.assert_allclose(tl.gini(X.T, axis=1), tl.gini(X, axis=0))


@pytest.mark.parametrize(
    ("draw", "expected"),
    [
        (lambda r, n: r.uniform(0, 1, n), 1 / 3),
        (lambda r, n: r.exponential(1.0, n), 0.5),
        (lambda r, n: r.lognormal(0.0, 0.8, n), 2 * stats.norm.cdf(0.8 / np.sqrt(2)) - 1),
        # Gamma(a): Gamma(a + 1/2) / (a Gamma(a) sqrt(pi))
        (lambda r, n: r.gamma(2.0, 1.0, n), special.gamma(2.5) / (2.0 * special.gamma(2.0) * np.sqrt(np.pi))),
    ],
)
def test_gini_closed_forms(draw, expected):
    x = draw(np.random.default_rng(0), 200_000)
    assert tl.gini(x) == pytest.approx(expected, abs=0.005)


def test_gapdh_normalize_matches_saver_recipe():
    rng = np.random.default_rng(0)
    ref = rng.gamma(5, 20, size=1000)
    X = rng.poisson(5, size=(1000, 3)).astype(float)
    Xn, keep = tl.gapdh_normalize(X, ref)
    # SAVER (R): keep GAPDH < quantile(0.9) & > quantile(0.1); divide by GAPDH / mean(GAPDH)
    s = pd.Series(ref)
    k = (s > s.quantile(0.1)) & (s < s.quantile(0.9))
    np.testing.assert_array_equal(keep, k.to_numpy())
    np.testing.assert_allclose(Xn, X[k] / (ref[k] / ref[k].mean())[:, None])
    assert keep.sum() == 800


def _fish_like(n=20000, seed=0, shapes=(0.5, 1.0, 3.0)):
    """FISH-like table: GAPDH per cell scales every gene (a cell-size effect); genes Gamma(a) given size."""
    rng = np.random.default_rng(seed)
    size = rng.lognormal(0, 0.3, n)
    gapdh = size * 100
    genes = [size * rng.gamma(a, 10.0, n) for a in shapes]
    X = np.column_stack([gapdh, *genes])
    a = ad.AnnData(X)
    a.var_names = ["GAPDH"] + [f"G{i}" for i in range(len(shapes))]
    return a


def test_fish_compare_recovers_known_gini():
    shapes = (0.5, 1.0, 3.0)
    a = _fish_like(shapes=shapes)
    res = tl.fish_compare(a, {"self": a}, zero_as_missing=False)
    truth = [special.gamma(s + 0.5) / (s * special.gamma(s) * np.sqrt(np.pi)) for s in shapes]
    np.testing.assert_allclose(res["gini"]["FISH"].to_numpy(), truth, atol=0.01)
    assert res["gini"].columns.tolist() == ["FISH", "self"]
    assert res["scores"].loc["self", "gini_mse"] == 0
    assert res["scores"].loc["self", "gini_pearson"] == pytest.approx(1.0)
    assert (res["ks"]["self"] == 0).all()
    np.testing.assert_allclose(res["efficiency"]["self"], 1.0)


def test_fish_compare_efficiency_and_ks():
    fish = _fish_like(seed=1)
    # a "method" with a tenth of the capture efficiency: Gini unchanged, KS needs the efficiency factor
    low = fish.copy()
    low.X = low.X / 10
    res = tl.fish_compare(fish, {"low": low}, zero_as_missing=False)
    assert res["scores"].loc["low", "gini_mse"] == pytest.approx(0, abs=1e-20)
    np.testing.assert_allclose(res["efficiency"]["low"], 10.0)
    assert res["ks"]["low"].max() < 1e-3  # equal up to float rounding
    raw = tl.fish_compare(fish, {"low": low}, zero_as_missing=False, efficiency=False)
    assert raw["ks"]["low"].min() > 0.4
    # KS equals scipy's two-sample statistic on the normalised values
    f = res["values"]["FISH"]["G1"].to_numpy()
    m = res["values"]["low"]["G1"].to_numpy() * res["efficiency"].loc["G1", "low"]
    assert res["ks"].loc["G1", "low"] == pytest.approx(stats.ks_2samp(f, m).statistic)


@pytest.mark.parametrize("sentinel", [0.0, -1.0, np.nan])
def test_fish_not_probed(sentinel):
    """FISH entries that mean "not probed" (0 with zero_as_missing, -1 or NaN always) must not count."""
    full = _fish_like(seed=2)
    rng = np.random.default_rng(0)
    holes = full.copy()
    X = holes.X.copy()
    X[:, 1:][rng.random((X.shape[0], X.shape[1] - 1)) < 0.5] = sentinel  # half the genes' entries unprobed
    holes.X = X
    ref = tl.fish_compare(full, {"m": full})["gini"]["FISH"]
    as_missing = tl.fish_compare(holes, {"m": full}, zero_as_missing=sentinel == 0)["gini"]["FISH"]
    np.testing.assert_allclose(as_missing, ref, atol=0.01)
    if sentinel == 0:
        as_zero = tl.fish_compare(holes, {"m": full})["gini"]["FISH"]
        assert (as_zero > ref + 0.15).all()


def test_fish_compare_errors():
    a = _fish_like(n=200)
    with pytest.raises(KeyError, match="not in var_names"):
        tl.fish_compare(a, {"m": a}, genes=["nope"])
    b = a[:, ["GAPDH"]].copy()
    with pytest.raises(ValueError, match="no genes"):
        tl.fish_compare(b, {"m": b})


@pytest.mark.shared
def test_real_melanoma_fish_gini():
    if not FISH.exists():
        pytest.skip(f"{FISH} not available (tests that read ../shared skip without it)")
    fish = ad.read_h5ad(FISH)
    X = fish.X.toarray()
    assert X.min() == -1  # this file marks "not probed" with -1 (zeros are measured zeros)
    fish_pos = fish.copy()
    fish_pos.X = np.clip(X, 0, None)  # a "method" must not carry the sentinel
    res = tl.fish_compare(fish, {"fish": fish_pos})
    g = res["gini"]["FISH"]
    assert len(g) == 25
    assert "GAPDH" not in g.index
    assert g.between(0, 1).all()
    # independent recomputation with pandas: -1 -> NaN, GAPDH quantile filter, scaling, Lorenz-curve Gini
    df = pd.DataFrame(X.astype(np.float64), columns=fish.var_names).replace(-1, np.nan)
    gap = df["GAPDH"]
    keep = (gap > gap.quantile(0.1)) & (gap < gap.quantile(0.9))
    norm = df[keep].div(gap[keep] / gap[keep].mean(), axis=0)
    for gene in ["LMNA", "MITF", "VGF", "KDM5A", "TXNRD1"]:
        assert g[gene] == pytest.approx(gini_lorenz(norm[gene].dropna().to_numpy()), rel=1e-9)
    # the clipped copy counts "not probed" as zero, which inflates every Gini but GAPDH's (always probed)
    assert (res["gini"]["fish"] > g).all()
    # zero_as_missing drops measured zeros too: Gini can only fall
    assert (tl.fish_compare(fish, {"fish": fish_pos}, zero_as_missing=True)["gini"]["FISH"] <= g + 1e-12).all()
