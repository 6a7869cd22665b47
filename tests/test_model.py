"""study.model: the seed's architecture exactly."""
from study.model import build_model, layer_outputs, summary_text

SEED_LAYERS = ["conv2d", "batch_normalization", "conv2d_1", "max_pooling2d", "dropout", "conv2d_2",
               "batch_normalization_1", "conv2d_3", "max_pooling2d_1", "dropout_1", "conv2d_4",
               "batch_normalization_2", "max_pooling2d_2", "dropout_2", "global_average_pooling2d",
               "dense", "dropout_3", "dense_1"]


def test_seed_architecture_names_and_parameter_count():
    m = build_model(batch_norm=True)
    assert [layer.name for layer in m.layers] == SEED_LAYERS
    assert m.count_params() == 693_834
    assert m.output_shape == (None, 10)
    shapes = {n: m.get_layer(n).output.shape for n in ("conv2d", "conv2d_4", "dense", "dense_1")}
    assert shapes == {"conv2d": (None, 32, 32, 64), "conv2d_4": (None, 8, 8, 256),
                      "dense": (None, 512), "dense_1": (None, 10)}


def test_variant_a_has_no_batch_norm_and_same_names_otherwise():
    m = build_model(batch_norm=False)
    names = [layer.name for layer in m.layers]
    assert names == [n for n in SEED_LAYERS if not n.startswith("batch_normalization")]
    assert m.count_params() == 693_834 - 4 * (64 + 128 + 256)  # gamma, beta, mean, var per BN channel
    assert m.count_params() == 692_042


def test_two_builds_in_one_process_keep_the_seed_names():
    build_model()
    assert [layer.name for layer in build_model().layers] == SEED_LAYERS


def test_layer_outputs_and_summary_text():
    m = build_model()
    outs = layer_outputs(m, ["conv2d", "dense"]).output_shape
    assert [tuple(o) for o in outs] == [(None, 32, 32, 64), (None, 512)]
    assert "693,834" in summary_text(m)


def test_layer_outputs_of_a_loaded_model_connect_and_match(tmp_path):
    import keras
    import numpy as np
    import tensorflow as tf
    m = build_model()
    keras.saving.save_model(m, tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    x = np.random.default_rng(0).random((4, 32, 32, 3), dtype=np.float32)
    conv, dense = layer_outputs(loaded, ["conv2d_4", "dense"])(x)
    assert np.allclose(dense, layer_outputs(m, ["dense"])(x), atol=1e-6)
    with tf.GradientTape() as tape:
        conv, dense = layer_outputs(loaded, ["conv2d_4", "dense"])(tf.constant(x))
        total = tf.reduce_sum(dense)
    assert tape.gradient(total, conv) is not None  # dense depends on this very conv tensor
