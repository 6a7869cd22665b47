"""Reading the prepared splits that fetch_data writes, and the one preprocessing step."""
from __future__ import annotations

import json

import numpy as np

from study import paths
from study.io import StageError, load_npz, read_input

FETCH_STAGE = "fetch_data"


def load_split(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(x uint8 (N, 32, 32, 3), y uint8 (N,)) of 'train', 'val' or 'test'."""
    path = {"train": paths.TRAIN, "val": paths.VAL, "test": paths.TEST}[name]
    arrays = load_npz(path, FETCH_STAGE, ("x", "y"))
    return arrays["x"], arrays["y"]


def class_names() -> list[str]:
    """The 10 class names, index = label."""
    return read_input(paths.CLASSES, FETCH_STAGE, lambda p: json.loads(p.read_text()), "JSON file")


def preprocess(x):
    """uint8 images -> float32 in [0, 1], the input every model in the study takes (numpy or tf)."""
    if isinstance(x, np.ndarray):
        return x.astype(np.float32) / 255.0
    import tensorflow as tf
    return tf.cast(x, tf.float32) / 255.0


def stratified_subset(y: np.ndarray, n: int, seed: int, key: str = "subset size") -> np.ndarray:
    """Sorted indices of a seeded, class-stratified subset of size n (all indices if n >= len(y)).

    Stratifying needs at least one image of every class in the subset and in what is left
    out; a size that cannot give that is a one-line StageError naming `key` (the param)."""
    if n >= len(y):
        return np.arange(len(y))
    k = len(np.unique(y))
    if not k <= n <= len(y) - k:
        raise StageError(f"{key} = {n} is not allowed: a stratified subset of {len(y)} images needs at "
                         f"least one image per class in it and left out of it; allowed: {k}..{len(y) - k}, "
                         f"or {len(y)} for all")
    from sklearn.model_selection import train_test_split
    try:
        idx, _ = train_test_split(np.arange(len(y)), train_size=n, stratify=y, random_state=seed)
    except ValueError as e:  # e.g. a class with a single image
        raise StageError(f"{key} = {n}: no stratified subset of these {len(y)} images ({e})") from None
    return np.sort(idx)
