"""compare: the baseline and the center-loss model side by side.

Reads params.yaml (seed, kmeans.n_init, kmeans.max_iter; the training and center_loss keys that
the report names), data/classes.json, data/fetch.json (split sizes) and, per
model <name>: plots/train_<name>/details.json (test accuracy, loss),
plots/train_<name>/plots/metrics/{train,val}/{accuracy,loss|ce}.tsv (DVCLive curves),
plots/train_<name>/plots/sklearn/confusion_matrix.json, plots/tsne/<name>/details.json,
plots/gradcam/<name>/details.json, data/activations/<name>.npz (`dense`, `y`); and
plots/kmeans_centroids/details.json.
Writes plots/compare/details.json (every number above side by side), its headline
plots/compare/metrics.json (`difference`: center_loss - baseline), plots/compare/curves.png,
plots/compare/confusion_matrices.png and plots/compare/report.md (links the
t-SNE 3D images and Grad-CAM grids of both models relatively).
"""

import numpy as np

from study import paths
from study.compare import DIFFERENCE, differences
from study.curves import parse_curve
from study.data import class_names
from study.errors import StageError
from study.files import load_npz, read_input, read_json, save_figure, write_metrics, write_text
from study.model import FEATURE_LAYER
from study.params import TRICKS_OFF, load
from study.stage import run_stage

BASE, OTHER = paths.MODEL_NAMES          # ("baseline", "center_loss")
# The curves drawn side by side, and the DVCLive metric holding each for each model: the
# center-loss model's `loss` is its total (CE + center terms), so cross-entropy is its `ce`.
CURVES = {"accuracy": {"baseline": "accuracy", "center_loss": "accuracy"},
          "cross-entropy": {"baseline": "loss", "center_loss": "ce"}}
SPLITS = ("train", "val")


def read_curve(path, stage: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of a DVCLive TSV (study.curves.parse_curve), via read_input."""
    curve = read_input(path, stage, parse_curve, "DVCLive TSV")
    return np.array(list(curve), int), np.array(list(curve.values()), float)


def read_model(name: str, classes: list[str], params: dict) -> tuple[dict, np.ndarray]:
    """One model's comparison metrics and test confusion matrix, from the files its stages wrote."""
    from study.compare import confusion_matrix, model_metrics
    live = paths.train_dir(name)
    cm_file = live / "plots" / "sklearn" / "confusion_matrix.json"
    try:
        cm = confusion_matrix(read_json(cm_file, f"train_{name}"), classes)
    except ValueError as e:
        raise StageError(f"{cm_file}: {e}; run `dvc repro train_{name}`") from None
    dense = load_npz(paths.activations_file(name), f"extract_activations@{name}", (FEATURE_LAYER, "y"))
    return model_metrics(read_json(paths.train_details(name), f"train_{name}"), cm,
                         read_json(paths.tsne_details(name), f"tsne@{name}"),
                         read_json(paths.details_file(paths.gradcam_dir(name)), f"gradcam@{name}"),
                         (dense[FEATURE_LAYER].astype(np.float64), dense["y"].astype(int)), classes, params,
                         paths.train_details(name)), cm


SETTINGS = ("seed", "epochs", "optimizer", "learning_rate", "lr_schedule", "batch_size", "augment", "tta",
            *TRICKS_OFF)


def settings(params: dict, fetch_info: dict) -> dict:
    """What the two models compared are: the center-loss params, the shared recipe, the split sizes."""
    return {k: params[k] for k in SETTINGS} | {"center_loss": dict(params["center_loss"]),
                                               "sizes": fetch_info["sizes"]}


def main(params: dict) -> dict:
    """Gather both models' metrics, draw curves and confusion matrices, write metrics and report."""
    from study.compare_plots import confusion_figure, curves_figure
    from study.report import report_markdown
    classes, metrics, cms = class_names(), {}, {}
    for name in paths.MODEL_NAMES:
        metrics[name], cms[name] = read_model(name, classes, params)
    km = read_json(paths.details_file(paths.KMEANS_DIR), "kmeans_centroids")
    metrics["kmeans_centroids"] = {k: km.get(k) for k in ("nmi", "ari", "purity")}
    metrics[DIFFERENCE] = differences(metrics[BASE], metrics[OTHER])
    metrics["settings"] = settings(params, read_json(paths.FETCH_INFO, "fetch_data"))
    curves = {(n, s, c): read_curve(paths.train_dir(n) / "plots" / "metrics" / s / f"{CURVES[c][n]}.tsv", f"train_{n}")
              for n in paths.MODEL_NAMES for s in SPLITS for c in CURVES}
    save_figure(curves_figure(curves, paths.MODEL_NAMES, list(CURVES), SPLITS), paths.COMPARE_DIR / "curves.png")
    save_figure(confusion_figure(cms, classes), paths.COMPARE_DIR / "confusion_matrices.png")
    write_metrics(paths.COMPARE_DIR, metrics, {DIFFERENCE: metrics[DIFFERENCE]})
    write_text(paths.COMPARE_DIR / "report.md", report_markdown(metrics, classes, BASE, OTHER, metrics["settings"]))
    print(f"test accuracy {BASE} {metrics[BASE]['test']['accuracy']:.4f}, {OTHER} "
          f"{metrics[OTHER]['test']['accuracy']:.4f} (difference {metrics[DIFFERENCE]['test_accuracy']:+.4f})")
    return metrics


if __name__ == "__main__":
    run_stage(lambda: main(load()))
