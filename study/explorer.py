"""The embedding explorer page (plots/explorer/): its data, its thumbnail sprite and its HTML.

Pure helpers: arrays in; a JSON-able dict, an image array, bytes or strings out. The explorer
stage reads the other stages' files and writes these. The page is study/explorer.html (markup
and style) with study/explorer.js inlined: plain 2D-canvas drawing with its own orbit camera,
about 400 lines and no third-party library, so there is nothing to fetch, install or pin, and
two panels link their cameras by copying one small state object.

Size: coordinates are rounded to SIG_DIGITS significant digits of each embedding's largest
magnitude (1/10,000 of its extent: far below a pixel at any zoom the page offers) and the
thumbnails are one JPEG sprite (4:4:4, quality JPEG_QUALITY: for the 2,000 test images of the
defaults a lossless PNG measured 4.4 MB, this 1.0 MB).
"""
from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np

SIG_DIGITS = 4
CONFIDENCE_DECIMALS = 3
CELL = 32                    # px of one thumbnail in the sprite (CIFAR-10's size; other sides are resized)
JPEG_QUALITY = 90
SPRITE, DATA, PAGE = "sprite.jpg", "data.js", "index.html"   # the files of plots/explorer/
HERE = Path(__file__).parent
TEMPLATE, SCRIPT = HERE / "explorer.html", HERE / "explorer.js"
SCRIPT_TOKEN = "/*EXPLORER_SCRIPT*/"
DIMS = (2, 3)


def round_sig(x: np.ndarray, digits: int = SIG_DIGITS) -> list[float]:
    """x flattened (row-major) to a list of floats rounded to `digits` significant digits of its
    largest magnitude (so every value has the same decimals and its JSON is short)."""
    x = np.asarray(x, np.float64).ravel()
    top = float(np.abs(x).max()) if x.size else 0.0
    decimals = digits - 1 - math.floor(math.log10(top)) if top > 0 else 0
    return np.round(x, decimals).tolist()


def predictions(softmax: np.ndarray) -> tuple[list[int], list[float]]:
    """(n, C) class probabilities -> predicted class (n,) and its probability (n,), rounded."""
    p = np.asarray(softmax, np.float64)
    pred = p.argmax(axis=1)
    return pred.tolist(), np.round(p[np.arange(len(p)), pred], CONFIDENCE_DECIMALS).tolist()


def sprite_columns(n: int) -> int:
    """Columns of the square-ish grid that holds n thumbnails."""
    return max(1, math.ceil(math.sqrt(n)))


def sprite_sheet(images: np.ndarray) -> np.ndarray:
    """(n, S, S, 3) uint8 images -> one (rows*CELL, cols*CELL, 3) sheet, image i (resized to
    CELL x CELL when S differs) in row i // cols, column i % cols; unused cells black."""
    from study.image_decode import resize
    images = np.stack([resize(img, CELL) for img in images]) if len(images) else images
    n = len(images)
    cols = sprite_columns(n)
    rows = max(1, math.ceil(n / cols))
    sheet = np.zeros((rows * cols, CELL, CELL, 3), np.uint8)
    sheet[:n] = images
    # (rows*cols, C, C, 3) -> (rows, cols, C, C, 3) -> (rows, C, cols, C, 3) -> (rows*C, cols*C, 3)
    return sheet.reshape(rows, cols, CELL, CELL, 3).transpose(0, 2, 1, 3, 4).reshape(rows * CELL, cols * CELL, 3)


def encode_jpeg(sheet: np.ndarray) -> bytes:
    """The sheet as JPEG bytes (no chroma subsampling); the same array gives the same bytes."""
    from PIL import Image
    out = io.BytesIO()
    Image.fromarray(sheet).save(out, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return out.getvalue()


def hex_colours(n: int) -> list[str]:
    """The class colours of every other figure of the study (study.tsne_plots), as #rrggbb."""
    from matplotlib.colors import to_hex

    from study.tsne_plots import class_colours
    return [to_hex(c) for c in class_colours(n)]


def model_data(softmax: np.ndarray, coords: dict[str, np.ndarray], metrics: dict, layers) -> dict:
    """One model's part of the page data: predictions, per layer its flat rounded coordinates
    ("2d": [x0, y0, x1, ...], "3d": [x0, y0, z0, ...]) and its t-SNE metrics (details.json)."""
    pred, conf = predictions(softmax)
    return {"predicted": pred, "confidence": conf,
            "coords": {layer: {f"{d}d": round_sig(coords[f"{layer}_{d}d"]) for d in DIMS} for layer in layers},
            "metrics": {layer: {k: _finite(v) for k, v in metrics[layer].items()} for layer in layers}}


def _finite(v):
    """A metric for JSON: a non-finite float (or anything not a number) as None, shown as a dash."""
    return v if isinstance(v, (int, float)) and math.isfinite(v) else None


def page_data(classes: list[str], index: np.ndarray, y: np.ndarray, models: dict[str, dict], layers,
              default_layer: str, k: int) -> dict:
    """Everything the page shows: the n sampled test images (their test-split `index`, true
    class `y`, sprite cell = position), the classes and their colours, each model's
    model_data, the k of the neighbours shown on a click."""
    return {"classes": list(classes), "colours": hex_colours(len(classes)), "index": np.asarray(index).tolist(),
            "label": np.asarray(y).tolist(), "layers": list(layers), "default_layer": default_layer, "k": int(k),
            "models": list(models), "model": models,
            "sprite": {"file": SPRITE, "cell": CELL, "columns": sprite_columns(len(index))}}


def data_script(data: dict) -> str:
    """data.js: the page data as one deterministic JSON assignment (sorted keys, no spaces)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return f"window.EXPLORER_DATA = {text};\n"


def page_html(template: str, script: str) -> str:
    """index.html: the template with the page's script inlined at SCRIPT_TOKEN."""
    if template.count(SCRIPT_TOKEN) != 1:
        raise ValueError(f"the explorer template must hold {SCRIPT_TOKEN} once")
    return template.replace(SCRIPT_TOKEN, script.replace("</script", "<\\/script"))
