"""Tiny synthetic CIFAR-shaped data that a CNN can learn in one epoch (for stage tests)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck"]


def synthetic_images(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(x uint8 (10n, 32, 32, 3), y uint8): each class a distinct colour and stripe, plus noise."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(10, dtype=np.uint8), n_per_class)
    base = np.zeros((10, 32, 32, 3), np.float32)
    for k in range(10):
        base[k, :, :, k % 3] = 60 + 15 * k
        base[k, (3 * k) % 32:(3 * k) % 32 + 4, :, :] = 230  # a class-specific horizontal stripe
    x = base[y] + rng.normal(0, 25, size=(len(y), 32, 32, 3))
    order = rng.permutation(len(y))
    return np.clip(x, 0, 255).astype(np.uint8)[order], y[order]


def write_splits(root: Path, n_train: int = 20, n_val: int = 5, n_test: int = 10, seed: int = 0) -> None:
    """Write data/{train,val,test}.npz and data/classes.json as fetch_data would (n per class)."""
    data = Path(root) / "data"
    data.mkdir(parents=True, exist_ok=True)
    for i, (name, n) in enumerate((("train", n_train), ("val", n_val), ("test", n_test))):
        x, y = synthetic_images(n, seed + i)
        np.savez(data / f"{name}.npz", x=x, y=y)
    (data / "classes.json").write_text(json.dumps(CLASSES))
