"""kmeans_centroids: k-means (k = 10) on the baseline's 512-d `dense` features, matched to classes.

Reads params.yaml (seed, batch_size, kmeans.n_init, kmeans.max_iter), models/baseline.keras,
data/train.npz, data/classes.json.
Writes models/kmeans_centroids.npz (centroids (10, 512) float32, row k = the cluster
matched to class k by Hungarian assignment), plots/kmeans_centroids/details.json
(nmi, ari, purity, inertia, centroid_to_class_mean {mean, per_class}) and its headline
plots/kmeans_centroids/metrics.json (kmeans.nmi, kmeans.purity).
"""
import numpy as np

from study import paths
from study.data import class_names, load_split, preprocess
from study.errors import StageError
from study.files import pick, write_metrics, write_npz
from study.model import FEATURE_LAYER
from study.params import load
from study.stage import run_stage

BASELINE = "baseline"
HEADLINE = ("nmi", "purity")    # of metrics.json; details.json has them all


def check_labels(y: np.ndarray, k: int) -> None:
    """Every class 0..k-1 must occur: class means and the matching need all k classes."""
    missing = sorted(set(range(k)) - set(np.unique(y).tolist()))
    if missing:
        raise StageError(f"{paths.TRAIN}: classes {missing} have no training images; "
                         f"k-means needs all {k} classes (raise data.train_size)")


def dense_features(model, x: np.ndarray, batch_size: int) -> np.ndarray:
    """(N, 512) float32 `dense` activations of uint8 images, predicted batch by batch."""
    from study.model import layer_outputs
    features = layer_outputs(model, [FEATURE_LAYER])
    return np.concatenate([
        np.asarray(features(preprocess(x[i:i + batch_size]), training=False))
        for i in range(0, len(x), batch_size)]).astype(np.float32)


def main(params: dict) -> dict:
    """Cluster the baseline's training features; write matched centroids and metrics."""
    from study.kmeans import cluster_metrics, fit_kmeans
    from study.model import load_trained

    x, y = load_split("train")
    classes = class_names()
    check_labels(y, len(classes))
    model = load_trained(BASELINE, x.shape[1], len(classes))
    features = dense_features(model, x, params["batch_size"])        # (N, 512)
    km = fit_kmeans(features, len(classes), params["kmeans"]["n_init"],
                    params["kmeans"]["max_iter"], params["seed"])
    centroids, metrics = cluster_metrics(features, y, km.labels_, km.cluster_centers_,
                                         km.inertia_, classes)
    write_npz(paths.CENTROIDS, centroids=centroids)
    write_metrics(paths.KMEANS_DIR, metrics, pick(metrics, HEADLINE), "kmeans")
    print(f"kmeans: NMI {metrics['nmi']:.4f}, ARI {metrics['ari']:.4f}, purity {metrics['purity']:.4f}")
    return metrics


if __name__ == "__main__":
    run_stage(lambda: main(load()))
