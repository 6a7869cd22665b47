"""The original study's CNN, one builder for both models (baseline and center loss).

Layer names are the original study's exactly (README, "Training"); later stages look
layers up by these names. Inputs are float32 images in [0, 1] (see
study.data.preprocess); the model ends in a softmax, so it outputs probabilities.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # keras is imported where it is used: importing the layer names must stay cheap
    import keras

N_CLASSES = 10     # CIFAR-10; a folder of class folders sets its own (data/classes.json)
IMAGE_SIZE = 32    # CIFAR-10's side; data.image_size for other images
FEATURE_DIM = 512
# (filters, has batch norm, ends a block with pooling + dropout) per conv layer
_CONVS = ((64, True, False), (64, False, True),
          (128, True, False), (128, False, True),
          (256, True, True))
_DROPOUT_CONV, _DROPOUT_DENSE = 0.25, 0.5

# The layers later stages use, by the original study's names.
ANALYSED_LAYERS = ("conv2d", "conv2d_4", "dense", "dense_1")  # first conv, last conv, first and last dense
FEATURE_LAYER = "dense"       # the 512-d embedding k-means and the center loss work on
CAM_LAYER = "conv2d_4"        # the last conv layer, 8 x 8: Grad-CAM's maps
OUTPUT_LAYER = "dense_1"      # the softmax over the 10 classes


def build_model(batch_norm: bool = True, dtype_policy: str = "float32", n_classes: int = N_CLASSES,
                image_size: int = IMAGE_SIZE) -> keras.Sequential:
    """The seed CNN: 693,834 params with batch_norm, 692,042 without (variant a), at 10 classes
    (dense_1 has one unit per class; the image side changes no weight: global average pooling).
    dtype_policy is Keras's policy for every layer but the softmax, which computes in float32
    whatever the policy (so the loss sees float32 probabilities); weights are float32 under any
    policy."""
    import keras
    from keras import layers
    stack = [keras.Input(shape=(image_size, image_size, 3), name="image")]
    n_bn = n_pool = 0
    for i, (filters, has_bn, ends_block) in enumerate(_CONVS):
        stack.append(layers.Conv2D(filters, 3, padding="same", activation="relu",
                                   name="conv2d" if i == 0 else f"conv2d_{i}", dtype=dtype_policy))
        if has_bn and batch_norm:
            stack.append(layers.BatchNormalization(name=_numbered("batch_normalization", n_bn), dtype=dtype_policy))
        if has_bn:
            n_bn += 1
        if ends_block:
            stack.append(layers.MaxPooling2D(name=_numbered("max_pooling2d", n_pool), dtype=dtype_policy))
            stack.append(layers.Dropout(_DROPOUT_CONV, name=_numbered("dropout", n_pool), dtype=dtype_policy))
            n_pool += 1
    stack += [
        layers.GlobalAveragePooling2D(name="global_average_pooling2d", dtype=dtype_policy),  # -> (N, 256)
        layers.Dense(FEATURE_DIM, activation="relu", name="dense", dtype=dtype_policy),  # the 512-d embedding
        layers.Dropout(_DROPOUT_DENSE, name="dropout_3", dtype=dtype_policy),
        layers.Dense(n_classes, activation="softmax", name="dense_1", dtype="float32"),
    ]
    return keras.Sequential(stack, name="cifar10_cnn")


def _numbered(base: str, i: int) -> str:
    """Keras's auto-naming: base, base_1, base_2, ..."""
    return base if i == 0 else f"{base}_{i}"


def layer_outputs(model: keras.Model, names) -> keras.Model:
    """A model from one image input to the named layers' outputs, sharing `model`'s weights.

    The graph is rebuilt through the model's own layers: a *loaded* Sequential's layers
    carry several graph nodes, and mixing their `layer.output`s would give outputs from
    different copies of the graph (repeated work, and no gradient between them).
    """
    missing = [n for n in names if n not in {layer.name for layer in model.layers}]
    if missing:
        raise ValueError(f"model {model.name!r} has no layer {missing[0]!r}")
    import keras
    image = keras.Input(shape=model.input_shape[1:], name="image")
    h, outputs = image, {}
    for layer in model.layers:
        h = outputs[layer.name] = layer(h)
        if all(n in outputs for n in names):
            break
    return keras.Model(image, [outputs[n] for n in names])


def load_trained(name: str, side: int, n_classes: int | None = None, hint: str = "") -> keras.Model:
    """models/<name>.keras, uncompiled (for inference or weights), checked to be the study's CNN
    for the data at hand: side x side x 3 input, n_classes outputs (when given), the analysed
    layers. Anything else is a one-line StageError naming the file and the stage that rebuilds it."""
    import zipfile

    import keras

    from study.errors import StageError
    from study.files import read_input
    from study.paths import model_file
    path, stage = model_file(name), f"train_{name}"

    def read(p):
        if p.stat().st_size == 0:
            raise ValueError("an empty file")
        if not zipfile.is_zipfile(p):  # Keras would say "File not found" of a file that exists
            raise ValueError("not a .keras zip archive: truncated, or another format")
        return keras.saving.load_model(p, compile=False)

    model = read_input(path, stage, read, "Keras model", hint)
    names = [layer.name for layer in model.layers]
    missing = [n for n in ANALYSED_LAYERS if n not in names]
    outputs = model.output_shape[-1]
    if missing or tuple(model.input_shape[1:]) != (side, side, 3) or outputs != (n_classes or outputs):
        what = f"no layer {missing[0]!r}" if missing else f"input {model.input_shape[1:]} and {outputs} outputs"
        expected = f"{(side, side, 3)} input" + (f", {n_classes} classes" if n_classes else "")
        raise StageError(f"{path}: has {what}; expected the study's CNN ({expected}, layers "
                         f"{', '.join(ANALYSED_LAYERS)}) for data/; run `dvc repro {stage}` to rebuild it")
    return model


def plain_copy(model: keras.Model) -> keras.Model:
    """The model's layers and weights without its training state (loss, optimizer, schedule): what
    `keras.saving.load_model` loads with Keras alone, whatever the recipe (a compiled model would
    carry the label-smoothing loss and one-cycle schedule, which Keras cannot rebuild by itself),
    computing in float32 whatever dtype policy the model trained under."""
    config = model.get_config()
    for layer in config.get("layers", []):  # float32 layers, whatever policy it trained under
        layer["config"]["dtype"] = "float32"
    copy = model.__class__.from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def summary_text(model: keras.Model) -> str:
    """model.summary() as text (for models/<name>_summary.txt)."""
    lines = []
    model.summary(print_fn=lambda line, **_: lines.append(line), line_length=100)
    return "\n".join(lines) + "\n"
