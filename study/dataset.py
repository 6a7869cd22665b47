"""The training and test data as the models see them: a seeded tf.data pipeline of the training
split (its order and augmentation a function of the seed and the epoch only, so a resumed
training sees the same batches), the augmentations of params' `augment` and `alternating_flip`,
and the test-time views of `tta`.
"""
from __future__ import annotations

import math

import numpy as np

from study.data import preprocess

AUTOTUNE = -1  # tf.data.AUTOTUNE without importing tensorflow at module import
ROTATION_DEGREES = 15
CROP_PAD = 4          # crop_flip: the largest shift in pixels (pad 4 + random 32x32 crop)


def epoch_orders(n: int, epochs: int, seed: int) -> np.ndarray:
    """(epochs, n): the shuffled order of the n training images in each epoch, a function of
    (seed, epoch) only, so a resumed training sees the same batches as an uninterrupted one."""
    return np.stack([np.random.default_rng([seed, epoch]).permutation(n) for epoch in range(epochs)])


def random_shift(images, pad: int, seed):
    """Shift each image of a (B, H, W, C) batch by a random whole number of pixels in [-pad, pad]
    along each axis, filling from the reflected border (pad, then crop at a random offset)."""
    import tensorflow as tf
    h, w = images.shape[1], images.shape[2]
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")   # (B, H+2p, W+2p, C)
    offset = tf.random.stateless_uniform([tf.shape(images)[0], 2], seed, 0, 2 * pad + 1, dtype=tf.int32)
    rows = offset[:, :1] + tf.range(h)[None]                                                # (B, H)
    cols = offset[:, 1:] + tf.range(w)[None]                                                # (B, W)
    return tf.gather(tf.gather(padded, rows, axis=1, batch_dims=1), cols, axis=2, batch_dims=1)


def random_rotate(images, degrees: float, seed):
    """Rotate each image of a (B, H, W, C) batch about its centre by a random angle in
    [-degrees, degrees] (bilinear, reflected border), as keras.layers.RandomRotation does."""
    import keras
    import tensorflow as tf
    h, w = images.shape[1], images.shape[2]
    angle = tf.random.stateless_uniform([tf.shape(images)[0], 1], seed, -degrees, degrees) * (math.pi / 180)
    cos, sin = tf.cos(angle), tf.sin(angle)                                                 # (B, 1) each
    x_off = ((w - 1) - (cos * (w - 1) - sin * (h - 1))) / 2
    y_off = ((h - 1) - (sin * (w - 1) + cos * (h - 1))) / 2
    transform = tf.concat([cos, -sin, x_off, sin, cos, y_off, tf.zeros_like(cos), tf.zeros_like(cos)], axis=1)
    return keras.ops.image.affine_transform(images, transform, interpolation="bilinear", fill_mode="reflect")


def augment_batch(images, kind: str, seed, flip=None):
    """params' `augment` on a float image batch, drawn from a (2,) stateless seed: rotate_flip
    (+-ROTATION_DEGREES, the original study's variant d) or crop_flip (shift by up to CROP_PAD px),
    then a horizontal flip of each image with probability 1/2, or of the images where the (B,)
    bool `flip` is true."""
    import tensorflow as tf
    move_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    moved = random_rotate(images, ROTATION_DEGREES, move_seed) if kind == "rotate_flip" \
        else random_shift(images, CROP_PAD, move_seed)
    if flip is None:
        flip = tf.random.stateless_uniform([tf.shape(images)[0]], flip_seed) < 0.5
    return tf.where(flip[:, None, None, None], tf.reverse(moved, axis=[2]), moved)


def alternating_flips(n: int, seed: int) -> np.ndarray:
    """(n,) bool: which images alternating_flip mirrors in even epochs (a random half, from the
    seed); odd epochs mirror the others, so each image is seen both ways in every two epochs."""
    return np.random.default_rng([seed, 2]).random(n) < 0.5


def make_dataset(x: np.ndarray, y: np.ndarray, batch_size: int, *, shuffle: bool = False,
                 augment: str = "none", seed: int = 0, epochs: int = 1, start_epoch: int = 0,
                 alternating_flip: bool = False):
    """A tf.data pipeline of (float images, labels) batches. shuffle: epochs start_epoch..epochs-1
    back to back, each in its epoch_orders() order (fit with steps_per_epoch); else one pass in
    order. Batch i of the run (counted from epoch 0) is augmented with the stateless seed (seed, i);
    alternating_flip: its flips are alternating_flips() in even epochs and their complement in odd."""
    import tensorflow as tf
    images, labels = tf.constant(x), tf.constant(y.astype("int32"))
    order = epoch_orders(len(x), epochs, seed)[start_epoch:] if shuffle else np.arange(len(x))[None]
    steps = math.ceil(len(x) / batch_size)
    first = start_epoch * steps if shuffle else 0
    base_flips = tf.constant(alternating_flips(len(x), seed)) if alternating_flip else None
    batches = len(order) * steps
    ds = tf.data.Dataset.from_tensor_slices(order).flat_map(
        lambda idx: tf.data.Dataset.from_tensor_slices(idx).batch(batch_size)).enumerate(first)
    ds = ds.apply(tf.data.experimental.assert_cardinality(batches))   # Keras then knows where it ends

    def load(i, idx):
        batch = preprocess(tf.gather(images, idx))
        if augment != "none":
            flip = tf.not_equal(tf.gather(base_flips, idx), (i // steps) % 2 == 1) if alternating_flip else None
            batch = augment_batch(batch, augment, tf.stack([tf.constant(seed, tf.int64), i]), flip)
        return batch, tf.gather(labels, idx)
    return ds.map(load, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def tta_views(images: np.ndarray, tta: str) -> list[np.ndarray]:
    """The views of a float (N, H, W, C) batch whose predictions params' `tta` averages: none: the
    images; flip: and their mirror images; flip_shift: both, each also shifted one pixel up-left
    and one down-right (reflected border)."""
    views = [images] if tta == "none" else [images, images[:, :, ::-1]]
    if tta == "flip_shift":
        for v in views[:2]:
            padded = np.pad(v, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="reflect")
            views += [padded[:, :-2, :-2], padded[:, 2:, 2:]]
    return views
