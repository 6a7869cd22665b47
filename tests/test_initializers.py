"""study.initializers: patch-whitening and identity (dirac) starting weights, and their off values."""
import numpy as np
import pytest

from study.initializers import WHITEN_EPS, dirac, initialize, patch_whitening


def _patches(images, size=3):
    """(n, size * size * C) patches in the (kh, kw, C) order of a Keras kernel."""
    windows = np.lib.stride_tricks.sliding_window_view(images, (size, size), axis=(1, 2))
    return windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, size * size * images.shape[-1]).astype(np.float64)


def _correlated_images(n=200, seed=0):
    """Images whose channels and neighbouring pixels are correlated, as in natural images."""
    rng = np.random.default_rng(seed)
    base = rng.random((n, 33, 33, 1))
    smooth = (base[:, 1:, 1:] + base[:, :-1, :-1]) / 2
    return np.clip(np.concatenate([smooth, 0.8 * smooth + 0.2 * rng.random((n, 32, 32, 1)),
                                   rng.random((n, 32, 32, 1))], axis=-1), 0, 1).astype(np.float32)


def test_whitening_filters_give_zero_mean_unit_variance_uncorrelated_outputs_in_opposite_pairs():
    images = _correlated_images()
    kernel, bias = patch_whitening(images, 3, filters=64)
    assert kernel.shape == (3, 3, 3, 54) and bias.shape == (54,)   # 27 eigenvectors and their negatives
    out = _patches(images) @ kernel.reshape(27, -1) + bias
    cov = np.cov(out[:, :27].T)
    assert np.abs(out.mean(0)).max() < 1e-4
    eig = np.sort(np.linalg.eigvalsh(np.cov(_patches(images).T)))[::-1]
    assert np.diag(cov) == pytest.approx(eig / (eig + WHITEN_EPS * eig.mean()), rel=1e-3)   # 1, but for the eps
    assert np.diag(cov).min() > 0.98
    assert np.abs(cov - np.diag(np.diag(cov))).max() < 1e-4           # decorrelated
    assert np.array_equal(kernel[..., 27:], -kernel[..., :27])
    control = np.cov((_patches(images) @ np.random.default_rng(1).normal(size=(27, 27))).T)
    assert np.abs(control - np.diag(np.diag(control))).max() > 0.1   # random filters are not


def test_fewer_filters_keep_the_strongest_eigenvectors():
    images = _correlated_images(50)
    kernel, _ = patch_whitening(images, 3, filters=8)
    assert kernel.shape == (3, 3, 3, 8)
    strongest = np.linalg.eigh(np.cov(_patches(images).T))[1][:, -1]
    first = kernel[..., 0].reshape(27)
    assert abs(first @ strongest) / np.linalg.norm(first) == pytest.approx(1, abs=1e-6)


def test_dirac_kernel_copies_the_first_input_channels():
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 3, 4, 6)).astype(np.float32)
    ident = dirac(kernel)
    x = rng.random((2, 5, 5, 4)).astype(np.float32)
    import keras
    out = keras.ops.convert_to_numpy(keras.ops.conv(x, ident, padding="same"))
    assert np.allclose(out[..., :4], x, atol=1e-6)                     # output channel i is input channel i
    assert np.array_equal(ident[..., 4:], kernel[..., 4:])            # the others keep their weights
    x6 = rng.random((1, 4, 4, 6)).astype(np.float32)                  # more inputs than outputs
    out6 = keras.ops.convert_to_numpy(keras.ops.conv(x6, dirac(rng.normal(size=(3, 3, 6, 4)).astype(np.float32)),
                                                     padding="same"))
    assert np.allclose(out6, x6[..., :4], atol=1e-6)


def _model_and_images():
    import keras
    from study.model import build_model
    keras.utils.set_random_seed(0)
    images = (np.random.default_rng(0).random((120, 32, 32, 3)) * 255).astype(np.uint8)
    return build_model(), images


def test_off_values_leave_keras_initialisation_untouched():
    model, images = _model_and_images()
    before = [w.copy() for w in model.get_weights()]
    assert initialize(model, {"whiten_init": False, "dirac_init": False, "seed": 0}, images) == []
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_on_values_change_only_their_layers():
    model, images = _model_and_images()
    before = {layer.name: [w.copy() for w in layer.get_weights()] for layer in model.layers}
    lines = initialize(model, {"whiten_init": True, "dirac_init": True, "seed": 0}, images)
    assert [line.split(":")[0] for line in lines] == ["whiten_init", "dirac_init"]
    changed = {layer.name for layer in model.layers
               if any(not np.array_equal(a, b) for a, b in zip(before[layer.name], layer.get_weights()))}
    assert changed == {"conv2d", "conv2d_1", "conv2d_2", "conv2d_3", "conv2d_4"}
    first = model.get_layer("conv2d").get_weights()[0]
    assert np.array_equal(first[..., 54:], before["conv2d"][0][..., 54:])   # 10 filters keep Keras's
    k4 = model.get_layer("conv2d_4").get_weights()[0]                        # 128 -> 256
    assert k4[1, 1, 5, 5] == 1 and k4[1, 1, 5, 6] == 0 and np.array_equal(k4[..., 128:], before["conv2d_4"][0][..., 128:])
