"""extract_activations@<name>: the four analysed layers' activations on stratified test images.

Run as `python -m stages.extract_activations <name>` with <name> baseline or center_loss.
Reads params.yaml (seed, activations.*), models/<name>.keras, data/test.npz.
Writes data/activations/<name>.npz with, for each layer in study.model.ANALYSED_LAYERS,
`<layer>`: (n, d) float32 (conv2d, conv2d_4: PCA-reduced to d = activations.pca_dims;
dense: d = 512; dense_1: d = 10, softmax), `y` (n,) labels, `index` (n,) test-split
indices, and for the conv layers `surface_<layer>`: (surface_images, H, W) channel-mean
maps of the first sampled images, `surface_index` their test-split indices.
"""

from study import paths
from study.data import load_split
from study.files import write_npz
from study.model import ANALYSED_LAYERS
from study.stage import run_model_stage


def main(params: dict, name: str) -> dict[str, float]:
    """Extract and save one model's activations; return each conv layer's PCA explained-variance ratio."""
    from study.activations import extract, sample

    a = params["activations"]
    from study.model import load_trained
    x, y = load_split("test")
    index = sample(y, a["n_samples"], params["seed"])   # sorted (n,) test indices
    import keras
    keras.utils.set_random_seed(params["seed"])
    model = load_trained(name, x.shape[1])
    arrays, explained = extract(model, x[index], ANALYSED_LAYERS, a["batch_size"],
                                a["pca_dims"], a["surface_images"])
    n_surf = min(a["surface_images"], len(index))
    write_npz(paths.activations_file(name), **arrays, y=y[index], index=index,
              surface_index=index[:n_surf])
    for layer, ratio in explained.items():
        print(f"{name}: {layer} PCA to {a['pca_dims']} dims keeps {ratio:.1%} of the variance")
    return explained


if __name__ == "__main__":
    run_model_stage(main)
