from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import scdeepimpute.pl as pl
import scdeepimpute.tl as tl
from scdeepimpute.datasets import simulate


@pytest.fixture(scope="module")
def bench():
    a = simulate(n_obs=120, n_vars=150, group_prob=[0.5, 0.5], de_fac_loc=0.6, random_state=0)
    tl.mask(a, random_state=0)
    a.layers["nzmean"] = tl.impute_nzmean(ad.AnnData(a.layers["masked"]))
    df = tl.compare(a, methods=["none", "nzmean"], mask_key="masked")
    # clustering-like rows and embeddings without running UMAP (keeps this file fast; tl.cluster is tested elsewhere)
    df = pd.concat([df, pd.DataFrame({"method": ["none", "nzmean"], "metric": "ari", "value": [0.2, 0.8]})])
    rng = np.random.default_rng(0)
    for key in ("compare_none", "compare_nzmean"):
        a.obsm[f"X_umap_{key}"] = rng.normal(size=(a.n_obs, 2))
    return a, df


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


@pytest.mark.parametrize("kind", ["hexbin", "scatter"])
def test_masked_scatter(bench, kind):
    a, _ = bench
    fig = pl.masked_scatter(a, layers=["masked", "nzmean"], kind=kind)
    assert isinstance(fig, Figure)
    assert len([x for x in fig.axes if x.get_visible() and x.get_title()]) == 2
    s = tl.masked_scores(a, layer="nzmean")
    assert f"MSE {s['mse']:.3f}" in fig.axes[1].get_title()
    _, ax = plt.subplots()
    assert pl.masked_scatter(a, layers="nzmean", ax=ax) is ax.figure
    with pytest.raises(ValueError, match="single panel"):
        pl.masked_scatter(a, layers=["masked", "nzmean"], ax=ax)


@pytest.mark.parametrize(("axis", "n"), [("both", 2), ("gene", 1), ("cell", 1)])
def test_masked_mse(bench, axis, n):
    a, _ = bench
    scores = {k: tl.masked_scores(a, layer=k) for k in ("masked", "nzmean")}
    fig = pl.masked_mse(scores, axis=axis)
    assert len(fig.axes) == n
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["masked", "nzmean"]


def test_metric_bars(bench):
    _, df = bench
    fig = pl.metric_bars(df, metrics=["mse", "ari"])
    assert [x.get_title() for x in fig.axes] == ["mse", "ari"]
    heights = [p.get_height() for p in fig.axes[0].patches]
    wide = df.pivot(index="method", columns="metric", values="value")
    np.testing.assert_allclose(heights, wide.loc[["none", "nzmean"], "mse"])
    two = pd.concat([df.assign(dataset="d1"), df.assign(dataset="d2")])
    assert len(pl.metric_bars(two, metrics=["mse"]).axes[0].patches) == 4


def test_umap_panels(bench):
    a, _ = bench
    fig = pl.umap_panels(a, keys=["compare_none", "compare_nzmean"], color="group", ncols=2)
    assert [x.get_title() for x in fig.axes] == ["compare_none", "compare_nzmean"]
    assert len(fig.axes[0].collections[0].get_offsets()) == a.n_obs


def test_de_roc(bench):
    a, _ = bench
    res = {"raw": tl.de_scores(a, n_genes=50), "nzmean": tl.de_scores(a, layer="nzmean", n_genes=50)}
    fig = pl.de_roc(res)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[0] == f"raw (AUC {res['raw']['auc']:.3f})"
    assert len(labels) == 2
