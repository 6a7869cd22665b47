"""train_baseline: the seed CNN trained with cross-entropy.

Reads params.yaml (top-level training keys), data/{train,val,test}.npz, data/classes.json.
Writes models/baseline.keras, models/baseline_summary.txt and plots/train_baseline/
(DVCLive: per-epoch train/val loss and accuracy and learning_rate under plots/metrics/,
metrics.json with baseline.test.accuracy and baseline.test.loss, plots/sklearn/confusion_matrix.json).
"""
from study.data import class_names, load_split
from study.params import load
from study.stage import run_stage

NAME = "baseline"


def main(params: dict) -> dict:
    """Train the baseline and return its test metrics."""
    from study.devices import resolve_dtype_policy, strategy
    from study.model import build_model
    from study.train import set_seed, train_and_evaluate

    devices = strategy(params["devices"])  # before TensorFlow creates its devices
    splits = {s: load_split(s) for s in ("train", "val", "test")}
    classes = class_names()
    set_seed(params["seed"])
    with devices.scope():  # the model's variables live on (are mirrored over) the chosen devices
        model = build_model(params["batch_norm"], resolve_dtype_policy(params["dtype_policy"]),
                            len(classes), splits["train"][0].shape[1])  # one unit per class; the images' side
        return train_and_evaluate(NAME, model, params, splits, classes)


if __name__ == "__main__":
    run_stage(lambda: main(load()))
