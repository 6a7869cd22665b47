"""t-SNE embeddings (openTSNE) and how well they, and the features, separate the classes.

Embeddings: openTSNE with PCA initialisation, seeded, all cores; 2D uses the FFT-accelerated
gradient, 3D Barnes-Hut (openTSNE's FFT method supports at most 2 components). A layer's
2D and 3D embeddings share one affinity computation and one PCA, and the 3D one starts from
the finished 2D layout (`embed`).
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

import contextlib
import logging
import time

import numpy as np

from study.data import stratified_subset

N_FOLDS = 5
Z_SCALE = 0.1  # the 3D start: the 2D layout, with a third axis this fraction of its spread


def embed(features: np.ndarray, perplexity: float, n_iter: int, seed: int,
          early_exaggeration_iter: int = 250) -> tuple[dict[int, np.ndarray], dict[str, float]]:
    """2D and 3D openTSNE embeddings of features (n, d) that share their work.

    One affinity object (one kNN graph and perplexity calibration: the MultiscaleMixture that
    openTSNE's TSNE.fit builds itself) and one 3-component PCA serve both. The 2D embedding
    (FFT gradient) starts from the first two PCA components and runs the usual early-exaggeration
    and `n_iter` phases. The 3D embedding (Barnes-Hut) starts from the finished 2D layout, lifted
    into the third dimension by the third PCA component (spread Z_SCALE of the layout's), and runs
    the `n_iter` phase only: the clusters early exaggeration forms are formed once, in 2D.
    Returns ({2: (n, 2), 3: (n, 3)} float32, wall seconds of "affinities" (kNN graph,
    calibration and PCA), "2d" and "3d" (optimisation)).
    """
    from openTSNE import TSNE, affinity, initialization
    x = np.asarray(features, np.float64)
    t0 = time.perf_counter()
    aff = affinity.MultiscaleMixture(x, perplexity, method="auto", metric="euclidean",
                                     n_jobs=-1, random_state=seed, verbose=False)
    pca = initialization.pca(x, n_components=3, random_state=seed)
    seconds = {"affinities": time.perf_counter() - t0}

    def fit(n_components, init, ee_iter):
        t0 = time.perf_counter()
        with _quiet_opentsne():  # it warns of any start wider than 1e-4, as the 2D layout is
            emb = TSNE(n_components=n_components, n_iter=n_iter, early_exaggeration_iter=ee_iter,
                       negative_gradient_method="fft" if n_components == 2 else "bh",
                       random_state=seed, n_jobs=-1, verbose=False).fit(affinities=aff, initialization=init)
        seconds[f"{n_components}d"] = time.perf_counter() - t0
        return np.asarray(emb, dtype=np.float64)

    emb2 = fit(2, np.ascontiguousarray(pca[:, :2]), early_exaggeration_iter)
    z = pca[:, 2] * (Z_SCALE * emb2[:, 0].std() / max(pca[:, 2].std(), 1e-12))
    emb3 = fit(3, np.column_stack([emb2, z]), 0)
    return {2: emb2.astype(np.float32), 3: emb3.astype(np.float32)}, seconds


@contextlib.contextmanager
def _quiet_opentsne():
    """openTSNE's warnings off (they would print as stray stderr lines) for the block."""
    log = logging.getLogger("openTSNE")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


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
