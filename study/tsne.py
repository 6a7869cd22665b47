"""t-SNE embeddings (openTSNE) and how well they, and the features, separate the classes.

Embeddings: openTSNE with PCA initialisation, seeded, all cores; 2D uses the FFT-accelerated
gradient, 3D Barnes-Hut (openTSNE's FFT method supports at most 2 components).
Metrics (all in [0, 1] except silhouette in [-1, 1]; higher = classes better separated):
- kNN accuracy: KNeighborsClassifier(k) scored by stratified, shuffled (seeded) 5-fold
  cross-validation, i.e. each point is classified by its k nearest neighbours in the
  other 4/5 of the points (not leave-one-out, which is 5x costlier for the same answer).
- trustworthiness (scikit-learn, n_neighbors = k): how far an embedding's nearest
  neighbours are also near in the features; on a seeded stratified subsample because
  it builds an (m, m) distance matrix.
- silhouette with the true class labels, Euclidean.
"""
from __future__ import annotations

import numpy as np

from study.data import stratified_subset

N_FOLDS = 5


def tsne(features: np.ndarray, n_components: int, perplexity: float, n_iter: int, seed: int,
         early_exaggeration_iter: int = 250) -> np.ndarray:
    """openTSNE embedding (n, n_components) float32 of features (n, d); FFT in 2D, Barnes-Hut in 3D."""
    from openTSNE import TSNE
    method = "fft" if n_components <= 2 else "bh"
    emb = TSNE(n_components=n_components, perplexity=perplexity, n_iter=n_iter,
               early_exaggeration_iter=early_exaggeration_iter,
               initialization="pca", negative_gradient_method=method,
               random_state=seed, n_jobs=-1, verbose=False).fit(np.asarray(features, np.float64))
    return np.asarray(emb, dtype=np.float32)


def knn_accuracy(x: np.ndarray, y: np.ndarray, k: int, seed: int) -> float:
    """Mean accuracy of a k-nearest-neighbour classifier under seeded stratified 5-fold CV."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier
    counts = np.bincount(y)
    folds = min(N_FOLDS, int(counts[counts > 0].min()))  # a class may hold fewer than 5 points in tiny runs
    cv = StratifiedKFold(n_splits=max(2, folds), shuffle=True, random_state=seed)
    scores = cross_val_score(KNeighborsClassifier(n_neighbors=k), x, y, cv=cv)
    return float(scores.mean())


def trustworthiness(x: np.ndarray, emb: np.ndarray, y: np.ndarray, k: int, n_max: int, seed: int) -> float:
    """scikit-learn trustworthiness of emb w.r.t. x on a seeded stratified subsample of n_max points."""
    from sklearn.manifold import trustworthiness as tw
    idx = stratified_subset(y, n_max, seed, "tsne.trust_samples")
    k = min(k, (len(idx) - 1) // 2)  # scikit-learn requires n_neighbors < n_samples / 2
    return float(tw(x[idx], emb[idx], n_neighbors=k))


def silhouette(x: np.ndarray, y: np.ndarray) -> float:
    """Silhouette score of the true labels in x (Euclidean), in [-1, 1]."""
    from sklearn.metrics import silhouette_score
    return float(silhouette_score(x, y))


def layer_metrics(features, emb2, emb3, y, k: int, trust_samples: int, seed: int) -> dict[str, float]:
    """The per-layer metrics of tsne/<name>/metrics.json."""
    return {
        "knn_accuracy_2d": knn_accuracy(emb2, y, k, seed),
        "knn_accuracy_3d": knn_accuracy(emb3, y, k, seed),
        "knn_accuracy_features": knn_accuracy(features, y, k, seed),
        "trustworthiness_2d": trustworthiness(features, emb2, y, k, trust_samples, seed),
        "silhouette_2d": silhouette(emb2, y),
        "silhouette_features": silhouette(features, y),
    }
