"""One image file -> the RGB array the study trains on: Pillow decodes JPEG and PNG, converts
every mode to RGB, and resizes to the study's side (bilinear, antialiased when it shrinks)."""
from __future__ import annotations

import io

import numpy as np

from study.errors import StageError

FORMATS = ("JPEG", "PNG")
MAX_PIXELS = 50_000_000        # width x height of one image; larger is refused (decompression bombs)


def decode(raw: bytes, name: str, size: int) -> np.ndarray:
    """A JPEG or PNG file's bytes -> (size, size, 3) uint8 RGB; a one-line StageError naming
    the file when it is not one, is damaged, or has more than MAX_PIXELS pixels."""
    from PIL import Image
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow refuses larger ones itself too (DecompressionBombError)
    try:
        with Image.open(io.BytesIO(raw)) as img:
            if img.format not in FORMATS:
                raise ValueError(f"a {img.format} file")
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise StageError(f"{name}: {w} x {h} pixels; allowed: at most {MAX_PIXELS:,} per image")
            img.load()
            rgb = to_rgb(img)
    except StageError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise StageError(f"{name}: not a readable JPEG or PNG image ({e})") from None
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def to_rgb(img):
    """Any Pillow mode -> RGB: 16- and 32-bit grayscale scaled to 8 bits (Pillow's own convert
    would clip them to white), the others by Pillow's convert (alpha dropped, as Keras does)."""
    from PIL import Image
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        a = np.asarray(img).astype(np.float64)
        top = 65535.0 if img.mode != "F" or a.max() > 1 else 1.0
        img = Image.fromarray(np.clip(np.rint(a * 255.0 / top), 0, 255).astype(np.uint8), "L")
    return img.convert("RGB")


def resize(img: np.ndarray, size: int) -> np.ndarray:
    """(S, S, 3) uint8 -> (size, size, 3) uint8 as decode resizes; the same array when S == size."""
    if img.shape[0] == size and img.shape[1] == size:
        return img
    from PIL import Image
    return np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.BILINEAR))
