"""kmeans_centroids on tiny synthetic data (real entry point): the matched centroids are the k-means
cluster means of the baseline's `dense` features, row j matched to class j; seeded; one-line errors."""
import json
import shutil

import numpy as np
import pytest

from stages import kmeans_centroids
from study import paths
from study.data import load_split
from study.errors import StageError
from study.kmeans import contingency
from study.model import load_trained
from study.params import load


@pytest.fixture
def km_dir(workdir, baseline_dir):
    """`workdir` (same params and data) with the trained baseline model copied in."""
    shutil.copytree(baseline_dir[0] / "models", "models")
    return workdir


def test_centroids_are_the_matched_cluster_means_of_dense_features(km_dir):
    metrics = kmeans_centroids.main(load())
    with np.load(paths.CENTROIDS) as f:
        c = f["centroids"]
    assert c.shape == (10, 512) and c.dtype == np.float32
    x, y = load_split("train")
    feats = kmeans_centroids.dense_features(load_trained("baseline", 32, 10), x, 32).astype(np.float64)  # (200, 512)
    nearest = np.linalg.norm(feats[:, None] - c[None], axis=-1).argmin(1)   # (200,) row of each image
    for j in range(10):  # a k-means fixed point: each centroid is the mean of the images nearest to it
        np.testing.assert_allclose(c[j], feats[nearest == j].mean(axis=0), rtol=1e-4, atol=1e-4)
    # the synthetic classes (a colour and a stripe each) are far apart in the trained features:
    # k-means finds them exactly, and the matching puts class j's cluster on row j
    np.testing.assert_array_equal(contingency(nearest, y, 10), 20 * np.eye(10, dtype=int))
    assert (metrics["nmi"], metrics["ari"], metrics["purity"]) == (1.0, 1.0, 1.0)
    # so each centroid is its class mean: their distances are float32 rounding of the features' scale
    scale = np.linalg.norm(feats, axis=1).mean()
    assert max(metrics["centroid_to_class_mean"]["per_class"].values()) < 1e-6 * scale
    assert json.loads((paths.KMEANS_DIR / "details.json").read_text()) == metrics
    assert json.loads((paths.KMEANS_DIR / "metrics.json").read_text()) == {"kmeans": {"nmi": 1.0, "purity": 1.0}}


def test_same_seed_same_centroids_other_seed_may_differ(km_dir):
    first = kmeans_centroids.main(load())
    c1 = np.load(paths.CENTROIDS)["centroids"]
    assert kmeans_centroids.main(load()) == first
    np.testing.assert_array_equal(np.load(paths.CENTROIDS)["centroids"], c1)


def test_missing_baseline_says_what_to_run(workdir):
    with pytest.raises(StageError, match=r"^models/baseline.keras: not found; run `dvc repro train_baseline` first$"):
        kmeans_centroids.main(workdir)
    assert not paths.CENTROIDS.exists()


def test_kmeans_needs_every_class(workdir):
    x, y = load_split("train")
    keep = y != 3
    np.savez(paths.TRAIN, x=x[keep], y=y[keep])
    with pytest.raises(StageError, match=r"^data/train.npz: classes \[3\] have no training images; "
                                         r"k-means needs all 10 classes \(raise data.train_size\)$"):
        kmeans_centroids.main(workdir)
