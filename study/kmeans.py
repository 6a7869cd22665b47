"""k-means on features, clusters matched one-to-one to classes, and cluster-quality metrics.

Pure numpy / scikit-learn functions; the kmeans_centroids stage does the I/O.
"""
from __future__ import annotations

import numpy as np


def fit_kmeans(features: np.ndarray, k: int, n_init: int, max_iter: int, seed: int):
    """scikit-learn KMeans (Lloyd's EM iterations, k-means++ init) fitted on (N, D) features."""
    from sklearn.cluster import KMeans
    return KMeans(n_clusters=k, n_init=n_init, max_iter=max_iter, random_state=seed,
                  algorithm="lloyd").fit(features)


def contingency(clusters: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """(k, k) counts: row = cluster, column = class (scikit-learn's confusion matrix over 0..k-1,
    so a cluster or class without points keeps its row or column)."""
    from sklearn.metrics import confusion_matrix
    return confusion_matrix(clusters.astype(int), y.astype(int), labels=np.arange(k)).astype(np.int64)


def match_clusters(table: np.ndarray) -> np.ndarray:
    """Hungarian one-to-one matching maximising agreements: (k,) cluster index of each class."""
    from scipy.optimize import linear_sum_assignment
    rows, cols = linear_sum_assignment(table, maximize=True)  # rows = clusters, cols = classes
    cluster_of_class = np.empty(table.shape[1], dtype=np.int64)
    cluster_of_class[cols] = rows
    return cluster_of_class


def purity(table: np.ndarray) -> float:
    """Fraction of samples in their cluster's majority class (each cluster votes for one class)."""
    return float(table.max(axis=1).sum() / table.sum())


def class_means(features: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """(k, D) mean feature of each class."""
    return np.stack([features[y == j].mean(axis=0) for j in range(k)])


def cluster_metrics(features, y, labels, centroids, inertia, class_names) -> tuple[np.ndarray, dict]:
    """Matched centroids (k, D), row j = class j, and the metrics dict of kmeans_centroids."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
    k = len(class_names)
    table = contingency(labels, y, k)
    matched = centroids[match_clusters(table)]
    dist = np.linalg.norm(matched - class_means(features, y, k), axis=1)  # (k,)
    metrics = {
        "nmi": float(normalized_mutual_info_score(y, labels)),
        "ari": float(adjusted_rand_score(y, labels)),
        "purity": purity(table),
        "inertia": float(inertia),
        "centroid_to_class_mean": {"mean": float(dist.mean()),
                                   "per_class": {n: float(d) for n, d in zip(class_names, dist)}},
    }
    return matched.astype(np.float32), metrics
