"""study.kmeans: k-means on separated blobs, Hungarian matching, cluster metrics."""
import numpy as np
import pytest

from study import kmeans

K = 10
NAMES = [f"class{j}" for j in range(K)]


def blobs(n_per_class=30, dim=16, seed=0, spread=0.1):
    """Well-separated Gaussian blobs, class j around 10 * e_j; returns features, labels, means."""
    rng = np.random.default_rng(seed)
    means = 10.0 * np.eye(K, dim)
    y = np.repeat(np.arange(K), n_per_class)
    x = means[y] + rng.normal(0, spread, size=(len(y), dim))
    return x.astype(np.float32), y, means


def test_contingency_counts():
    table = kmeans.contingency(np.array([0, 0, 1, 2, 2, 2]), np.array([1, 1, 0, 2, 2, 0]), 3)
    np.testing.assert_array_equal(table, [[0, 2, 0], [1, 0, 0], [1, 0, 2]])
    empty = kmeans.contingency(np.array([0, 0]), np.array([2, 2]), 4)        # clusters/classes without points
    assert empty.shape == (4, 4) and empty[0, 2] == 2 and empty.sum() == 2
    assert kmeans.purity(table) == pytest.approx((2 + 1 + 2) / 6)


def test_match_recovers_known_permutation():
    perm = np.random.default_rng(1).permutation(K)       # cluster perm[j] holds class j
    y = np.repeat(np.arange(K), 5)
    table = kmeans.contingency(perm[y], y, K)
    np.testing.assert_array_equal(kmeans.match_clusters(table), perm)


def test_match_is_one_to_one_when_greedy_would_collide():
    # cluster 0 is the majority of both classes 0 and 1; Hungarian gives class 0 -> 1, class 1 -> 0
    table = np.array([[5, 4], [4, 0]])
    np.testing.assert_array_equal(kmeans.match_clusters(table), [1, 0])


def test_kmeans_on_blobs_recovers_classes():
    x, y, means = blobs()
    km = kmeans.fit_kmeans(x, K, n_init=3, max_iter=100, seed=0)
    matched, metrics = kmeans.cluster_metrics(x, y, km.labels_, km.cluster_centers_, km.inertia_, NAMES)
    assert metrics["nmi"] == pytest.approx(1.0)
    assert metrics["ari"] == pytest.approx(1.0)
    assert metrics["purity"] == 1.0
    assert matched.shape == (K, 16) and matched.dtype == np.float32
    # row j is class j's centroid: it sits at class j's mean (exactly, since clusters = classes)
    np.testing.assert_allclose(matched, kmeans.class_means(x, y, K), atol=1e-4)
    np.testing.assert_allclose(matched, means, atol=0.1)
    assert metrics["centroid_to_class_mean"]["mean"] < 1e-4
    assert list(metrics["centroid_to_class_mean"]["per_class"]) == NAMES
    # inertia = sum of squared distances to the own centroid (noise 0.1 per dim, 16 dims, 300 points)
    assert metrics["inertia"] == pytest.approx(((x - matched[y]) ** 2).sum(), rel=1e-3)
    assert 0.5 * 300 * 16 * 0.01 < metrics["inertia"] < 1.5 * 300 * 16 * 0.01


def test_kmeans_is_seeded():
    x, _, _ = blobs(spread=5.0)   # overlapping blobs: the result depends on the init
    a = kmeans.fit_kmeans(x, K, n_init=1, max_iter=50, seed=3)
    b = kmeans.fit_kmeans(x, K, n_init=1, max_iter=50, seed=3)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)


def test_metrics_on_mixed_clusters():
    # two classes, clusters mixed 3:1 -> purity 0.75, centroid distance by hand
    x = np.array([[0.], [0.], [0.], [4.], [4.], [4.], [4.], [0.]], np.float32)
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    centroids = np.array([[0.], [4.]], np.float32)
    matched, m = kmeans.cluster_metrics(x, y, labels, centroids, 0.0, ["a", "b"])
    assert m["purity"] == pytest.approx(0.75)
    np.testing.assert_array_equal(matched, centroids)
    # class means: a = 1.0, b = 3.0 -> distances 1 and 1
    assert m["centroid_to_class_mean"]["per_class"] == {"a": pytest.approx(1.0), "b": pytest.approx(1.0)}
    # contingency [[3, 1], [1, 3]]: MI = 0.75 ln 1.5 - 0.25 ln 2 nats, both entropies ln 2;
    # ARI = (6 - 12 * 12 / 28) / (12 - 12 * 12 / 28) = 0.125 (pairs agreeing vs chance)
    assert m["nmi"] == pytest.approx((0.75 * np.log(1.5) - 0.25 * np.log(2)) / np.log(2))
    assert m["ari"] == pytest.approx(0.125)
