"""extract_activations: batching, bounded-memory PCA, per-layer shapes and values, bad input."""
import os
import subprocess
import sys

import numpy as np
import pytest

from study import paths
from study.activations import batch_slices, channel_mean, sample
from study.errors import StageError
from study.model import ANALYSED_LAYERS
from study.params import ParamsError, validate
from tests.conftest import REPO, tiny_params


@pytest.fixture
def tiny_model(workdir):
    """An untrained seed CNN saved as models/baseline.keras in the workdir (weights seeded)."""
    import keras
    from study.model import build_model
    keras.utils.set_random_seed(0)
    model = build_model(batch_norm=True)
    paths.MODELS.mkdir(exist_ok=True)
    model.save(paths.model_file("baseline"))
    return model


def test_batch_slices_cover_range_and_merge_short_tail():
    s = batch_slices(70, 32, min_size=8)          # 32, 32, 6 -> the 6 joins the previous batch
    assert [(x.start, x.stop) for x in s] == [(0, 32), (32, 70)]
    s = batch_slices(72, 32, min_size=8)          # tail of 8 is long enough
    assert [(x.start, x.stop) for x in s] == [(0, 32), (32, 64), (64, 72)]
    assert [(x.start, x.stop) for x in batch_slices(5, 32, 8)] == [(0, 5)]


def test_gram_incremental_pca_equals_scikit_learns():
    from sklearn.decomposition import IncrementalPCA
    from study.activations import GramIncrementalPCA
    rng = np.random.default_rng(0)
    # 230 points in 400 dims, 12 well-separated leading scales, a non-zero mean; uneven batches
    scales = np.concatenate([np.geomspace(20, 2, 12), np.full(388, 0.1)])
    x = rng.normal(size=(230, 400)) * scales + 5
    ours, ref = GramIncrementalPCA(12), IncrementalPCA(n_components=12)
    for sl in batch_slices(230, 64, min_size=12):
        ours.partial_fit(x[sl])
        ref.partial_fit(x[sl])
    np.testing.assert_allclose(ours.mean_, ref.mean_, rtol=1e-6)
    np.testing.assert_allclose(ours.singular_values_, ref.singular_values_, rtol=1e-6)
    np.testing.assert_allclose(ours.explained_variance_ratio_, ref.explained_variance_ratio_, rtol=1e-6)
    np.testing.assert_allclose(ours.components_, ref.components_, atol=1e-6)   # same sign convention
    np.testing.assert_allclose(ours.transform(x), ref.transform(x), atol=1e-4)


def test_gram_pca_of_rank_deficient_data_is_finite():
    from study.activations import GramIncrementalPCA
    x = np.zeros((40, 50), np.float32)
    x[:, 0] = np.arange(40)                 # rank 1: one direction carries all the variance
    p = GramIncrementalPCA(5).partial_fit(x[:20]).partial_fit(x[20:])
    z = p.transform(x)
    assert np.isfinite(z).all() and np.isfinite(p.components_).all()
    assert p.explained_variance_ratio_[0] == pytest.approx(1.0)
    np.testing.assert_allclose(np.abs(z[:, 0]), np.abs(x[:, 0] - 19.5), atol=1e-9)
    np.testing.assert_allclose(z[:, 1:], 0, atol=1e-9)


def test_channel_mean_shape_and_value():
    maps = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    m = channel_mean(maps)
    assert m.shape == (2, 3, 4)
    assert m[1, 2, 3] == pytest.approx(maps[1, 2, 3].mean())


def test_sample_is_stratified_seeded_and_checks_size():
    y = np.repeat(np.arange(10), 20)
    a, b, c = sample(y, 50, 0), sample(y, 50, 0), sample(y, 50, 1)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.all(np.diff(a) > 0) and np.bincount(y[a]).tolist() == [5] * 10
    with pytest.raises(StageError, match="n_samples = 201"):
        sample(y, 201, 0)


def test_incremental_pca_matches_one_shot_pca(tiny_model):
    """Batched two-pass PCA of conv maps equals a one-shot PCA's reconstruction on the same images."""
    from sklearn.decomposition import PCA
    from study.activations import extract
    from study.data import load_split, preprocess
    from study.model import layer_outputs
    x, _ = load_split("test")
    arrays, explained = extract(tiny_model, x[:64], ("conv2d_4",), batch_size=16, pca_dims=8, surface_images=1)
    full = layer_outputs(tiny_model, ["conv2d_4"]).predict(preprocess(x[:64]), verbose=0)
    full = full.reshape(64, -1)
    ref = PCA(8).fit(full)
    # same subspace: the variance captured by the incremental projection matches one-shot PCA's
    captured = arrays["conv2d_4"].var(axis=0).sum() / full.var(axis=0).sum()
    assert captured == pytest.approx(ref.explained_variance_ratio_.sum(), rel=0.05)
    assert explained["conv2d_4"] == pytest.approx(captured, rel=0.05)


def test_stage_writes_per_layer_shapes(tiny_model, workdir):
    from stages.extract_activations import main
    from study.data import load_split, preprocess
    from study.model import layer_outputs
    a = workdir["activations"]
    main(validate(workdir), "baseline")
    with np.load(paths.activations_file("baseline")) as f:
        out = {k: f[k] for k in f.files}
    n, d = a["n_samples"], a["pca_dims"]
    assert out["conv2d"].shape == (n, d) and out["conv2d_4"].shape == (n, d)
    assert out["dense"].shape == (n, 512) and out["dense_1"].shape == (n, 10)
    assert all(out[k].dtype == np.float32 and np.isfinite(out[k]).all() for k in ANALYSED_LAYERS)
    np.testing.assert_allclose(out["dense_1"].sum(axis=1), 1.0, atol=1e-4)   # softmax rows
    x, y = load_split("test")
    assert np.array_equal(out["y"], y[out["index"]])
    assert np.bincount(out["y"], minlength=10).tolist() == [n // 10] * 10   # stratified
    s = a["surface_images"]
    assert out["surface_conv2d"].shape == (s, 32, 32) and out["surface_conv2d_4"].shape == (s, 8, 8)
    assert np.array_equal(out["surface_index"], out["index"][:s])
    # the kept surface maps are the channel means of the raw conv maps of those images
    raw = layer_outputs(tiny_model, ["conv2d", "dense"]).predict(preprocess(x[out["surface_index"]]), verbose=0)
    np.testing.assert_allclose(out["surface_conv2d"], raw[0].mean(axis=-1), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["dense"][:s], raw[1], rtol=1e-4, atol=1e-5)


def test_missing_model_is_a_stage_error(workdir):
    from stages.extract_activations import main
    with pytest.raises(StageError, match=r"models/center_loss.keras: not found"):
        main(validate(workdir), "center_loss")


def test_pca_dims_must_fit_batch_and_sample():
    p = tiny_params()
    p["activations"].update(pca_dims=40, batch_size=32)
    with pytest.raises(ParamsError, match=r"activations.pca_dims = 40 .*activations.batch_size \(32\)"):
        validate(p)
    p["activations"].update(pca_dims=80, batch_size=100)
    with pytest.raises(ParamsError, match=r"activations.pca_dims = 80 .*activations.n_samples \(60\)"):
        validate(p)


def test_cli_rejects_unknown_model_name_in_one_line(workdir):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "stages.extract_activations", "resnet"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "error: model name argument 'resnet' is not allowed; allowed: exactly one of baseline, center_loss"]
