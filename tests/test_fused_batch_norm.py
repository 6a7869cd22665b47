"""study.fused_batch_norm: the fused training path computes what Keras's BatchNormalization does."""
import numpy as np
import pytest

from study import fused_batch_norm
from study.model import build_model
from tests.conftest import tiny_params

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

# Largest difference from Keras's layer, relative to the largest value compared: float32 agrees to
# float32 rounding; bfloat16 outputs and input gradients to bfloat16 rounding (8 bits of mantissa),
# while gamma/beta gradients and the moving statistics are float32 sums in both.
TOLERANCE = {"float32": {"output": 1e-5, "input_grad": 1e-5, "param_grad": 1e-5, "moving": 1e-6},
             "mixed_bfloat16": {"output": 1e-2, "input_grad": 1e-2, "param_grad": 1e-4, "moving": 1e-6}}


def _pair(policy: str, shape=(8, 16, 16, 32)):
    """(Keras's layer, a fused one) with the same random gamma, beta and moving statistics."""
    import keras
    rng = np.random.default_rng(0)
    layers = [keras.layers.BatchNormalization(dtype=policy) for _ in range(2)]
    for layer in layers:
        layer.build(shape)
    weights = [rng.uniform(0.5, 1.5, shape[-1:]).astype("float32") for _ in range(4)]
    for layer in layers:
        layer.set_weights(weights)
    layers[1].call = fused_batch_norm.fused_call(layers[1])
    return layers


def _errors(policy: str) -> dict:
    """{what: relative max difference} between Keras's layer and the fused one after one training
    call: outputs, gradients of a random projection of the outputs, moving statistics."""
    import tensorflow as tf
    keras_bn, fused = _pair(policy)
    x = tf.cast(tf.random.stateless_normal((8, 16, 16, 32), (1, 2)) * 3 + 1, keras_bn.compute_dtype)
    w = tf.random.stateless_normal(x.shape, (3, 4))
    out, grads = [], []
    for layer in (keras_bn, fused):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * w)
        out.append(np.asarray(tf.cast(y, tf.float32)))
        grads.append([np.asarray(tf.cast(g, tf.float32)) for g in tape.gradient(loss, [x, layer.gamma, layer.beta])])

    def rel(a, b):
        return float(np.abs(a - b).max() / np.abs(a).max())
    return {"output": rel(*out), "input_grad": rel(grads[0][0], grads[1][0]),
            "param_grad": max(rel(grads[0][i], grads[1][i]) for i in (1, 2)),
            "moving": max(rel(np.asarray(a), np.asarray(b))
                          for a, b in zip(keras_bn.non_trainable_weights, fused.non_trainable_weights)),
            "dtype_matches": y.dtype == keras_bn.compute_dtype}


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_fused_training_step_matches_keras_batch_norm(policy):
    errors = _errors(policy)
    assert errors.pop("dtype_matches")
    assert errors == {k: pytest.approx(0, abs=TOLERANCE[policy][k]) for k in errors}, errors


def test_a_fused_step_without_the_bessel_correction_is_caught(monkeypatch):
    """Control: the kernel's batch variance is Bessel-corrected; used as is, the moving variance
    drifts from Keras's by more than the tolerance, and the comparison above must fail."""
    import tensorflow as tf

    def uncorrected(layer, inputs):
        x = tf.cast(inputs, layer.compute_dtype)
        return tf.compat.v1.nn.fused_batch_norm(x, tf.convert_to_tensor(layer.gamma),
                                                tf.convert_to_tensor(layer.beta), epsilon=layer.epsilon,
                                                data_format="NHWC", is_training=True)
    monkeypatch.setattr(fused_batch_norm, "fused_training_step", uncorrected)
    errors = _errors("float32")
    assert errors["output"] < TOLERANCE["float32"]["output"]              # the outputs alone would not tell
    assert errors["moving"] > 10 * TOLERANCE["float32"]["moving"]


def test_enable_takes_every_batch_norm_of_the_study_cnn_and_leaves_inference_to_keras():
    import keras
    model = build_model(True)
    line = fused_batch_norm.enable(model)
    assert line == "fused batch norm: batch_normalization, batch_normalization_1, batch_normalization_2 (float32)"
    bn = model.get_layer("batch_normalization")
    x = np.random.default_rng(0).random((4, 32, 32, 3)).astype("float32")
    reference = keras.models.clone_model(model)                           # plain layers, same weights
    reference.set_weights(model.get_weights())
    np.testing.assert_allclose(model(x, training=False), reference(x, training=False), rtol=0, atol=0)
    assert fused_batch_norm.enable(build_model(False)) == \
        "fused batch norm: no eligible layer (Keras's BatchNormalization)"
    bn.synchronized = True                                                  # several replicas: Keras's own
    assert not fused_batch_norm.eligible(bn)


def _fit(fused: bool, steps: int):
    """Weights of the study CNN after `steps` SGD steps on random images, batch norm fused or not.
    (Random pixels: the flat synthetic images tie in max pooling, where a last-bit difference
    sends a gradient to another pixel.)"""
    from study.dataset import make_dataset
    from study.train import compile_model, set_seed
    params = dict(tiny_params(), optimizer="sgd", lr_schedule="none", learning_rate=0.05, fused_batch_norm=fused)
    set_seed(0)
    model = build_model(True)
    if fused:
        fused_batch_norm.enable(model)
    compile_model(model, params, steps)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 30).astype(np.uint8)
    model.fit(make_dataset(x, y, 10, shuffle=True, epochs=1), epochs=1, steps_per_epoch=steps, verbose=0)
    return model.get_weights()


def test_a_training_step_with_the_fused_kernel_ends_where_keras_ends():
    # One step of the whole recipe (optimizer, weight decay, label smoothing, dropout): a second
    # step would compare chaos, not kernels (tiny random batches at a high rate: Keras alone moves
    # 2e-4 in two steps from weights perturbed by 1e-7)
    keras_w, fused_w = _fit(False, 1), _fit(True, 1)
    for a, b in zip(keras_w, fused_w, strict=True):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)
    moved = max(float(np.abs(a - b).max()) for a, b in zip(keras_w, _fit_initial()))
    assert moved > 1e-3                                                   # the steps did change the weights


def _fit_initial():
    from study.train import set_seed
    set_seed(0)
    return build_model(True).get_weights()


def test_the_training_uses_the_fused_kernel_only_when_asked(workdir, monkeypatch, capsys):
    from stages import train_baseline
    from study.params import load
    traced = []
    step = fused_batch_norm.fused_training_step
    monkeypatch.setattr(fused_batch_norm, "fused_training_step", lambda layer, x: traced.append(layer.name) or step(layer, x))
    for fused in (False, True):
        traced.clear()
        params = dict(load(), fused_batch_norm=fused)
        test = train_baseline.main(params)
        log = capsys.readouterr().out
        assert ("baseline: fused batch norm: batch_normalization, batch_normalization_1, batch_normalization_2 "
                "(float32)" in log) == fused
        # false: Keras's own code throughout, as before the param existed; true: the three layers
        assert sorted(set(traced)) == (["batch_normalization", "batch_normalization_1", "batch_normalization_2"]
                                       if fused else [])
    # the saved model is plain Keras (its layers' own call) and gives the test numbers it was saved with
    import keras

    from study import paths
    from study.data import load_split
    from study.train import evaluate_test
    saved = keras.saving.load_model(paths.model_file("baseline"))
    bn = saved.get_layer("batch_normalization")
    assert type(bn) is keras.layers.BatchNormalization and "call" not in vars(bn)
    again = evaluate_test(saved, *load_split("test"), params["batch_size"], params["tta"])
    assert (again["accuracy"], again["loss"]) == pytest.approx((test["accuracy"], test["loss"]), rel=1e-6)
