"""explorer: an offline page to explore both models' embeddings of the four layers.

Reads params.yaml (tsne.knn_k: the neighbours a click shows), data/classes.json, data/test.npz
(the sampled images), and per model <name>: data/activations/<name>.npz (`index`, `y` and the
softmax `dense_1`: each model's prediction and confidence), data/tsne/<name>.npz (every layer's
2D and 3D t-SNE coordinates) and plots/tsne/<name>/details.json (the layers' metrics).
Runs no model and no t-SNE. Writes plots/explorer/ as a whole (a temp folder renamed into place):
  index.html   the page (study/explorer.html with study/explorer.js inlined); opens from file://
  data.js      its data, one deterministic JSON assignment
  sprite.jpg   the sampled test images, 32 px each, row-major in sample order
"""

import numpy as np

from study import paths
from study.data import class_names, load_split
from study.errors import StageError
from study.files import atomic_dir, load_npz, read_json
from study.model import ANALYSED_LAYERS, FEATURE_LAYER, OUTPUT_LAYER
from study.params import load
from study.stage import run_stage


def tsne_keys() -> tuple[str, ...]:
    """The arrays of data/tsne/<name>.npz the page shows."""
    return tuple(f"{layer}_{d}d" for layer in ANALYSED_LAYERS for d in (2, 3))


def read_model(name: str) -> dict[str, np.ndarray | dict]:
    """One model's arrays and metrics from the files its stages wrote (one-line errors if missing)."""
    acts = load_npz(paths.activations_file(name), f"extract_activations@{name}", ("index", "y", OUTPUT_LAYER))
    coords = load_npz(paths.tsne_embeddings(name), f"tsne@{name}", ("index", *tsne_keys()))
    if not np.array_equal(coords["index"], acts["index"]):
        raise StageError(f"{paths.tsne_embeddings(name)}: its points are not the test images of "
                         f"{paths.activations_file(name)}; run `dvc repro tsne@{name}`")
    return {"index": acts["index"], "y": acts["y"], "softmax": acts[OUTPUT_LAYER], "coords": coords,
            "metrics": read_json(paths.tsne_details(name), f"tsne@{name}")}


def check_same_points(models: dict[str, dict], y_test: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(index, y) shared by every model: the same test images, labelled as data/test.npz labels
    them, one softmax column per class; else a one-line StageError naming the stale file."""
    first, *others = models
    index, y = models[first]["index"], models[first]["y"]
    for name in others:
        if not np.array_equal(models[name]["index"], index):
            raise StageError(f"{paths.activations_file(name)}: holds other test images than "
                             f"{paths.activations_file(first)}; run `dvc repro extract_activations@{name}`")
    for name, m in models.items():
        stale = index.max(initial=-1) >= len(y_test) or not np.array_equal(y_test[index], m["y"])
        if stale or m["softmax"].shape != (len(index), n_classes):
            raise StageError(f"{paths.activations_file(name)}: does not match data/test.npz and "
                             f"data/classes.json ({n_classes} classes); run `dvc repro extract_activations@{name}`")
    return index, y


def main(params: dict) -> dict:
    """Assemble the page data from the stage outputs on disk and write plots/explorer/; return the data."""
    from study import explorer as ex
    classes = class_names()
    x_test, y_test = load_split("test")
    models = {name: read_model(name) for name in paths.MODEL_NAMES}
    index, y = check_same_points(models, y_test, len(classes))
    data = ex.page_data(classes, index, y,
                        {name: ex.model_data(m["softmax"], m["coords"], m["metrics"], ANALYSED_LAYERS)
                         for name, m in models.items()},
                        ANALYSED_LAYERS, FEATURE_LAYER, params["tsne"]["knn_k"])
    files = {ex.SPRITE: ex.encode_jpeg(ex.sprite_sheet(x_test[index])),
             ex.DATA: ex.data_script(data).encode(),
             ex.PAGE: ex.page_html(ex.TEMPLATE.read_text(encoding="utf8"),
                                   ex.SCRIPT.read_text(encoding="utf8")).encode()}
    with atomic_dir(paths.EXPLORER_DIR) as tmp:
        for file, content in files.items():
            (tmp / file).write_bytes(content)
    sizes = ", ".join(f"{file} {len(content) / 1e6:.2f} MB" for file, content in files.items())
    print(f"wrote {paths.EXPLORER_DIR}/ ({len(index)} test images): {sizes}")
    return data


if __name__ == "__main__":
    run_stage(lambda: main(load()))
