"""examples/digits.py: scikit-learn's digits as class folders read back as the same images and labels."""
from __future__ import annotations

import numpy as np

from examples.digits import write_digits
from study.image_folder import read_images


def test_digits_folders_hold_every_image_under_its_label(tmp_path):
    from sklearn.datasets import load_digits
    assert write_digits(tmp_path) == 1797
    assert sorted(p.name for p in tmp_path.iterdir()) == [str(d) for d in range(10)]
    got = read_images(tmp_path, 8, "digits")          # at their own 8 x 8: no resizing
    x, y = got["train"]
    digits = load_digits()
    want = np.rint(digits.images * 255.0 / 16.0).astype(np.uint8)
    assert got["classes"] == [str(d) for d in range(10)] and got["test"] is None
    assert np.array_equal(np.bincount(y), np.bincount(digits.target))
    # every image back, gray in all three channels, under its label (files are numbered by index)
    order = np.argsort(digits.target, kind="stable")
    assert np.array_equal(x[..., 0], want[order]) and np.array_equal(x[..., 0], x[..., 2])
    assert np.array_equal(y, digits.target[order])
