"""scikit-learn's handwritten digits (1,797 8x8 grayscale images, 10 classes) as class folders of
PNGs, to run the study on images other than CIFAR-10:

    .venv/bin/python -m examples.digits digits        # writes digits/0/0000.png ... digits/9/...

then in params.yaml: data.url: digits, data.md5: null, data.test_size: 360, data.val_size: 180,
activations.n_samples: 360 (docs/own-images.md). Pixel values 0..16 are scaled to 0..255.
"""
from __future__ import annotations

import sys
from pathlib import Path


def write_digits(dest: Path) -> int:
    """Write dest/<digit>/<index>.png for every image of load_digits(); return how many."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits
    digits = load_digits()
    images = np.rint(digits.images * 255.0 / 16.0).astype(np.uint8)   # (1797, 8, 8)
    for i, (img, label) in enumerate(zip(images, digits.target)):
        path = dest / str(label) / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img, "L").save(path)
    return len(images)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m examples.digits <folder to write>")
    print(f"wrote {write_digits(Path(sys.argv[1]))} images under {sys.argv[1]}/<digit>/")
