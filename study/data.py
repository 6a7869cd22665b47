"""Reading the prepared splits that fetch_data writes, and the one preprocessing step."""
from __future__ import annotations

import json

import numpy as np

from study import paths
from study.io import StageError


def load_split(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(x uint8 (N, 32, 32, 3), y uint8 (N,)) of 'train', 'val' or 'test'."""
    path = {"train": paths.TRAIN, "val": paths.VAL, "test": paths.TEST}[name]
    if not path.exists():
        raise StageError(f"{path}: not found; run `dvc repro fetch_data` first")
    with np.load(path) as f:
        return f["x"], f["y"]


def class_names() -> list[str]:
    """The 10 class names, index = label."""
    if not paths.CLASSES.exists():
        raise StageError(f"{paths.CLASSES}: not found; run `dvc repro fetch_data` first")
    return json.loads(paths.CLASSES.read_text())


def preprocess(x):
    """uint8 images -> float32 in [0, 1], the input every model in the study takes (numpy or tf)."""
    if isinstance(x, np.ndarray):
        return x.astype(np.float32) / 255.0
    import tensorflow as tf
    return tf.cast(x, tf.float32) / 255.0


def stratified_subset(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded, class-stratified subset of size n (all indices if n >= len(y))."""
    if n >= len(y):
        return np.arange(len(y))
    from sklearn.model_selection import train_test_split
    idx, _ = train_test_split(np.arange(len(y)), train_size=n, stratify=y, random_state=seed)
    return np.sort(idx)
