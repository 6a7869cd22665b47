"""plots/compare/report.md and its small markdown builders (pure: values in, strings out)."""
from __future__ import annotations

import os
from pathlib import Path

from study import paths
from study.compare import GRADCAM_KEYS, TSNE_KEYS
from study.model import ANALYSED_LAYERS, CAM_LAYER
from study.params import TRICKS_OFF


def link(target: str | Path, report: str | Path) -> str:
    """`target`'s path relative to the folder of `report`, with forward slashes."""
    return Path(os.path.relpath(target, Path(report).parent)).as_posix()


def image(alt: str, target: str | Path, report: str | Path) -> str:
    """A markdown image whose link works from the report's folder (and on GitHub)."""
    return f"![{alt}]({link(target, report)})"


def fmt(value, digits: int = 4) -> str:
    """A number for a table cell; None (a metric a stage did not write) as an en dash."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(header: list[str], rows: list[list]) -> str:
    """A GitHub markdown table; cells go through fmt()."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def side_by_side(title: str, names: list[str], targets: list[str | Path], report: str | Path) -> str:
    """A one-row table putting one image per model next to each other, under a heading."""
    cells = [image(f"{title}, {n}", t, report) for n, t in zip(names, targets)]
    return f"### {title}\n\n" + table(names, [cells])


def accuracy_sentence(acc: dict[str, float], base: str, other: str) -> str:
    """The test-accuracy difference, stated with the caveat a single run needs."""
    diff = acc[other] - acc[base]
    if diff:
        change = f"{abs(diff) * 100:.2f} percentage points {'higher' if diff > 0 else 'lower'} than {base}"
    else:
        change = f"the same as {base}"
    return (f"Test accuracy: {base} {acc[base]:.4f}, {other} {acc[other]:.4f}; "
            f"{other} is {change}. "
            "This is one training run per model (one seed): it cannot show whether the "
            "difference is significant. Repeating both with several seeds "
            "(`dvc exp run -S seed=...`) would measure the run-to-run spread it must exceed.")


def settings_line(s: dict) -> str:
    """What the two models are: the center-loss variant and its weights, the shared recipe, the data."""
    cl, sizes = s["center_loss"], s["sizes"]
    return (f"Settings: center loss `{cl['variant']}` (lambda {cl['lambda']:g}, mu {cl['mu']:g}, "
            f"alpha {cl['alpha']:g}, init {cl['init']}); both models: {s['epochs']} epochs, "
            f"{s['optimizer']} at learning rate {s['learning_rate']:g} ({s['lr_schedule']}), batch "
            f"{s['batch_size']}, augment {s['augment']}{tricks_text(s)}, seed {s['seed']}; images: "
            f"{sizes['train']:,} train, {sizes['val']:,} validation, {sizes['test']:,} test.")


def tricks_text(s: dict) -> str:
    """', test views <tta>' and each trick for fewer epochs that is on: its name, and its value
    unless it is a switch."""
    on = [k if isinstance(s[k], bool) else f"{k} {s[k]:g}" for k, off in TRICKS_OFF.items() if s[k] != off]
    return f", test views {s['tta']}" + "".join(f", {k}" for k in on)


def report_markdown(metrics: dict, classes: list[str], base: str, other: str, settings: dict) -> str:
    """plots/compare/report.md: what is compared (`settings`: settings_line's keys), the accuracy
    difference, metric tables and the figures side by side."""
    out, names = paths.COMPARE_DIR / "report.md", [base, other]
    m = {n: metrics[n] for n in names}
    acc = {n: m[n]["test"]["accuracy"] for n in names}
    parts = [f"# Baseline vs center loss (`{settings['center_loss']['variant']}`)", "",
             settings_line(settings), "", accuracy_sentence(acc, base, other), "",
             "## Test metrics", "",
             table(["metric"] + names,
                   [["test accuracy"] + [m[n]["test"]["accuracy"] for n in names],
                    ["test loss"] + [m[n]["test"]["loss"] for n in names],
                    ["dense intra/inter-class distance ratio"] + [m[n]["dense"]["intra_inter_ratio"] for n in names],
                    ["dense k-means NMI"] + [m[n]["dense"]["kmeans_nmi"] for n in names]]
                   + [[f"Grad-CAM {k}"] + [m[n]["gradcam"][k] for n in names] for k in GRADCAM_KEYS]),
             "", "## Per-class test accuracy", "",
             table(["class"] + names, [[c] + [m[n]["per_class_accuracy"][c] for n in names] for c in classes]),
             "", "## Per-layer kNN accuracy and silhouette (t-SNE stages)", "",
             table(["layer", "metric"] + names,
                   [[layer, k] + [m[n]["layers"][layer][k] for n in names]
                    for layer in ANALYSED_LAYERS for k in TSNE_KEYS]),
             "", "## Figures", "",
             "### Training curves (train solid, validation dashed)", "",
             image("training curves", paths.COMPARE_DIR / "curves.png", out), "",
             "### Test confusion matrices", "",
             image("confusion matrices", paths.COMPARE_DIR / "confusion_matrices.png", out), ""]
    for layer in ANALYSED_LAYERS:
        parts += [side_by_side(f"3D t-SNE of {layer}", names,
                               [paths.tsne_image_3d(n, layer) for n in names], out), ""]
    parts += [side_by_side(f"Grad-CAM on {CAM_LAYER}", names,
                           [paths.gradcam_dir(n) / "grid.png" for n in names], out), ""]
    return "\n".join(parts)
