"""Every path the pipeline reads or writes, written once (dvc.yaml names the same files)."""
from pathlib import Path

DATA = Path("data")
MODELS = Path("models")
PLOTS = Path("plots")

SOURCE = DATA / "source.json"       # hash_source: the fingerprint of data.url

# fetch_data
TRAIN = DATA / "train.npz"          # x: (N, S, S, 3) uint8 (S = data.image_size), y: (N,) uint8
VAL = DATA / "val.npz"
TEST = DATA / "test.npz"
CLASSES = DATA / "classes.json"     # the class names, index = label
FETCH_INFO = DATA / "fetch.json"    # source, md5, split sizes

MODEL_NAMES = ("baseline", "center_loss")


def model_file(name: str) -> Path:
    """models/<name>.keras for 'baseline' or 'center_loss'."""
    return MODELS / f"{name}.keras"


def summary_file(name: str) -> Path:
    """models/<name>_summary.txt, the model.summary() text."""
    return MODELS / f"{name}_summary.txt"


def train_dir(name: str) -> Path:
    """plots/train_<name>/: the DVCLive folder of a training stage (metrics.json, curves)."""
    return PLOTS / f"train_{name}"


def metrics_file(folder: Path) -> Path:
    """<folder>/metrics.json: a stage's headline numbers, the DVC metrics `dvc exp show` prints."""
    return folder / "metrics.json"


def details_file(folder: Path) -> Path:
    """<folder>/details.json: every number a stage measured (versioned, not a DVC metric)."""
    return folder / "details.json"


def train_metrics(name: str) -> Path:
    """plots/train_<name>/metrics.json: the `<name>.test` section (accuracy, loss); DVCLive's summary
    while training."""
    return metrics_file(train_dir(name))


def train_details(name: str) -> Path:
    """plots/train_<name>/details.json: DVCLive's summary (last epoch, time to accuracy, `test`), device."""
    return details_file(train_dir(name))


CENTROIDS = MODELS / "kmeans_centroids.npz"         # centroids (10, 512), matched to classes
KMEANS_DIR = PLOTS / "kmeans_centroids"             # metrics.json, details.json


def centers_file(name: str) -> Path:
    """models/<name>_centers.npy: a center-loss trainer's final centres (10, 512) float32."""
    return MODELS / f"{name}_centers.npy"


CENTERS = centers_file("center_loss")


def activations_file(name: str) -> Path:
    """data/activations/<name>.npz: the four layers' (reduced) activations on test images."""
    return DATA / "activations" / f"{name}.npz"


def tsne_embeddings(name: str) -> Path:
    """data/tsne/<name>.npz: each layer's t-SNE coordinates, `<layer>_2d` (n, 2) and `<layer>_3d` (n, 3)."""
    return DATA / "tsne" / f"{name}.npz"


def tsne_dir(name: str) -> Path:
    """plots/tsne/<name>/: 2D points, 3D images, surfaces and metrics of one model."""
    return PLOTS / "tsne" / name


def tsne_points(name: str, layer: str) -> Path:
    """plots/tsne/<name>/2d/<layer>.tsv: 2D t-SNE points, columns x, y, class (class name)."""
    return tsne_dir(name) / "2d" / f"{layer}.tsv"


def tsne_image_3d(name: str, layer: str) -> Path:
    """plots/tsne/<name>/3d/<layer>.png: 3D t-SNE scatter from a few viewing angles."""
    return tsne_dir(name) / "3d" / f"{layer}.png"


def tsne_metrics(name: str) -> Path:
    """plots/tsne/<name>/metrics.json: per-layer 2D kNN accuracy (the headline)."""
    return metrics_file(tsne_dir(name))


def tsne_details(name: str) -> Path:
    """plots/tsne/<name>/details.json: per-layer kNN accuracy, trustworthiness, silhouette."""
    return details_file(tsne_dir(name))


def tsne_surface(name: str, layer: str) -> Path:
    """plots/tsne/<name>/surface/<layer>.png: channel-mean maps of a conv layer as 3D surfaces."""
    return tsne_dir(name) / "surface" / f"{layer}.png"


def gradcam_dir(name: str) -> Path:
    """plots/gradcam/<name>/: heat-map grid and faithfulness metrics of one model."""
    return PLOTS / "gradcam" / name


COMPARE_DIR = PLOTS / "compare"


EXPLORER_DIR = PLOTS / "explorer"                   # index.html, data.js, sprite.jpg
