"""compare: the baseline and the center-loss model side by side.

Reads params.yaml (seed, kmeans.n_init, kmeans.max_iter), data/classes.json and, per
model <name>: plots/train_<name>/metrics.json (test accuracy, loss),
plots/train_<name>/plots/metrics/{train,val}/{accuracy,loss}.tsv (DVCLive curves),
plots/train_<name>/plots/sklearn/confusion_matrix.json, plots/tsne/<name>/metrics.json,
plots/gradcam/<name>/metrics.json, data/activations/<name>.npz (`dense`, `y`); and
plots/kmeans_centroids/metrics.json.
Writes plots/compare/metrics.json (DVC metrics), plots/compare/curves.png,
plots/compare/confusion_matrices.png and plots/compare/report.md (links the
t-SNE 3D images and Grad-CAM grids of both models relatively).
"""
import csv
import json

import numpy as np

from study import paths
from study.data import class_names
from study.io import StageError, load_npz, read_input, run_stage, save_figure, write_json, write_text
from study.model import ANALYSED_LAYERS, FEATURE_LAYER
from study.params import load

BASE, OTHER = paths.MODEL_NAMES          # ("baseline", "center_loss")
# The curves drawn side by side, and the DVCLive metric holding each for each model: the
# center-loss model's `loss` is its total (CE + center terms), so cross-entropy is its `ce`.
CURVES = {"accuracy": {"baseline": "accuracy", "center_loss": "accuracy"},
          "cross-entropy": {"baseline": "loss", "center_loss": "ce"}}
SPLITS = ("train", "val")
TSNE_KEYS = ("knn_accuracy_2d", "knn_accuracy_3d", "knn_accuracy_features",
             "silhouette_2d", "silhouette_features")
GRADCAM_KEYS = ("deletion_auc", "insertion_auc", "random_deletion_auc", "random_insertion_auc")


def curve_file(name: str, split: str, metric: str):
    """DVCLive's per-epoch TSV of one metric: plots/train_<name>/plots/metrics/<split>/<metric>.tsv."""
    return paths.train_dir(name) / "plots" / "metrics" / split / f"{metric}.tsv"


def confusion_file(name: str):
    """DVCLive's confusion-matrix records of the test split."""
    return paths.train_dir(name) / "plots" / "sklearn" / "confusion_matrix.json"


def read_json(path, stage: str):
    """Parsed JSON of another stage's output; missing = StageError naming the stage to run."""
    return read_input(path, stage, lambda p: json.loads(p.read_text()), "JSON file")


def read_curve(path, stage: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of a DVCLive TSV (columns: [timestamp,] step, <metric>)."""
    def read(p):
        with open(p, newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        if not rows or "step" not in rows[0]:
            raise StageError(f"{p}: expected a DVCLive TSV with a 'step' column; run `dvc repro {stage}`")
        value_key = [k for k in rows[0] if k not in ("step", "timestamp")][0]
        return np.array([int(r["step"]) for r in rows]), np.array([float(r[value_key]) for r in rows])
    return read_input(path, stage, read, "DVCLive TSV")


def confusion_matrix(records: list[dict], classes: list[str]) -> np.ndarray:
    """(K, K) counts, row = true class, column = predicted, from DVCLive's {actual, predicted} records."""
    index = {c: i for i, c in enumerate(classes)}
    cm = np.zeros((len(classes), len(classes)), int)
    for r in records:
        cm[index[r["actual"]], index[r["predicted"]]] += 1
    return cm


def per_class_accuracy(cm: np.ndarray, classes: list[str]) -> dict:
    """Recall of each class (diagonal / row sum); a class absent from the test split gives None."""
    totals = cm.sum(axis=1)
    return {c: (float(cm[i, i] / totals[i]) if totals[i] else None) for i, c in enumerate(classes)}


def distance_ratio(x: np.ndarray, y: np.ndarray) -> dict:
    """Mean distance of points to their class mean (intra) over mean distance between class means (inter)."""
    labels = np.unique(y)
    means = np.stack([x[y == k].mean(axis=0) for k in labels])          # (K, d)
    intra = float(np.mean(np.linalg.norm(x - means[np.searchsorted(labels, y)], axis=1)))
    pair = np.linalg.norm(means[:, None] - means[None], axis=-1)        # (K, K)
    inter = float(pair[np.triu_indices(len(labels), 1)].mean())
    return {"intra": intra, "inter": inter, "intra_inter_ratio": intra / inter if inter else None}


def kmeans_nmi(x: np.ndarray, y: np.ndarray, params: dict) -> float:
    """NMI between labels and k-means (k = number of classes, seeded) clusters of x."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score
    km = KMeans(len(np.unique(y)), n_init=params["kmeans"]["n_init"],
                max_iter=params["kmeans"]["max_iter"], random_state=params["seed"])
    return float(normalized_mutual_info_score(y, km.fit_predict(x)))


def read_dense(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(dense (n, 512) float, y (n,)) from data/activations/<name>.npz."""
    f = load_npz(paths.activations_file(name), f"extract_activations@{name}", (FEATURE_LAYER, "y"))
    return f[FEATURE_LAYER].astype(np.float64), f["y"].astype(int)


def model_metrics(name: str, classes: list[str], params: dict) -> tuple[dict, np.ndarray]:
    """One model's comparison metrics and its test confusion matrix."""
    train = read_json(paths.train_dir(name) / "metrics.json", f"train_{name}")
    if "test" not in train or not {"accuracy", "loss"} <= set(train["test"]):
        raise StageError(f"{paths.train_dir(name) / 'metrics.json'}: no test.accuracy / test.loss")
    cm = confusion_matrix(read_json(confusion_file(name), f"train_{name}"), classes)
    tsne = read_json(paths.tsne_metrics(name), f"tsne@{name}")
    cam = read_json(paths.gradcam_dir(name) / "metrics.json", f"gradcam@{name}")
    x, y = read_dense(name)
    dense = distance_ratio(x, y) | {"kmeans_nmi": kmeans_nmi(x, y, params)}
    return {
        "test": {"accuracy": float(train["test"]["accuracy"]), "loss": float(train["test"]["loss"])},
        "per_class_accuracy": per_class_accuracy(cm, classes),
        "layers": {layer: {k: tsne.get(layer, {}).get(k) for k in TSNE_KEYS}
                   for layer in ANALYSED_LAYERS},
        "dense": dense,
        "gradcam": {k: cam.get(k) for k in GRADCAM_KEYS},
    }, cm


def curves_figure(curves: dict):
    """Two panels (accuracy, cross-entropy): train (solid) and val (dashed) per model, per epoch."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(CURVES), figsize=(11, 4))
    for ax, metric in zip(axes, CURVES):
        for i, name in enumerate(paths.MODEL_NAMES):
            for split, style in zip(SPLITS, ("-", "--")):
                steps, values = curves[name, split, metric]
                ax.plot(steps + 1, values, style, color=f"C{i}", label=f"{name} {split}")
        ax.set(title=metric, xlabel="epoch", ylabel=metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def confusion_figure(cms: dict, classes: list[str]):
    """Row-normalised test confusion matrices of both models, side by side."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
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


def report_markdown(metrics: dict, classes: list[str]) -> str:
    """plots/compare/report.md: accuracy difference, metric tables and the figures side by side."""
    from study.report import accuracy_sentence, image, side_by_side, table
    out, names = paths.COMPARE_DIR / "report.md", list(paths.MODEL_NAMES)
    m = {n: metrics[n] for n in names}
    acc = {n: m[n]["test"]["accuracy"] for n in names}
    parts = ["# Baseline vs center loss", "", accuracy_sentence(acc, BASE, OTHER), "",
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
    parts += [side_by_side("Grad-CAM on conv2d_4", names,
                           [paths.gradcam_dir(n) / "grid.png" for n in names], out), ""]
    return "\n".join(parts)


def main(params: dict) -> dict:
    """Gather both models' metrics, draw curves and confusion matrices, write metrics and report."""
    classes = class_names()
    metrics, cms = {}, {}
    for name in paths.MODEL_NAMES:
        metrics[name], cms[name] = model_metrics(name, classes, params)
    km = read_json(paths.KMEANS_DIR / "metrics.json", "kmeans_centroids")
    metrics["kmeans_centroids"] = {k: km.get(k) for k in ("nmi", "ari", "purity")}
    metrics["test_accuracy_difference"] = (metrics[OTHER]["test"]["accuracy"]
                                           - metrics[BASE]["test"]["accuracy"])
    curves = {(n, s, c): read_curve(curve_file(n, s, CURVES[c][n]), f"train_{n}")
              for n in paths.MODEL_NAMES for s in SPLITS for c in CURVES}
    save_figure(curves_figure(curves), paths.COMPARE_DIR / "curves.png")
    save_figure(confusion_figure(cms, classes), paths.COMPARE_DIR / "confusion_matrices.png")
    write_json(paths.COMPARE_DIR / "metrics.json", metrics)
    write_text(paths.COMPARE_DIR / "report.md", report_markdown(metrics, classes))
    print(f"test accuracy {BASE} {metrics[BASE]['test']['accuracy']:.4f}, {OTHER} "
          f"{metrics[OTHER]['test']['accuracy']:.4f} (difference {metrics['test_accuracy_difference']:+.4f})")
    return metrics


if __name__ == "__main__":
    run_stage(lambda: main(load()))
