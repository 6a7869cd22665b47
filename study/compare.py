"""The comparison metrics of the two models, from what the other stages wrote (pure functions).

Reuses study.kmeans (k-means, class means) rather than re-implementing them; the compare
stage reads the files and writes the results.
"""
from __future__ import annotations

import reprlib

import numpy as np

from study.errors import StageError
from study.kmeans import class_means, fit_kmeans
from study.model import ANALYSED_LAYERS

TSNE_KEYS = ("knn_accuracy_2d", "knn_accuracy_3d", "knn_accuracy_features",
             "silhouette_2d", "silhouette_features")
GRADCAM_KEYS = ("deletion_auc", "insertion_auc", "random_deletion_auc", "random_insertion_auc")
DIFFERENCE = "difference"     # compare's headline section: center_loss - baseline


def differences(base: dict, other: dict) -> dict:
    """other - base (two model_metrics dicts) for the few numbers compare's headline shows."""
    def diff(a, b):
        return None if a is None or b is None else b - a
    return {"test_accuracy": diff(base["test"]["accuracy"], other["test"]["accuracy"]),
            "test_loss": diff(base["test"]["loss"], other["test"]["loss"]),
            "dense_kmeans_nmi": diff(base["dense"]["kmeans_nmi"], other["dense"]["kmeans_nmi"]),
            "dense_intra_inter_ratio": diff(base["dense"]["intra_inter_ratio"], other["dense"]["intra_inter_ratio"])}


def confusion_matrix(records: list[dict], classes: list[str]) -> np.ndarray:
    """(K, K) counts, row = true class, column = predicted, from DVCLive's {actual, predicted} records."""
    index = {c: i for i, c in enumerate(classes)}
    cm = np.zeros((len(classes), len(classes)), int)
    for r in records:
        try:
            cm[index[r["actual"]], index[r["predicted"]]] += 1
        except (KeyError, TypeError):
            raise ValueError(f"has a record {reprlib.repr(r)} whose classes are not those of data/classes.json "
                             f"({', '.join(classes)})") from None
    return cm


def per_class_accuracy(cm: np.ndarray, classes: list[str]) -> dict:
    """Recall of each class (diagonal / row sum); a class absent from the test split gives None."""
    totals = cm.sum(axis=1)
    return {c: (float(cm[i, i] / totals[i]) if totals[i] else None) for i, c in enumerate(classes)}


def distance_ratio(x: np.ndarray, y: np.ndarray) -> dict:
    """Mean distance of points to their class mean (intra) over mean distance between class means (inter)."""
    labels, index = np.unique(y, return_inverse=True)                   # classes present, (n,) row of each
    means = class_means(x, index, len(labels))                          # (K, d)
    intra = float(np.mean(np.linalg.norm(x - means[index], axis=1)))
    pair = np.linalg.norm(means[:, None] - means[None], axis=-1)        # (K, K)
    inter = float(pair[np.triu_indices(len(labels), 1)].mean())
    return {"intra": intra, "inter": inter, "intra_inter_ratio": intra / inter if inter else None}


def kmeans_nmi(x: np.ndarray, y: np.ndarray, params: dict) -> float:
    """NMI between labels and k-means (k = number of classes, seeded) clusters of x."""
    from sklearn.metrics import normalized_mutual_info_score
    km = fit_kmeans(x, len(np.unique(y)), params["kmeans"]["n_init"], params["kmeans"]["max_iter"],
                    params["seed"])
    return float(normalized_mutual_info_score(y, km.labels_))


def model_metrics(train: dict, cm: np.ndarray, tsne: dict, cam: dict, dense: tuple, classes: list[str],
                  params: dict, where: str) -> dict:
    """One model's comparison metrics from its training metrics, test confusion matrix, t-SNE and
    Grad-CAM metrics and (dense (n, 512), y (n,)) activations; `where` names the metrics file."""
    if "test" not in train or not {"accuracy", "loss"} <= set(train["test"]):
        raise StageError(f"{where}: no test.accuracy / test.loss")
    x, y = dense
    return {
        "test": {"accuracy": float(train["test"]["accuracy"]), "loss": float(train["test"]["loss"])},
        "per_class_accuracy": per_class_accuracy(cm, classes),
        "layers": {layer: {k: tsne.get(layer, {}).get(k) for k in TSNE_KEYS} for layer in ANALYSED_LAYERS},
        "dense": distance_ratio(x, y) | {"kmeans_nmi": kmeans_nmi(x, y, params)},
        "gradcam": {k: cam.get(k) for k in GRADCAM_KEYS},
    }
