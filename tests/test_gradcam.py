"""Grad-CAM: shape, range, no NaN, the all-zero map, class sensitivity, model randomisation."""
import numpy as np
import pytest

from study import gradcam
from study.data import preprocess
from study.errors import StageError
from tests.synthetic import synthetic_images


@pytest.fixture(scope="module")
def images():
    """20 synthetic test images (2 per class), float in [0, 1], and their labels."""
    x, y = synthetic_images(2, seed=7)
    return preprocess(x), y.astype(int)


def fresh_model(seed: int, batch_norm: bool = True):
    """The seed CNN with newly initialised weights."""
    import keras
    from study.model import build_model
    keras.utils.set_random_seed(seed)
    return build_model(batch_norm=batch_norm)


@pytest.fixture(scope="module")
def trained():
    """The seed CNN (no batch norm: its moving averages lag in so few steps) trained 6 epochs
    on synthetic data; it reaches ~80% on held-out synthetic images."""
    x, y = synthetic_images(30, seed=1)
    model = fresh_model(0, batch_norm=False)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(preprocess(x), y, epochs=6, batch_size=32, verbose=0)
    return model


def test_normalise_divides_by_max_and_keeps_zero_maps_zero():
    maps = np.array([[[0.0, 2.0], [1.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]], [[-1.0, -2.0], [0, 0]]])
    out = gradcam.normalise(maps)
    np.testing.assert_allclose(out[0], [[0, 0.5], [0.25, 1.0]])
    assert np.all(out[1] == 0) and np.all(out[2] == 0)
    assert not np.isnan(out).any()


def test_heat_maps_have_image_shape_range_and_no_nan(images):
    x, y = images
    maps = gradcam.grad_cam(fresh_model(1), x, y)
    assert maps.shape == (20, 32, 32) and maps.dtype == np.float32
    assert not np.isnan(maps).any()
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    peaks = maps.reshape(20, -1).max(1)
    assert np.all((np.isclose(peaks, 1.0)) | (peaks == 0.0))  # each map is max-normalised


def test_zero_activations_give_all_zero_maps_not_nan(images):
    x, y = images
    model = fresh_model(2)
    layer = model.get_layer("conv2d_4")
    layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])  # relu(0) = 0 everywhere
    maps = gradcam.grad_cam(model, x, y)
    assert maps.shape == (20, 32, 32)
    assert np.all(maps == 0.0)


def test_logits_match_the_softmax_output(images):
    x, _ = images
    model = fresh_model(3)
    z = gradcam.logits(model, x)
    probs = np.exp(z - z.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    np.testing.assert_allclose(probs, model(x, training=False).numpy(), atol=1e-5)
    assert model.get_layer("dense_1").activation.__name__ == "softmax"  # model left unedited


def test_target_may_be_a_single_class(images):
    x, _ = images
    model = fresh_model(4)
    np.testing.assert_allclose(gradcam.grad_cam(model, x[:3], 5), gradcam.grad_cam(model, x[:3], [5, 5, 5]))


def test_pick_images_is_seeded_stratified_and_checks_counts():
    y = np.repeat(np.arange(10), 3)
    idx = gradcam.pick_images(y, 2, seed=0)
    assert idx.shape == (10, 2)
    assert np.all(y[idx] == np.arange(10)[:, None])
    np.testing.assert_array_equal(idx, gradcam.pick_images(y, 2, seed=0))
    with pytest.raises(StageError, match=r"^gradcam.images_per_class = 4 "):
        gradcam.pick_images(y, 4, seed=0)


@pytest.mark.slow
def test_another_target_class_gives_another_map(trained, images):
    x, y = images
    other = (y + 5) % 10
    a, b = gradcam.grad_cam(trained, x, y), gradcam.grad_cam(trained, x, other)
    differs = [np.abs(a[i] - b[i]).mean() > 0.05 for i in range(len(x))]
    assert np.mean(differs) >= 0.8, np.abs(a - b).mean(axis=(1, 2))


@pytest.mark.slow
def test_randomised_weights_give_unrelated_maps(trained, images):
    """Adebayo et al. 2018: maps of re-initialised weights must not rank pixels like the trained model's."""
    x, y = images
    assert (trained(x, training=False).numpy().argmax(1) == y).mean() >= 0.7  # it did learn (chance: 0.1)
    a = gradcam.grad_cam(trained, x, y)
    same = [gradcam.spearman(a[i], m) for i, m in enumerate(gradcam.grad_cam(trained, x, y))]
    assert np.allclose(same, 1.0)
    rhos = [gradcam.spearman(a[i], m) for i, m in enumerate(gradcam.grad_cam(fresh_model(99, batch_norm=False), x, y))]
    # seen: mean rho 0.19, mean |rho| 0.34; a map that ignored the weights would give ~1
    assert np.mean(rhos) < 0.3 and np.mean(np.abs(rhos)) < 0.5, rhos


def test_loaded_model_gives_the_same_maps(images, tmp_path):
    """A loaded Sequential has several graph nodes per layer; the maps must still connect."""
    import keras
    x, y = images
    model = fresh_model(5)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(gradcam.grad_cam(loaded, x[:4], y[:4]), gradcam.grad_cam(model, x[:4], y[:4]),
                               atol=1e-5)
