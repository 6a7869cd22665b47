"""t-SNE embeddings (openTSNE) and how well they, and the features, separate the classes.

Embeddings: openTSNE with PCA initialisation, seeded, all cores; 2D uses the FFT-accelerated
gradient, 3D Barnes-Hut (openTSNE's FFT method supports at most 2 components). A layer's
2D and 3D embeddings share one affinity computation and one PCA (`embed`); the 3D one runs a
shorter schedule of its own (`tsne.early_exaggeration_iter_3d`, `tsne.n_iter_3d`).
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


def embed(features: np.ndarray, perplexity: float, n_iter: int, seed: int, early_exaggeration_iter: int, *,
          early_exaggeration_iter_3d: int, n_iter_3d: int) -> tuple[dict[int, np.ndarray], dict[str, float]]:
    """2D and 3D openTSNE embeddings of features (n, d) that share their work.

    One affinity object (one kNN graph and perplexity calibration: the MultiscaleMixture that
    openTSNE's TSNE.fit builds itself) and one 3-component PCA serve both. The 2D embedding
    (FFT gradient) starts from the first two PCA components and runs `early_exaggeration_iter`
    + `n_iter` iterations; the 3D one (Barnes-Hut) starts from all three and runs
    `early_exaggeration_iter_3d` + `n_iter_3d`. No schedule has a default here: params.yaml's
    `tsne` section holds them (embed_with_params passes them; docs/results.md gives what the
    shorter schedules cost and keep).
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
    schedule = {2: (early_exaggeration_iter, n_iter), 3: (early_exaggeration_iter_3d, n_iter_3d)}
    embs = {}
    for d, (ee_iter, iters) in schedule.items():
        t0 = time.perf_counter()
        with _quiet_opentsne():  # its warnings would print as stray stderr lines
            emb = TSNE(n_components=d, n_iter=iters, early_exaggeration_iter=ee_iter,
                       negative_gradient_method="fft" if d == 2 else "bh", random_state=seed, n_jobs=-1,
                       verbose=False).fit(affinities=aff, initialization=np.ascontiguousarray(pca[:, :d]))
        seconds[f"{d}d"] = time.perf_counter() - t0
        embs[d] = np.asarray(emb, dtype=np.float32)
    return embs, seconds


def why_not_embeddable(features: np.ndarray) -> str | None:
    """Why openTSNE cannot be given these (n, d) features, or None: non-finite values, or points
    that are all equal (zero variance: its PCA start divides by it, and it may crash the process)."""
    x = np.asarray(features)
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        return f"{int(bad.sum())} of {len(x)} points have non-finite values"
    if len(x) and not np.ptp(x, axis=0).any():
        return f"all {len(x)} points are the same vector (zero variance)"
    return None


def embed_with_params(features: np.ndarray, t: dict, seed: int) -> tuple[dict[int, np.ndarray], dict[str, float]]:
    """embed() at the schedules of params.yaml's `tsne` section `t` (one place maps its keys)."""
    return embed(features, t["perplexity"], t["n_iter"], seed, t["early_exaggeration_iter"],
                 early_exaggeration_iter_3d=t["early_exaggeration_iter_3d"], n_iter_3d=t["n_iter_3d"])


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
