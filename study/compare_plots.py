"""The compare stage's figures: both models' training curves, both test confusion matrices."""
from __future__ import annotations

import numpy as np


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def curves_figure(curves: dict, names, metrics, splits=("train", "val")):
    """One panel per metric: train (solid) and val (dashed) per model, per epoch.

    curves[(name, split, metric)] = (steps (E,), values (E,))."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(11, 4))
    for ax, metric in zip(np.atleast_1d(axes), metrics):
        for i, name in enumerate(names):
            for split, style in zip(splits, ("-", "--")):
                steps, values = curves[name, split, metric]
                ax.plot(steps + 1, values, style, color=f"C{i}", label=f"{name} {split}")
        ax.set(title=metric, xlabel="epoch", ylabel=metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def confusion_figure(cms: dict, classes: list[str]):
    """Row-normalised test confusion matrices {name: (K, K) counts}, side by side."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(cms), figsize=(6 * len(cms), 5.2))
    for ax, (name, cm) in zip(np.atleast_1d(axes), cms.items()):
        rate = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        ax.imshow(rate, cmap="Blues", vmin=0, vmax=1)
        for (i, j), v in np.ndenumerate(rate):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6,
                    color="white" if v > 0.5 else "black")
        ax.set_xticks(range(len(classes)), classes, rotation=60, fontsize=7)
        ax.set_yticks(range(len(classes)), classes, fontsize=7)
        ax.set(title=f"{name} (test)", xlabel="predicted", ylabel="true")
    fig.tight_layout()
    return fig
