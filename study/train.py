"""The one training recipe both models use (train_baseline and train_center_loss).

`train_and_evaluate()` seeds everything, builds the tf.data pipelines, compiles
with the params' optimizer and schedule, fits on the train split while
monitoring the validation split, evaluates the test split once at the end, and
writes the model, its summary and the DVCLive folder (curves, metrics.json with
a `test` section, test confusion matrix) atomically.
"""
from __future__ import annotations

import math
import os
import shutil

import numpy as np

from study import paths
from study.data import preprocess
from study.io import StageError, atomic_path, write_npy

AUTOTUNE = -1  # tf.data.AUTOTUNE without importing tensorflow at module import
ROTATION_DEGREES = 15
SGD_MOMENTUM = 0.9


def set_seed(seed: int) -> None:
    """Seed Python, numpy, TF and Keras, and make TF ops deterministic on this device."""
    import keras
    import tensorflow as tf
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def lr_for_epoch(epoch: int, params: dict) -> float:
    """Learning rate of a 0-based epoch under params' lr_schedule (none | step | cosine)."""
    lr, schedule = params["learning_rate"], params["lr_schedule"]
    if schedule == "step":
        return lr * params["lr_step_factor"] ** (epoch // params["lr_step_epochs"])
    if schedule == "cosine":
        return 0.5 * lr * (1 + math.cos(math.pi * epoch / params["epochs"]))
    return lr


def make_optimizer(params: dict):
    """adam | sgd (momentum 0.9, Nesterov) | rmsprop at params' learning_rate."""
    import keras
    lr, name = params["learning_rate"], params["optimizer"]
    if name == "sgd":
        return keras.optimizers.SGD(lr, momentum=SGD_MOMENTUM, nesterov=True)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(lr)
    return keras.optimizers.Adam(lr)


def make_dataset(x: np.ndarray, y: np.ndarray, batch_size: int, *, shuffle: bool = False,
                 augment: bool = False, seed: int = 0):
    """A tf.data pipeline of (float images, labels); shuffling and augmentation in the graph."""
    import keras
    import tensorflow as tf
    ds = tf.data.Dataset.from_tensor_slices((x, y.astype("int32")))
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(lambda a, b: (preprocess(a), b), num_parallel_calls=AUTOTUNE)
    if augment:
        aug = keras.Sequential([
            keras.layers.RandomRotation(ROTATION_DEGREES / 360, fill_mode="reflect", seed=seed),
            keras.layers.RandomFlip("horizontal", seed=seed + 1),
        ], name="augment")
        ds = ds.map(lambda a, b: (aug(a, training=True), b), num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


def _callbacks(params, live):
    import keras

    class LogToLive(keras.callbacks.Callback):
        """Per epoch: train/<metric>, val/<metric> and learning_rate to DVCLive."""

        def on_epoch_end(self, epoch, logs=None):
            for key, value in (logs or {}).items():
                if key == "learning_rate":
                    live.log_metric("learning_rate", float(value))
                elif key.startswith("val_"):
                    live.log_metric(f"val/{key[4:]}", float(value))
                else:
                    live.log_metric(f"train/{key}", float(value))
            live.next_step()

    class StopOnNaN(keras.callbacks.Callback):
        """A NaN or infinite loss stops training with a message saying what to change."""

        def on_train_batch_end(self, batch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                raise StageError(f"training loss became {float(loss)} at epoch {self.epoch + 1}, "
                                 f"batch {batch + 1}; lower learning_rate "
                                 f"(now {params['learning_rate']}) or center_loss weights")

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

    scheduler = keras.callbacks.LearningRateScheduler(lambda e, _lr: lr_for_epoch(e, params))
    return [scheduler, StopOnNaN(), LogToLive()]


def evaluate_test(model, x: np.ndarray, y: np.ndarray, batch_size: int) -> dict:
    """Test accuracy, cross-entropy and predictions of a model that outputs probabilities."""
    probs = model.predict(preprocess(x), batch_size=batch_size, verbose=0)
    pred = probs.argmax(1)
    p_true = np.clip(probs[np.arange(len(y)), y.astype(int)], 1e-7, 1.0)
    return {"accuracy": float((pred == y).mean()), "loss": float(-np.log(p_true).mean()),
            "pred": pred}


def train_and_evaluate(name: str, model, params: dict, splits: dict, classes: list[str], trainer=None) -> dict:
    """Fit `trainer` (default: `model`), test `model` once, and write the stage's outputs, each
    atomically: models/<name>.keras, models/<name>_summary.txt, plots/train_<name>/ (DVCLive)
    and, for a trainer that keeps class centres (center loss), models/<name>_centers.npy.

    `trainer` is a keras.Model that wraps `model` with extra loss terms (center loss).
    Returns the test metrics.
    """
    import keras
    from dvclive import Live
    from study.model import summary_text

    summary = summary_text(model)  # before compile: no optimizer variables in the counts
    trainer = trainer or model
    trainer.compile(optimizer=make_optimizer(params), loss="sparse_categorical_crossentropy",
                    metrics=["accuracy"], jit_compile=False)  # XLA is ~3x slower on CPU here
    (xtr, ytr), (xva, yva), (xte, yte) = splits["train"], splits["val"], splits["test"]
    seed, bs = params["seed"], params["batch_size"]
    live_dir = paths.train_dir(name)
    tmp_dir = live_dir.with_name(f".{live_dir.name}.tmp")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    try:
        with Live(str(tmp_dir), dvcyaml=None, save_dvc_exp=False, report=None) as live:
            trainer.fit(make_dataset(xtr, ytr, bs, shuffle=True, augment=params["augment"], seed=seed),
                        validation_data=make_dataset(xva, yva, bs), epochs=params["epochs"],
                        callbacks=_callbacks(params, live), verbose=2,
                        shuffle=False)  # the dataset reshuffles itself, seeded, each epoch
            test = evaluate_test(model, xte, yte, bs)
            live.summary["test"] = {"accuracy": test["accuracy"], "loss": test["loss"]}
            live.log_sklearn_plot("confusion_matrix", [classes[i] for i in yte],
                                  [classes[i] for i in test["pred"]], name="confusion_matrix.json")
        with atomic_path(paths.model_file(name)) as tmp:
            keras.saving.save_model(model, tmp)
        with atomic_path(paths.summary_file(name)) as tmp:
            tmp.write_text(summary)
        if hasattr(trainer, "centers"):
            write_npy(paths.centers_file(name), np.asarray(trainer.centers, np.float32))
        shutil.rmtree(live_dir, ignore_errors=True)
        os.replace(tmp_dir, live_dir)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    print(f"{name}: test accuracy {test['accuracy']:.4f}, test loss {test['loss']:.4f}")
    return test
