"""tsne@<name>: openTSNE embeddings (2D and 3D) of the four analysed layers, with separation metrics.

Run as `python -m stages.tsne <name>` with <name> baseline or center_loss.
Reads params.yaml (seed, tsne.*), data/activations/<name>.npz, data/classes.json.
Writes data/tsne/<name>.npz (float32 coordinates `<layer>_2d` (n, 2) and `<layer>_3d` (n, 3) of
every layer, and `index`, the test-split indices of the n points, for the explorer stage) and
under plots/tsne/<name>/:
  2d/<layer>.tsv       2D t-SNE points, columns x, y, class (class name); `dvc plots show`
                       draws it as a scatter coloured by class (template .dvc/plots/tsne_scatter.json)
  3d/<layer>.png       3D t-SNE scatter from a few viewing angles, class legend
  surface/<layer>.png  conv layers only: channel-mean maps of a few test images as 3D surfaces
  details.json         {"<layer>": {"knn_accuracy_2d", "knn_accuracy_3d", "knn_accuracy_features",
                        "trustworthiness_2d", "silhouette_2d", "silhouette_features"}}
  metrics.json         the headline: {"<name>": {"<layer>": {"knn_accuracy_2d"}}}
"""

import numpy as np

from study import paths
from study.data import class_names
from study.errors import StageError
from study.files import load_npz, pick, save_figure, write_metrics, write_npz, write_text
from study.model import ANALYSED_LAYERS
from study.stage import run_model_stage

HEADLINE = ("knn_accuracy_2d",)    # per layer, of metrics.json; details.json has them all


def points_tsv(emb2: np.ndarray, y: np.ndarray, classes: list[str]) -> str:
    """TSV text with header x, y, class: one row per point of a (n, 2) embedding, class by name."""
    rows = [f"{a:.5g}\t{b:.5g}\t{classes[k]}" for (a, b), k in zip(emb2, y)]
    return "x\ty\tclass\n" + "\n".join(rows) + "\n"


def load_activations(name: str) -> dict[str, np.ndarray]:
    """The arrays extract_activations wrote for this model; fails naming the file if missing or stale."""
    return load_npz(paths.activations_file(name), f"extract_activations@{name}",
                    (*ANALYSED_LAYERS, "y", "index"))


def check_knn_k(k: int, n: int) -> None:
    """kNN needs k neighbours inside each training fold (4/5 of n points)."""
    if k > n // 2:
        raise StageError(f"tsne.knn_k = {k} is not allowed; allowed: <= {n // 2} "
                         f"(half of the {n} points in data/activations)")


def check_embeddable(name: str, arrays: dict) -> None:
    """Every analysed layer's activations can be embedded, else a one-line StageError naming the
    model, the layer and what to do (before any output is written)."""
    from study.tsne import why_not_embeddable
    for layer in ANALYSED_LAYERS:
        why = why_not_embeddable(arrays[layer])
        if why:
            raise StageError(f"{paths.activations_file(name)}: layer {layer} of models/{name}.keras cannot be "
                             f"embedded: {why}; the model has collapsed (see its curves in plots/train_{name}): "
                             f"retrain it with a lower learning_rate or a longer lr_warmup_epochs")


def embed_layer(name: str, layer: str, feats, y, classes, t: dict,
                seed: int) -> tuple[dict[str, float], dict[int, np.ndarray]]:
    """Embed one layer in 2D and 3D, write its tsv and images; return its metrics and its
    embeddings {2: (n, 2), 3: (n, 3)}; log its timings."""
    import time

    from study.tsne import embed_with_params, layer_metrics
    from study.tsne_plots import scatter_3d

    embs, seconds = embed_with_params(feats, t, seed)
    emb2, emb3 = embs[2], embs[3]
    t0 = time.perf_counter()
    write_text(paths.tsne_points(name, layer), points_tsv(emb2, y, classes))
    save_figure(scatter_3d(emb3, y, classes, f"{name}: 3D t-SNE of layer {layer} ({len(y)} test images)"),
                paths.tsne_image_3d(name, layer))
    metrics = layer_metrics(feats, emb2, emb3, y, t["knn_k"], t["trust_samples"], seed)
    seconds["metrics and plots"] = time.perf_counter() - t0
    print(f"{name} {layer} ({feats.shape[1]} dims): " + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()),
          flush=True)
    return metrics, embs


def draw_surfaces(name: str, layer: str, arrays: dict, classes: list[str]) -> None:
    """Save a conv layer's kept channel-mean maps (m, H, W) as 3D surfaces, titled by class and test index."""
    from study.tsne_plots import surfaces
    maps = arrays[f"surface_{layer}"]
    m = len(maps)  # the surface images are the first m sampled images
    labels = [f"{classes[k]} (test image {i})" for k, i in zip(arrays["y"][:m], arrays["index"][:m])]
    save_figure(surfaces(maps, labels, f"{name}: channel-mean output of {layer}"), paths.tsne_surface(name, layer))


def main(params: dict, name: str) -> dict:
    """Embed all four layers of one model; write points, images and metrics; return the metrics."""
    t, seed = params["tsne"], params["seed"]
    arrays, classes = load_activations(name), class_names()
    y = arrays["y"].astype(np.int64)
    check_knn_k(t["knn_k"], len(y))
    check_embeddable(name, arrays)
    metrics, coords = {}, {}
    for layer in ANALYSED_LAYERS:
        print(f"{name} {layer}: t-SNE of {len(y)} points in {arrays[layer].shape[1]} dims ...", flush=True)
        metrics[layer], embs = embed_layer(name, layer, arrays[layer], y, classes, t, seed)
        coords.update({f"{layer}_{d}d": embs[d] for d in (2, 3)})
        print(f"{name} {layer}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics[layer].items()), flush=True)
        if f"surface_{layer}" in arrays:  # conv layers only
            draw_surfaces(name, layer, arrays, classes)
    write_npz(paths.tsne_embeddings(name), **coords, index=arrays["index"])
    write_metrics(paths.tsne_dir(name), metrics, {layer: pick(m, HEADLINE) for layer, m in metrics.items()},
                  name)
    return metrics


if __name__ == "__main__":
    run_model_stage(main)
