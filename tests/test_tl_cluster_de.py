from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
from scipy import sparse, stats
from sklearn import metrics

import scdeepimpute.tl as tl
from scdeepimpute.datasets import simulate


@pytest.fixture(scope="module")
def sim():
    # strong DE so three groups separate clearly
    return simulate(n_obs=300, n_vars=600, group_prob=[0.3, 0.3, 0.4], de_fac_loc=0.6, random_state=0)


@pytest.fixture(scope="module")
def clustered(sim):
    a = sim.copy()
    a.layers["counts"] = a.X.copy()
    tl.cluster(a, layer="counts", labels_key="group", random_state=0)
    return a


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clustering_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, 200)
    clusters = np.where(rng.random(200) < 0.7, labels, rng.integers(0, 4, 200))
    emb = rng.normal(size=(200, 2)) + labels[:, None] * 2
    m = tl.clustering_metrics(labels, clusters, emb)
    assert m["ari"] == pytest.approx(metrics.adjusted_rand_score(labels, clusters))
    assert m["ami"] == pytest.approx(metrics.adjusted_mutual_info_score(labels, clusters))
    assert m["fmi"] == pytest.approx(metrics.fowlkes_mallows_score(labels, clusters))
    assert m["silhouette"] == pytest.approx(metrics.silhouette_score(emb, labels))


def test_clustering_metrics_hand_example():
    m = tl.clustering_metrics(["a", "a", "b", "b"], [1, 1, 0, 0], np.array([[0, 0], [0, 1], [10, 0], [10, 1]]))
    assert m["ari"] == m["ami"] == m["fmi"] == 1.0
    # silhouette by hand: a(i) = 1, b(i) = mean distance to the other pair
    b = np.mean([10, np.hypot(10, 1)])
    assert m["silhouette"] == pytest.approx((b - 1) / b)
    assert np.isnan(tl.clustering_metrics(["a"] * 3, [0, 0, 1], np.zeros((3, 2)))["silhouette"])


def test_cluster_writes_and_matches_label_count(clustered):
    a = clustered
    assert a.obs["leiden_counts"].dtype == "category"
    assert a.obs["leiden_counts"].nunique() == 3  # bisection hits the number of labels
    assert a.obsm["X_umap_counts"].shape == (a.n_obs, 2)
    assert a.obsm["X_pca_counts"].shape[0] == a.n_obs
    u = a.uns["cluster_counts"]
    assert u["n_clusters"] == 3
    assert u["params"]["n_clusters_target"] == 3
    assert u["params"]["layer"] == "counts"
    assert u["trace"].shape[1] == 2
    assert u["trace"][-1, 1] == 3  # the search stops at the first hit
    s = tl.clustering_scores(a, labels_key="group", layer="counts")
    assert s["ari"] > 0.9
    assert s["silhouette"] > 0.2
    assert s["silhouette_pca"] == pytest.approx(metrics.silhouette_score(a.obsm["X_pca_counts"], a.obs["group"]))
    assert s["ari"] == pytest.approx(metrics.adjusted_rand_score(a.obs["group"], a.obs["leiden_counts"]))


def test_cluster_fixed_resolution_copy_and_seed(sim):
    out = tl.cluster(sim, resolution=0.5, key_added="r05", copy=True, random_state=0)
    assert "leiden_r05" in out.obs
    assert "leiden_r05" not in sim.obs
    assert out.uns["cluster_r05"]["resolution"] == 0.5
    assert out.uns["cluster_r05"]["trace"].size == 0
    again = tl.cluster(sim, resolution=0.5, key_added="r05", copy=True, random_state=0)
    np.testing.assert_array_equal(out.obs["leiden_r05"], again.obs["leiden_r05"])
    np.testing.assert_allclose(out.obsm["X_umap_r05"], again.obsm["X_umap_r05"])


def test_cluster_bisection_reaches_other_targets(sim):
    out = tl.cluster(sim, n_clusters=5, key_added="five", copy=True)
    assert out.obs["leiden_five"].nunique() == 5


def test_clustering_scores_missing_run(sim):
    with pytest.raises(KeyError, match="run scdeepimpute.tl.cluster"):
        tl.clustering_scores(sim, labels_key="group", key="absent")


def test_de_scores_table_and_auc(sim):
    res = tl.de_scores(sim, n_genes=100)
    t = res["table"]
    assert len(t) == 3 * sim.n_vars
    assert (t.groupby("group")["ranked"].sum() == 100).all()
    assert (t.loc[~t["ranked"], "score"] == 0).all()
    assert t["score"].between(0, 1).all()
    assert res["auc"] == pytest.approx(metrics.roc_auc_score(t["is_de"], t["score"]))
    for g, auc in res["auc_per_group"].items():
        sub = t[t["group"] == g]
        assert auc == pytest.approx(metrics.roc_auc_score(sub["is_de"], sub["score"]))
    assert res["auc"] > 0.6
    fpr, tpr, _ = metrics.roc_curve(t["is_de"], t["score"])
    np.testing.assert_allclose(res["fpr"], fpr)
    np.testing.assert_allclose(res["tpr"], tpr)
    dropped = tl.de_scores(sim, n_genes=100, unranked="drop")
    r = t[t["ranked"]]
    assert dropped["auc"] == pytest.approx(metrics.roc_auc_score(r["is_de"], r["score"]))


def test_de_scores_pvalues_are_welch_t_with_bh(sim):
    """1 - score equals BH-adjusted Welch t-test p-values on log1p(normalize_total) data (scipy)."""
    res = tl.de_scores(sim, n_genes=sim.n_vars)
    X = sim.X.toarray().astype(np.float64)
    X = np.log1p(X / X.sum(1, keepdims=True) * 1e4)
    g1 = (sim.obs["group"] == "Group1").to_numpy()
    p = stats.ttest_ind(X[g1], X[~g1], equal_var=False).pvalue
    p = np.where(np.isnan(p), 1.0, p)
    padj = stats.false_discovery_control(p, method="bh")
    score = res["table"].query("group == 'Group1'")["score"].to_numpy()
    ok = ~np.isnan(stats.ttest_ind(X[g1], X[~g1], equal_var=False).pvalue)
    np.testing.assert_allclose(score[ok], 1 - padj[ok], atol=1e-4)  # scanpy computes in float32


def test_de_scores_errors(sim):
    with pytest.raises(KeyError, match="true DE flags"):
        tl.de_scores(sim, truth_prefix="nope_")
    with pytest.raises(ValueError, match="unranked"):
        tl.de_scores(sim, unranked="maybe")


def test_work_copy_clips_negatives_and_keeps_input(sim):
    a = sim[:50].copy()
    a.layers["neg"] = a.X.toarray() - 0.5
    before = a.layers["neg"].copy()
    from scdeepimpute.tl._cluster import _work_copy

    w = _work_copy(a, "neg")
    assert (w.X >= 0).all()
    assert np.array_equal(a.layers["neg"], before)
    assert sparse.issparse(_work_copy(a, None).X)
    assert (w.obs_names == a.obs_names).all()


def test_compare_clustering_de_and_store(sim):
    """tl.compare's clustering and DE rows (here, where UMAP's numba compilation is already paid)."""
    a = sim.copy()
    df = tl.compare(a, methods=["none", "nzmean"], labels_key="group", store=True, dataset="sim")
    assert df.columns.tolist() == ["dataset", "method", "metric", "value"]
    assert (df["dataset"] == "sim").all()
    wide = df.pivot(index="method", columns="metric", values="value")
    assert {"ari", "ami", "fmi", "silhouette", "de_auc", "time_s"} <= set(wide.columns)  # DE auto-detected
    assert "mse" not in wide.columns
    np.testing.assert_array_equal(a.layers["compare_nzmean"], tl.impute_nzmean(ad.AnnData(sim.X)))
    assert a.obs["leiden_compare_none"].nunique() == 3
    s = tl.clustering_scores(a, labels_key="group", key="compare_nzmean")
    assert s["ari"] == pytest.approx(wide.loc["nzmean", "ari"])
    res = tl.de_scores(a, layer="compare_nzmean")
    assert res["auc"] == pytest.approx(wide.loc["nzmean", "de_auc"])
