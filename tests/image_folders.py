"""Tiny folders of class folders for the own-images tests: PNG and JPEG files in mixed modes
(RGB, grayscale, palette, RGBA, CMYK, 16-bit grayscale) and sizes, every image different."""
from __future__ import annotations

from pathlib import Path

import numpy as np

CLASSES3 = ("ant", "bee", "cat")
MODES = ("RGB", "L", "P", "RGBA", "CMYK", "I;16")


def image_file(path: Path, seed: int, mode: str = "RGB", size=(20, 16)) -> Path:
    """A random image of `mode` and `size` (w, h) at `path` (PNG or JPEG by its suffix)."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    rgb = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65536, (size[1], size[0]), dtype=np.uint16))
    elif mode == "P":
        img = rgb.convert("P", palette=Image.Palette.ADAPTIVE)
    else:
        img = rgb.convert(mode)
    if path.suffix.lower() in (".jpg", ".jpeg") and img.mode not in ("RGB", "L", "CMYK"):
        img = img.convert("RGB")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def class_tree(root: Path, n_per_class: int, classes=CLASSES3, seed: int = 0, split_dirs=None) -> Path:
    """root/<class>/NNN.(png|jpg), or root/<split>/<class>/... for each of `split_dirs`
    {split: n per class}; formats, modes and sizes cycle, so every kind appears."""
    layout = split_dirs or {"": n_per_class}
    k = seed * 100_000
    for split, n in layout.items():
        for c in classes:
            for i in range(n):
                k += 1
                suffix = ".png" if k % 2 else ".jpg"
                image_file(root / split / c / f"{i:03d}{suffix}", k, MODES[k % len(MODES)],
                           (16 + k % 24, 12 + k % 30))
    return root
