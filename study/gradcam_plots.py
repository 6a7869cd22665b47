"""Drawing Grad-CAM results: the per-class grid of originals and heat-map overlays."""
from __future__ import annotations

import numpy as np

CMAP = "jet"
OVERLAY_ALPHA = 0.45        # weight of the heat map over the image
WRONG_COLOUR = "red"        # title colour of misclassified images
PANEL_INCHES = 1.1          # size of one 32 x 32 panel


def overlay(image: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """(H, W, 3) float RGB in [0, 1]: the image blended with the colour-mapped heat map."""
    import matplotlib
    rgb = matplotlib.colormaps[CMAP](np.clip(heat, 0, 1))[..., :3]
    base = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image
    return np.clip((1 - OVERLAY_ALPHA) * base + OVERLAY_ALPHA * rgb, 0, 1)


def _panel(ax, picture, title, colour="black"):
    ax.imshow(picture, interpolation="nearest")
    ax.set_title(title, fontsize=7, color=colour, pad=2)
    ax.set_xticks([])
    ax.set_yticks([])


def grid_figure(images, heat_pred, heat_true, y, pred, classes, title=""):
    """Figure with a row per class: for each image the original, predicted- and true-class overlays.

    images (R, K, 32, 32, 3) uint8, heat_* (R, K, 32, 32) in [0, 1], y/pred (R, K) labels;
    a misclassified image's titles are red and say what it was taken for.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows, per_row = y.shape
    fig, axes = plt.subplots(rows, 3 * per_row, squeeze=False,
                             figsize=(3 * per_row * PANEL_INCHES, rows * PANEL_INCHES * 1.15))
    for r in range(rows):
        for j in range(per_row):
            wrong = pred[r, j] != y[r, j]
            colour = WRONG_COLOUR if wrong else "black"
            ax0, ax1, ax2 = axes[r, 3 * j:3 * j + 3]
            _panel(ax0, images[r, j], f"pred: {classes[pred[r, j]]}" if wrong else "image", colour)
            _panel(ax1, overlay(images[r, j], heat_pred[r, j]), f"cam {classes[pred[r, j]]}", colour)
            _panel(ax2, overlay(images[r, j], heat_true[r, j]), f"cam {classes[y[r, j]]}")
        axes[r, 0].set_ylabel(classes[int(y[r, 0])], fontsize=9, rotation=0, ha="right", va="center")
    fig.suptitle(title or "Grad-CAM on conv2d_4: image | predicted-class map | true-class map",
                 fontsize=10)
    fig.tight_layout()
    return fig
