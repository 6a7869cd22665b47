"""train_center_loss: the seed CNN, same builder and recipe as the baseline, with center loss.

Loss = cross-entropy + lambda * intra + mu * inter on the `dense` features (study.center_loss);
centres start at the matched k-means centroids and move by Wen et al.'s rule (rate alpha).
center_loss.init = scratch: fresh weights from the same seed as the baseline (the fair
comparison); baseline: fine-tune from models/baseline.keras.

Reads params.yaml (top-level training keys, center_loss.*), data/{train,val,test}.npz,
data/classes.json, models/kmeans_centroids.npz, models/baseline.keras (init = baseline).
Writes models/center_loss.keras (the plain base CNN), models/center_loss_summary.txt,
models/center_loss_centers.npy (final centres (10, 512) float32) and plots/train_center_loss/
(DVCLive: per-epoch train/val loss, ce, intra, inter, accuracy, intra_dist, inter_dist and
learning_rate under plots/metrics/, metrics.json with center_loss.test.accuracy and center_loss.test.loss,
plots/sklearn/confusion_matrix.json).
"""
import numpy as np

from study import paths
from study.data import class_names, load_split
from study.errors import StageError
from study.files import load_npz
from study.params import load
from study.stage import run_stage

NAME = "center_loss"
BASELINE = "baseline"


def load_centroids(n_classes: int, dim: int) -> np.ndarray:
    """The matched k-means centroids (n_classes, dim) float32, checked for shape and finiteness."""
    c = load_npz(paths.CENTROIDS, "kmeans_centroids", ("centroids",))["centroids"].astype(np.float32)
    if c.shape != (n_classes, dim) or not np.isfinite(c).all():
        raise StageError(f"{paths.CENTROIDS}: centroids have shape {c.shape} (or non-finite values); "
                         f"expected finite ({n_classes}, {dim}); rerun kmeans_centroids")
    return c


def init_weights(model, init: str) -> None:
    """init = baseline: copy models/baseline.keras's weights into `model`; scratch: keep fresh ones."""
    if init != BASELINE:
        return
    from study.model import load_trained
    trained = load_trained(BASELINE, model.input_shape[1], model.output_shape[-1],
                           hint=" (center_loss.init = baseline needs it; or set center_loss.init = scratch)")
    path = paths.model_file(BASELINE)
    if [w.shape for w in trained.weights] != [w.shape for w in model.weights]:
        raise StageError(f"{path}: its layers do not match this model (batch_norm = "
                         f"{'batch_normalization' in [l.name for l in model.layers]}?); "
                         f"retrain the baseline with the same batch_norm")
    model.set_weights(trained.get_weights())


def main(params: dict) -> dict:
    """Train the center-loss model, save it (plain CNN) and its centres; return test metrics."""
    from study.center_loss import CenterLossTrainer
    from study.devices import resolve_dtype_policy, strategy
    from study.model import FEATURE_DIM, build_model
    from study.train import set_seed, train_and_evaluate

    cl = params["center_loss"]
    devices = strategy(params["devices"])  # before TensorFlow creates its devices
    splits = {s: load_split(s) for s in ("train", "val", "test")}
    classes = class_names()
    centroids = load_centroids(len(classes), FEATURE_DIM)
    set_seed(params["seed"])  # same seed, same builder: scratch starts from the baseline's init
    with devices.scope():  # the models' variables live on (are mirrored over) the chosen devices
        model = build_model(params["batch_norm"], resolve_dtype_policy(params["dtype_policy"]),
                            len(classes), splits["train"][0].shape[1])  # one unit per class; the images' side
        init_weights(model, cl["init"])
        trainer = CenterLossTrainer(model, centroids, cl["variant"], cl["lambda"], cl["mu"], cl["alpha"],
                                    params["label_smoothing"])
        return train_and_evaluate(NAME, model, params, splits, classes, trainer=trainer,
                                  fresh=cl["init"] != BASELINE)


if __name__ == "__main__":
    run_stage(lambda: main(load()))
