"""Grad-CAM (Selvaraju et al. 2017) on the last conv layer, computed from the logits.

The saved models end in a softmax. Rather than editing a loaded model in place
(as keras-io's example does), `grad_cam` builds a second keras.Model over the
same layers (shared weights) that outputs [conv2d_4 maps, dense features] and applies dense_1's
kernel and bias by hand to get the logits (dropout_3 is the identity at inference).
All functions are pure and return numpy arrays; drawing lives in study.gradcam_plots.
"""
from __future__ import annotations

import numpy as np

from study.errors import StageError
from study.model import CAM_LAYER, FEATURE_LAYER, OUTPUT_LAYER, layer_outputs

BATCH = 128                # images per gradient pass (memory bound only)


def pick_images(y: np.ndarray, per_class: int, seed: int, n_classes: int = 10) -> np.ndarray:
    """(n_classes, per_class) test indices: a seeded random choice of each class's images."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n_classes):
        idx = np.flatnonzero(y == k)
        if len(idx) < per_class:
            raise StageError(f"gradcam.images_per_class = {per_class} is not allowed; allowed: "
                             f"<= {len(idx)} (test images of class {k})")
        rows.append(np.sort(rng.choice(idx, per_class, replace=False)))
    return np.stack(rows)


def normalise(maps: np.ndarray) -> np.ndarray:
    """Divide each map by its max; an all-zero (or negative) map gives zeros, never NaN."""
    maps = np.maximum(maps, 0.0)
    peak = maps.reshape(len(maps), -1).max(axis=1).reshape(-1, *([1] * (maps.ndim - 1)))
    return np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0).astype(np.float32)


def _logit_model(model):
    """(extractor image -> [conv maps (N,8,8,C), dense (N,512)], kernel (512,10), bias (10,)).

    Logits are dense @ kernel + bias of the softmax layer (dropout is the identity at
    inference), so the loaded model is never edited.
    """
    import keras
    names = [layer.name for layer in model.layers]
    if not isinstance(model, keras.Sequential) or CAM_LAYER not in names or FEATURE_LAYER not in names:
        raise StageError(f"model {model.name!r}: Grad-CAM needs the original study's Sequential CNN with "
                         f"layers {CAM_LAYER!r} and {FEATURE_LAYER!r}")
    head = model.get_layer(OUTPUT_LAYER)  # the softmax layer whose pre-activation we explain
    return layer_outputs(model, [CAM_LAYER, FEATURE_LAYER]), head.kernel, head.bias


def logits(model, x: np.ndarray) -> np.ndarray:
    """(N, 10) pre-softmax scores of float images x (N, 32, 32, 3) in [0, 1]."""
    extractor, kernel, bias = _logit_model(model)
    _, feats = extractor(x, training=False)
    return np.asarray(feats @ kernel + bias)


def _cam_batch(extractor, kernel, bias, x, target, size):
    import tensorflow as tf
    x = tf.convert_to_tensor(x, tf.float32)
    with tf.GradientTape() as tape:
        conv, feats = extractor(x, training=False)       # (N, 8, 8, C), (N, 512)
        scores = feats @ kernel + bias                    # (N, 10) logits
        chosen = tf.gather(scores, target, axis=1, batch_dims=1)  # (N,)
    grads = tape.gradient(chosen, conv)                   # (N, 8, 8, C)
    weights = tf.reduce_mean(grads, axis=(1, 2))          # (N, C): global-average-pooled gradients
    cam = tf.nn.relu(tf.einsum("nhwc,nc->nhw", conv, weights))       # (N, 8, 8)
    cam = tf.image.resize(cam[..., None], size, method="bilinear")   # (N, 32, 32, 1)
    return cam[..., 0].numpy()


def grad_cam(model, x: np.ndarray, target) -> np.ndarray:
    """(N, 32, 32) Grad-CAM maps in [0, 1] of float images x for class `target` (int or (N,) ints)."""
    x = np.asarray(x, np.float32)
    target = np.broadcast_to(np.asarray(target, np.int32), (len(x),))
    extractor, kernel, bias = _logit_model(model)
    size = x.shape[1:3]
    maps = [_cam_batch(extractor, kernel, bias, x[i:i + BATCH], target[i:i + BATCH], size)
            for i in range(0, len(x), BATCH)]
    return normalise(np.concatenate(maps) if maps else np.zeros((0, *size), np.float32))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps (flattened); 0 if either is constant."""
    from scipy.stats import spearmanr
    a, b = np.ravel(a), np.ravel(b)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a, b).statistic)
