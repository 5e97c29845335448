"""Out-of-core DeepImpute on dask arrays (``scdeepimpute.dask`` and ``pp.deepimpute`` on dask input)."""

from __future__ import annotations

import tracemalloc

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import scdeepimpute as sdi

from .conftest import FAST, make_counts

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
zarr = pytest.importorskip("zarr")
sdx = pytest.importorskip("scdeepimpute.dask")

#: The network alone: without a neighbourhood a dask run equals the in-memory run exactly.
NET = {**FAST, "neighbors": 0}

pytestmark = [
    pytest.mark.filterwarnings("ignore:Writing zarr v2 data:UserWarning"),
    pytest.mark.filterwarnings("ignore:zarr v3 autosharding:UserWarning"),
]


@pytest.fixture(scope="module")
def data() -> ad.AnnData:
    a = ad.AnnData(sparse.csr_matrix(make_counts(300, 40, seed=21)))
    a.var_names = [f"g{j}" for j in range(a.n_vars)]
    a.obs_names = [f"c{i}" for i in range(a.n_obs)]
    return a


@pytest.fixture(scope="module")
def model(data) -> sdi.DeepImpute:
    return sdi.DeepImpute(**NET).fit(data)


def lazy_copy(a: ad.AnnData, *, dense: bool, chunk: int = 64) -> ad.AnnData:
    b = a.copy()
    b.X = da.from_array(a.X.toarray() if dense else a.X, chunks=(chunk, a.n_vars))
    return b


@pytest.mark.parametrize("dense", [False, True])
def test_pp_deepimpute_dask_equals_in_memory(data, dense):
    ref = data.copy()
    sdi.pp.deepimpute(ref, **NET)
    lazy = lazy_copy(data, dense=dense)
    sdi.pp.deepimpute(lazy, **NET)
    for key in ("imputed", "imputed_detected"):
        layer = lazy.layers[key]
        assert isinstance(layer, da.Array)
        assert layer.dtype == np.float32
        assert layer.chunks == lazy.X.chunks  # row chunks kept, genes in one chunk
    imputed, detected = dask.compute(lazy.layers["imputed"], lazy.layers["imputed_detected"])
    np.testing.assert_array_equal(imputed, ref.layers["imputed"])
    np.testing.assert_array_equal(detected, ref.layers["imputed_detected"])
    np.testing.assert_array_equal(lazy.var["imputed_target"], ref.var["imputed_target"])
    np.testing.assert_array_equal(lazy.uns["imputed"]["val_loss"], ref.uns["imputed"]["val_loss"])


def test_train_size_reads_the_same_cells_as_in_memory(data):
    """With ``train_size``, the dask fit reads the cells the in-memory fit draws and equals it exactly."""
    lazy = sdx.fit(sdi.DeepImpute(**NET), lazy_copy(data, dense=False), train_size=150)
    assert lazy.n_cells_fit_ == 150
    direct = sdi.DeepImpute(**NET).fit(data, train_size=150)
    for b1, b2 in zip(lazy.blocks_, direct.blocks_, strict=True):
        np.testing.assert_array_equal(b1, b2)
    np.testing.assert_array_equal(lazy.history_.to_dict()["val_loss"], direct.history_.to_dict()["val_loss"])
    np.testing.assert_allclose(
        sdx.to_memory(sdx.impute(lazy, lazy_copy(data, dense=True))["detected"]),
        direct.impute(data)["detected"],
        rtol=1e-6,
    )


def test_impute_transfers_by_gene_name(model, data):
    """Data with other genes: aligned by name inside each block, as in memory."""
    sub = data[:, 5:].copy()
    ref = model.impute(sub, fills=("detected",))["detected"]
    lazy = sdx.impute(model, lazy_copy(sub, dense=False), fills=("detected",))["detected"]
    np.testing.assert_allclose(lazy.compute(), ref, rtol=1e-6)


@pytest.mark.parametrize("target", ["path", "group at the sub-path"])
def test_impute_to_zarr_adds_layers_readable_by_anndata(model, data, tmp_path, target):
    lazy = lazy_copy(data, dense=False, chunk=50)
    path = tmp_path / "out.zarr"
    lazy.write_zarr(path)  # X streamed from the dask array
    layers = path / "layers" if target == "path" else zarr.open_group(str(path / "layers"), mode="a")
    arrays = sdx.impute_to_zarr(model, lazy, layers)
    assert set(arrays) == {"imputed", "imputed_detected"}
    back = ad.read_zarr(path)  # no consolidate_metadata needed: impute_to_zarr keeps it current
    ref = model.impute(data)
    np.testing.assert_allclose(back.layers["imputed"], ref["expected"], rtol=1e-6)
    np.testing.assert_allclose(back.layers["imputed_detected"], ref["detected"], rtol=1e-6)
    np.testing.assert_allclose(arrays["imputed"].compute(), ref["expected"], rtol=1e-6)
    with pytest.raises(ValueError, match="already exists"):
        sdx.impute_to_zarr(model, lazy, path / "layers")


@pytest.mark.parametrize("suffix", [".h5ad", ".zarr"])
def test_read_lazy_then_pp_deepimpute(data, tmp_path, suffix, model, monkeypatch):
    path = tmp_path / f"in{suffix}"
    data.write_h5ad(path) if suffix == ".h5ad" else data.write_zarr(path)
    warnings = []
    monkeypatch.setattr(sdi._logging, "warning", warnings.append)
    lazy = sdx.read_lazy(path, chunk_size=70)
    assert not [w for w in warnings if ".raw" in w]  # anndata's empty zarr ``raw`` element is not a .raw
    assert isinstance(lazy.X, da.Array)
    assert lazy.X.chunks[0] == (70, 70, 70, 70, 20)
    assert list(lazy.var_names) == list(data.var_names)
    sdi.pp.deepimpute(lazy, model=model)
    np.testing.assert_allclose(lazy.layers["imputed"].compute(), model.predict(data), rtol=1e-6)


def test_errors(model, data):
    with pytest.raises(ValueError, match="chunked along genes"):
        sdx.impute(model, da.from_array(data.X.toarray(), chunks=(100, 20)), var_names=data.var_names)
    with pytest.raises(TypeError, match="expected a dask array"):
        sdx.impute(model, data)
    with pytest.raises(ValueError, match="unknown policy"):  # options are checked before anything is computed
        sdx.impute(model, lazy_copy(data, dense=True), policy="sometimes")
    bad = data.X.toarray()
    bad[250, 3] = -1
    lazy = sdx.impute(model, da.from_array(bad, chunks=(100, data.n_vars)), var_names=data.var_names)
    with pytest.raises(ValueError, match="negative values"):
        lazy["expected"].compute()
    assert lazy["expected"].blocks[0].compute().shape == (100, data.n_vars)  # the other blocks are fine


def test_distributed_in_process_cluster(model, data):
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
        distributed.Client(cluster),
    ):
        result = sdx.impute(model, lazy_copy(data, dense=False))
        expected, detected = dask.compute(result["expected"], result["detected"])
        lazy = lazy_copy(data, dense=True)
        sdi.pp.deepimpute(lazy, **NET)  # fit (reads the training cells through the cluster) and lazy layers
        imputed = lazy.layers["imputed"].compute()
    ref = model.impute(data)
    np.testing.assert_allclose(expected, ref["expected"], rtol=1e-6)
    np.testing.assert_allclose(detected, ref["detected"], rtol=1e-6)
    np.testing.assert_allclose(imputed, ref["expected"], rtol=1e-6)  # same seed, same data: same model


@pytest.mark.slow
def test_distributed_worker_processes(model, data):
    """Workers in other processes get the model as bytes (saved weights + config) and load it once."""
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster),
    ):
        result = sdx.impute(model, lazy_copy(data, dense=False, chunk=100), fills=("detected",))["detected"]
        values = result.compute()
    np.testing.assert_allclose(values, model.impute(data, fills=("detected",))["detected"], rtol=1e-6)


# --------------------------------------------------------------------------- bounded memory
def write_counts_zarr(path, n_cells: int, n_genes: int, chunk: int) -> None:
    """An AnnData zarr store of dense counts, written chunk by chunk (never all in memory)."""
    g = zarr.open_group(str(path), mode="w")
    g.attrs.update({"encoding-type": "anndata", "encoding-version": "0.1.0"})
    ad.io.write_elem(g, "obs", pd.DataFrame(index=[f"c{i}" for i in range(n_cells)]))
    ad.io.write_elem(g, "var", pd.DataFrame(index=[f"g{j}" for j in range(n_genes)]))
    X = g.create_array("X", shape=(n_cells, n_genes), chunks=(chunk, n_genes), dtype="float32")
    X.attrs.update({"encoding-type": "array", "encoding-version": "0.2.0"})
    for start in range(0, n_cells, chunk):
        stop = min(start + chunk, n_cells)
        X[start:stop] = make_counts(stop - start, n_genes, seed=start)


def _fit_and_stream(src, out, chunk: int):
    from anndata.experimental import read_elem_lazy

    X = read_elem_lazy(zarr.open_group(str(src), mode="r")["X"], chunks=(chunk, 100))
    names = [f"g{j}" for j in range(X.shape[1])]
    model = sdx.fit(sdi.DeepImpute(**NET), X, var_names=names, train_size=2000)
    sdx.impute_to_zarr(model, X, out, var_names=names)
    return model


def test_peak_memory_is_bounded_by_chunks_not_by_the_matrix(tmp_path):
    """80k cells x 100 genes (32 MB of input, 64 MB of output): fit + streamed imputation stay under 16 MB.

    ``tracemalloc`` counts every numpy, zarr, dask and Python allocation, but not TensorFlow's own
    buffers (which scale with the chunk and the network, not with the number of cells). The dask
    array is used directly: an AnnData would add its in-memory ``obs_names`` (~100 bytes per cell).
    A warm-up run first takes imports and first-use caches out of the measurement.
    """
    n_cells, n_genes, chunk = 80_000, 100, 1000
    src, out = tmp_path / "big.zarr", tmp_path / "imputed.zarr"
    write_counts_zarr(src, n_cells, n_genes, chunk)
    write_counts_zarr(tmp_path / "warm.zarr", 4 * chunk, n_genes, chunk)
    _fit_and_stream(tmp_path / "warm.zarr", tmp_path / "warm_out.zarr", chunk)
    input_mb = n_cells * n_genes * 4 / 1e6
    bound_mb = 16.0
    tracemalloc.start()
    try:
        model = _fit_and_stream(src, out, chunk)
        peak_mb = tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()
    print(f"tracemalloc peak {peak_mb:.1f} MB; input {input_mb:.0f} MB, output {2 * input_mb:.0f} MB")
    assert bound_mb <= input_mb / 2
    assert peak_mb < bound_mb, f"peak {peak_mb:.1f} MB for {input_mb:.0f} MB of input"
    # and the streamed result is right: spot-check two chunks against in-memory imputation
    g = zarr.open_group(str(out), mode="r")
    assert g["imputed"].shape == (n_cells, n_genes)
    for start in (0, 57_000):
        rows = zarr.open_group(str(src), mode="r")["X"][start : start + chunk]
        ref = model.impute(rows, var_names=model.var_names_)
        np.testing.assert_allclose(g["imputed"][start : start + chunk], ref["expected"], rtol=1e-6)
        np.testing.assert_allclose(g["imputed_detected"][start : start + chunk], ref["detected"], rtol=1e-6)


def test_neighbourhood_is_searched_within_each_row_chunk(data):
    """With a neighbourhood, each row chunk is imputed as the in-memory model imputes that chunk alone."""
    model = sdi.DeepImpute(**FAST, neighbors=10, neighbor_weight=0.5).fit(data)
    lazy = sdx.impute(model, lazy_copy(data, dense=False, chunk=100), fills=("detected",))["detected"]
    chunks = [model.impute(data[i : i + 100], fills=("detected",))["detected"] for i in range(0, data.n_obs, 100)]
    np.testing.assert_allclose(sdx.to_memory(lazy), np.concatenate(chunks), rtol=1e-6)
    whole = model.impute(data, fills=("detected",))["detected"]
    assert np.abs(np.concatenate(chunks) - whole).max() > 1e-3  # the neighbourhoods differ from the whole data's
