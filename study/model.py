"""The seed's CNN, one builder for both models (baseline and center loss).

Layer names are the seed's exactly (../shared/PIPELINE.md); later stages look
layers up by these names. Inputs are float32 images in [0, 1] (see
study.data.preprocess); the model ends in a softmax, so it outputs probabilities.
"""
from __future__ import annotations

import keras
from keras import layers

N_CLASSES = 10
INPUT_SHAPE = (32, 32, 3)
FEATURE_DIM = 512
# (filters, has batch norm, ends a block with pooling + dropout) per conv layer
_CONVS = ((64, True, False), (64, False, True),
          (128, True, False), (128, False, True),
          (256, True, True))
_DROPOUT_CONV, _DROPOUT_DENSE = 0.25, 0.5


def build_model(batch_norm: bool = True) -> keras.Sequential:
    """The seed CNN: 693,834 params with batch_norm, 692,042 without (variant a)."""
    stack = [keras.Input(shape=INPUT_SHAPE, name="image")]
    n_bn = n_pool = 0
    for i, (filters, has_bn, ends_block) in enumerate(_CONVS):
        stack.append(layers.Conv2D(filters, 3, padding="same", activation="relu",
                                   name="conv2d" if i == 0 else f"conv2d_{i}"))
        if has_bn and batch_norm:
            stack.append(layers.BatchNormalization(name=_numbered("batch_normalization", n_bn)))
        if has_bn:
            n_bn += 1
        if ends_block:
            stack.append(layers.MaxPooling2D(name=_numbered("max_pooling2d", n_pool)))
            stack.append(layers.Dropout(_DROPOUT_CONV, name=_numbered("dropout", n_pool)))
            n_pool += 1
    stack += [
        layers.GlobalAveragePooling2D(name="global_average_pooling2d"),  # (N, 4, 4, 256) -> (N, 256)
        layers.Dense(FEATURE_DIM, activation="relu", name="dense"),       # the 512-d embedding
        layers.Dropout(_DROPOUT_DENSE, name="dropout_3"),
        layers.Dense(N_CLASSES, activation="softmax", name="dense_1"),
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
    image = keras.Input(shape=model.input_shape[1:], name="image")
    h, outputs = image, {}
    for layer in model.layers:
        h = outputs[layer.name] = layer(h)
        if all(n in outputs for n in names):
            break
    return keras.Model(image, [outputs[n] for n in names])


def load_trained(name: str, hint: str = "") -> keras.Model:
    """models/<name>.keras, uncompiled (for inference or weights); missing = one-line StageError."""
    from study.io import StageError
    from study.paths import model_file
    path = model_file(name)
    if not path.exists():
        raise StageError(f"{path}: not found; run `dvc repro train_{name}` first{hint}")
    return keras.saving.load_model(path, compile=False)


def summary_text(model: keras.Model) -> str:
    """model.summary() as text (for models/<name>_summary.txt)."""
    lines = []
    model.summary(print_fn=lambda line, **_: lines.append(line), line_length=100)
    return "\n".join(lines) + "\n"
