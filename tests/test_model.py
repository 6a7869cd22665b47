"""study.model: the original study's architecture exactly, and loading a trained one fails in one line on anything else."""
import re

import numpy as np
import pytest
import yaml

from study.model import build_model, layer_outputs, plain_copy, summary_text
from tests.conftest import assert_one_line_error, stage_process, tree

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


def test_mixed_bfloat16_keeps_the_layer_table_and_its_copy_computes_in_float32():
    m = build_model(dtype_policy="mixed_bfloat16")
    assert [layer.name for layer in m.layers] == SEED_LAYERS and m.count_params() == 693_834
    assert {layer.name: layer.compute_dtype for layer in m.layers if layer.compute_dtype != "bfloat16"} \
        == {"dense_1": "float32"}  # the softmax, so the loss sees float32 probabilities
    assert {w.dtype for w in m.weights} == {"float32"}
    x = np.random.default_rng(0).random((16, 32, 32, 3), dtype=np.float32)
    assert m(x).dtype == "float32"
    copy = plain_copy(m)  # what the training saves: later stages compute in float32
    assert {layer.compute_dtype for layer in copy.layers} == {"float32"}
    assert all(np.array_equal(a, b) for a, b in zip(m.get_weights(), copy.get_weights()))
    np.testing.assert_allclose(np.asarray(copy(x)), np.asarray(m(x)), atol=0.02)  # bfloat16: ~3 digits


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


# ---------------------------------------------------------------- models/*.keras that are not the study's CNN

def _bad_models(tmp_path):
    """{case: (write(path), pattern of the StageError after 'models/baseline.keras: ')}."""
    import zipfile

    import keras
    good = tmp_path / "good.keras"
    keras.saving.save_model(build_model(), good)
    data = good.read_bytes()

    def zip_not_keras(p):
        with zipfile.ZipFile(p, "w") as z:
            z.writestr("notes.txt", "hello")

    def other_layers(p):  # a Keras model, but its layers are not the original study's
        x = keras.Input((32, 32, 3))
        keras.saving.save_model(keras.Model(x, keras.layers.Dense(10, name="head")(keras.layers.Flatten()(x))), p)

    def other_input(p):  # the analysed layer names, on 64 x 64 images
        x = keras.Input((64, 64, 3))
        h = keras.layers.Conv2D(4, 3, name="conv2d")(x)
        h = keras.layers.Conv2D(4, 3, name="conv2d_4")(h)
        h = keras.layers.Dense(8, name="dense")(keras.layers.GlobalAveragePooling2D()(h))
        keras.saving.save_model(keras.Model(x, keras.layers.Dense(10, name="dense_1")(h)), p)

    rebuild = r"; run `dvc repro train_baseline` to rebuild it"
    return {
        "empty": (lambda p: p.write_bytes(b""), r"not a readable Keras model \(ValueError: an empty file\)" + rebuild),
        "truncated": (lambda p: p.write_bytes(data[: len(data) // 2]),
                      r"not a readable Keras model \(ValueError: not a \.keras zip archive: truncated, or another format\)" + rebuild),
        "text": (lambda p: p.write_text("model weights go here"),
                 r"not a readable Keras model \(ValueError: not a \.keras zip archive: truncated, or another format\)" + rebuild),
        "zip_not_keras": (zip_not_keras, r"not a readable Keras model \(\w+: .+\)" + rebuild),
        "other_layers": (other_layers, r"has no layer 'conv2d'; expected the study's CNN \(\(32, 32, 3\) input, 10 classes, "
                                       r"layers conv2d, conv2d_4, dense, dense_1\) for data/" + rebuild),
        "other_input": (other_input, r"has input \(64, 64, 3\) and 10 outputs; expected the study's CNN .*" + rebuild),
    }


def test_load_trained_names_every_kind_of_bad_model_file(tmp_path, monkeypatch):
    from study.errors import StageError
    from study.model import load_trained
    cases = _bad_models(tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    with pytest.raises(StageError, match=r"^models/baseline.keras: not found; run `dvc repro train_baseline` first$"):
        load_trained("baseline", 32, 10)
    for case, (write, pattern) in cases.items():
        write(tmp_path / "models" / "baseline.keras")
        with pytest.raises(StageError) as e:
            load_trained("baseline", 32, 10)
        assert re.fullmatch("models/baseline.keras: " + pattern, str(e.value)), (case, str(e.value))


@pytest.mark.parametrize("stage,args", [("kmeans_centroids", ()), ("extract_activations", ("baseline",)),
                                        ("gradcam", ("baseline",))])
def test_every_stage_that_reads_a_model_says_what_is_wrong_in_one_line(workdir, tmp_path, stage, args):
    write, pattern = _bad_models(tmp_path)["truncated"]
    (tmp_path / "models").mkdir()
    write(tmp_path / "models" / "baseline.keras")
    before = tree(tmp_path)
    sys_tmp = tmp_path / "systmp"
    sys_tmp.mkdir()
    r = stage_process(tmp_path, stage, *args, sys_tmp=sys_tmp)
    assert_one_line_error(r, "error: models/baseline.keras: " + pattern)
    assert tree(tmp_path) == before and list(sys_tmp.iterdir()) == []
    assert not (tmp_path / "plots").exists()


def test_center_loss_init_from_a_bad_baseline_is_one_line(workdir, tmp_path):
    write, pattern = _bad_models(tmp_path)["other_layers"]
    (tmp_path / "models").mkdir()
    write(tmp_path / "models" / "baseline.keras")
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["center_loss"]["init"] = "baseline"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    np.savez(tmp_path / "models" / "kmeans_centroids.npz", centroids=np.zeros((10, 512), np.float32))
    before = tree(tmp_path)
    r = stage_process(tmp_path, "train_center_loss")
    assert_one_line_error(r, "error: models/baseline.keras: " + pattern)
    assert tree(tmp_path) == before


@pytest.mark.parametrize("write,line", [
    (lambda p: p.write_bytes(b"PK\x03\x04 truncated"), r"error: data/test.npz: not a readable NumPy \.npz file \(\w+: .*\); "
                                                         r"run `dvc repro fetch_data` to rebuild it"),
    (lambda p: np.savez(p, x=np.zeros((2, 32, 32, 3), np.uint8)),
     r"error: data/test.npz: lacks y; run `dvc repro fetch_data` to rebuild it"),
])
def test_a_corrupt_data_split_is_one_line(workdir, tmp_path, write, line):
    (tmp_path / "data" / "test.npz").unlink()
    write(tmp_path / "data" / "test.npz")
    r = stage_process(tmp_path, "extract_activations", "baseline")
    assert_one_line_error(r, line)
    assert not (tmp_path / "data" / "activations").exists()
