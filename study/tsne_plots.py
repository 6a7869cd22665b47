"""Figures of the tsne stage (matplotlib, Agg backend): 3D t-SNE scatters and 3D surfaces of conv maps.

Pure drawing: functions take arrays and return a matplotlib Figure; the stage saves it
with study.files.save_figure (atomic, closes the figure).
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

# (elevation, azimuth) in degrees of the 3D views drawn side by side
VIEWS = ((25, 45), (25, 135), (65, -60))
POINT_SIZE = 4


def class_colours(n_classes: int) -> np.ndarray:
    """(n_classes, 4) RGBA colours, one per class (tab10 for <= 10 classes)."""
    cmap = plt.get_cmap("tab10" if n_classes <= 10 else "tab20")
    return cmap(np.arange(n_classes) % cmap.N)


def scatter_3d(emb: np.ndarray, y: np.ndarray, classes: list[str], title: str):
    """Figure of a 3D embedding (n, 3) seen from each of VIEWS, coloured by class, with a legend."""
    colours = class_colours(len(classes))
    fig = plt.figure(figsize=(5 * len(VIEWS), 5.4))
    for i, (elev, azim) in enumerate(VIEWS):
        ax = fig.add_subplot(1, len(VIEWS), i + 1, projection="3d")
        for k, name in enumerate(classes):
            pts = emb[y == k]
            ax.scatter(pts[:, 0], pts[:, 1], pts[:, 2], s=POINT_SIZE, color=colours[k], label=name,
                       depthshade=False)
        ax.view_init(elev=elev, azim=azim)
        ax.set(xlabel="t-SNE 1", ylabel="t-SNE 2", zlabel="t-SNE 3",
               title=f"elevation {elev}°, azimuth {azim}°")
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(classes), 10), markerscale=3, title="class")
    fig.suptitle(title)
    fig.subplots_adjust(bottom=0.16, wspace=0.15)
    return fig


def surfaces(maps: np.ndarray, labels: list[str], title: str):
    """Figure of channel-mean conv maps (m, H, W) as 3D surfaces, one panel per image, titled by its label."""
    fig = plt.figure(figsize=(4.5 * len(maps), 4.5))
    h, w = maps.shape[1:]
    cols, rows = np.meshgrid(np.arange(w), np.arange(h))  # (H, W) pixel coordinates
    for i, (m, label) in enumerate(zip(maps, labels)):
        ax = fig.add_subplot(1, len(maps), i + 1, projection="3d")
        ax.plot_surface(cols, rows, m, cmap="viridis", linewidth=0, antialiased=True)
        ax.set(xlabel="column", ylabel="row", zlabel="mean activation", title=label)
        ax.invert_yaxis()  # row 0 at the back, as in the image
    fig.suptitle(title)
    return fig
