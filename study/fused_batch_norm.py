"""Batch normalisation in training through TensorFlow's fused kernel (FusedBatchNormV3).

Keras 3's BatchNormalization casts bfloat16 inputs to float32 and runs separate moment,
normalise and cast ops; TensorFlow's fused kernel (oneDNN on a CPU, cuDNN on a GPU) computes the
same batch statistics and normalisation in one op per direction, in the layer's compute dtype
with float32 statistics. `enable(model)` makes each eligible BatchNormalization layer of `model`
train through it: the same variables (gamma, beta, moving mean and variance), the same names and
Keras's own moving-statistics rule (momentum, biased batch variance); inference (validation,
prediction) stays Keras's. Nothing is saved differently: study.model.plain_copy rebuilds the
model from its config, so the saved model is plain Keras.
"""
from __future__ import annotations

MIN_EPSILON = 1.001e-5   # the fused kernel raises a smaller epsilon to this (cuDNN's minimum)


def eligible(layer) -> bool:
    """A BatchNormalization the fused kernel computes exactly: channels-last 4-D input, scale and
    centre on, no renorm, statistics of its own replica's batch (not `synchronized`)."""
    import keras
    if keras.backend.backend() != "tensorflow" or not isinstance(layer, keras.layers.BatchNormalization):
        return False
    shape = getattr(layer, "_build_shapes_dict", None) or {}
    rank = len(next(iter(shape.values()))) if shape else None
    return (rank == 4 and layer.axis in (3, -1) and layer.scale and layer.center and not layer.renorm
            and not layer.synchronized and layer.epsilon >= MIN_EPSILON)


def fused_training_step(layer, inputs):
    """(normalised inputs in the layer's compute dtype, batch mean, biased batch variance) of a
    training batch, through FusedBatchNormV3."""
    import tensorflow as tf
    x = tf.cast(inputs, layer.compute_dtype)                                       # (N, H, W, C)
    y, mean, var = tf.compat.v1.nn.fused_batch_norm(
        x, tf.convert_to_tensor(layer.gamma), tf.convert_to_tensor(layer.beta),
        epsilon=layer.epsilon, data_format="NHWC", is_training=True)
    n = tf.cast(tf.reduce_prod(tf.shape(x)[:3]), var.dtype)                        # values per channel
    return y, mean, var * (n - 1) / tf.maximum(n, 1.0)   # the kernel returns the Bessel-corrected variance


def fused_call(layer):
    """The layer's `call`, taking the fused kernel in training and Keras's own code otherwise."""
    keras_call = layer.call

    def call(inputs, training=None, mask=None):
        if not (training and layer.trainable) or mask is not None:
            return keras_call(inputs, training=training, mask=mask)
        y, mean, var = fused_training_step(layer, inputs)
        m = layer.momentum
        layer.moving_mean.assign(layer.moving_mean * m + mean * (1.0 - m))
        layer.moving_variance.assign(layer.moving_variance * m + var * (1.0 - m))
        return y
    return call


def kernel_runs(dtype: str) -> str | None:
    """None when FusedBatchNormV3 and its gradient run here in `dtype` (under the current device
    and determinism settings), else why not (one line)."""
    import tensorflow as tf
    try:
        x = tf.ones((2, 2, 2, 3), dtype)
        scale, offset = tf.Variable(tf.ones(3)), tf.Variable(tf.zeros(3))
        with tf.GradientTape() as tape:
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(x, scale, offset, data_format="NHWC", is_training=True)
            loss = tf.reduce_sum(tf.cast(y, tf.float32))
        tape.gradient(loss, [scale, offset])
    except (tf.errors.OpError, TypeError, ValueError) as e:
        return f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    return None


def enable(model) -> str:
    """Train `model`'s eligible BatchNormalization layers through the fused kernel; return a line
    for the training log saying which layers use it, or why none does."""
    layers = [layer for layer in model.layers if eligible(layer)]
    if any(getattr(layer, "synchronized", False) for layer in model.layers):
        return "fused batch norm: not with several replicas (synchronized batch norm: Keras's BatchNormalization)"
    if not layers:
        return "fused batch norm: no eligible layer (Keras's BatchNormalization)"
    why = kernel_runs(layers[0].compute_dtype)
    if why:
        return f"fused batch norm: not available here ({why}); Keras's BatchNormalization"
    for layer in layers:
        layer.call = fused_call(layer)
    return f"fused batch norm: {', '.join(layer.name for layer in layers)} ({layers[0].compute_dtype})"
