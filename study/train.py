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
CROP_PAD = 4          # crop_flip: the largest shift in pixels (pad 4 + random 32x32 crop)
ONECYCLE_DIV = 25     # onecycle starts at learning_rate / 25 (PyTorch OneCycleLR's div_factor)
# Time to accuracy: when val accuracy first reaches these (keys without dots: DVC splits keys at dots)
VAL_THRESHOLDS = {"0_80": 0.80, "0_85": 0.85, "0_864": 0.864}
SGD_MOMENTUM = 0.9


def set_seed(seed: int) -> None:
    """Seed Python, numpy, TF and Keras, and make TF ops deterministic on this device."""
    import keras
    import tensorflow as tf
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def lr_for_epoch(epoch: int, params: dict) -> float:
    """Learning rate of a 0-based epoch under params' per-epoch lr_schedule (none | step | cosine)."""
    lr, schedule = params["learning_rate"], params["lr_schedule"]
    if schedule == "step":
        return lr * params["lr_step_factor"] ** (epoch // params["lr_step_epochs"])
    if schedule == "cosine":
        return 0.5 * lr * (1 + math.cos(math.pi * epoch / params["epochs"]))
    return lr


def onecycle(params: dict, steps_per_epoch: int):
    """The per-step one-cycle schedule: linear warm-up from learning_rate / ONECYCLE_DIV to
    learning_rate over lr_warmup_epochs, then cosine to 0 at the last step (Keras CosineDecay)."""
    import keras
    lr = params["learning_rate"]
    warmup = round(params["lr_warmup_epochs"] * steps_per_epoch)
    total = params["epochs"] * steps_per_epoch
    if not warmup:
        return keras.optimizers.schedules.CosineDecay(lr, decay_steps=total, alpha=0.0)
    return keras.optimizers.schedules.CosineDecay(lr / ONECYCLE_DIV, decay_steps=max(total - warmup, 1),
                                                  alpha=0.0, warmup_target=lr, warmup_steps=warmup)


def make_optimizer(params: dict, steps_per_epoch: int):
    """adam | sgd (momentum 0.9, Nesterov) | rmsprop at params' learning rate (a per-step
    schedule for onecycle), with decoupled weight decay on kernels (not biases, not batch norm)."""
    import keras
    name = params["optimizer"]
    lr = onecycle(params, steps_per_epoch) if params["lr_schedule"] == "onecycle" else params["learning_rate"]
    kw = {"weight_decay": params["weight_decay"]} if params["weight_decay"] else {}
    if name == "sgd":
        opt = keras.optimizers.SGD(lr, momentum=SGD_MOMENTUM, nesterov=True, **kw)
    elif name == "rmsprop":
        opt = keras.optimizers.RMSprop(lr, **kw)
    else:
        opt = keras.optimizers.Adam(lr, **kw)
    if kw:
        opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return opt


def cross_entropy(label_smoothing: float):
    """The training loss on (int labels, probabilities): sparse cross-entropy, or with
    label_smoothing > 0 cross-entropy against one-hot labels smoothed towards uniform."""
    import keras
    if not label_smoothing:
        return keras.losses.sparse_categorical_crossentropy

    def smoothed_cross_entropy(y, probs):
        onehot = keras.ops.one_hot(keras.ops.cast(keras.ops.reshape(y, (-1,)), "int32"), probs.shape[-1])
        return keras.losses.categorical_crossentropy(onehot, probs, label_smoothing=label_smoothing)
    return smoothed_cross_entropy


def augmenter(kind: str, seed: int):
    """The augmentation of params' `augment` as a Keras Sequential on image batches (None for none):
    rotate_flip (the seed's variant d) or crop_flip (shift by up to CROP_PAD px, reflected, + flip)."""
    import keras
    if kind == "none":
        return None
    first = keras.layers.RandomRotation(ROTATION_DEGREES / 360, fill_mode="reflect", seed=seed) \
        if kind == "rotate_flip" else \
        keras.layers.RandomTranslation(CROP_PAD / 32, CROP_PAD / 32, fill_mode="reflect",
                                       interpolation="nearest", seed=seed)
    return keras.Sequential([first, keras.layers.RandomFlip("horizontal", seed=seed + 1)], name="augment")


def make_dataset(x: np.ndarray, y: np.ndarray, batch_size: int, *, shuffle: bool = False,
                 augment: str = "none", seed: int = 0):
    """A tf.data pipeline of (float images, labels); shuffling and augmentation in the graph."""
    import tensorflow as tf
    ds = tf.data.Dataset.from_tensor_slices((x, y.astype("int32")))
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(lambda a, b: (preprocess(a), b), num_parallel_calls=AUTOTUNE)
    aug = augmenter(augment, seed)
    if aug is not None:
        ds = ds.map(lambda a, b: (aug(a, training=True), b), num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


def _callbacks(params, live, progress: dict):
    """Callbacks of a fit: the per-epoch schedule, NaN stop and DVCLive logging. `progress`
    collects the wall time (s) at which val accuracy first reached each of VAL_THRESHOLDS."""
    import time

    import keras

    class LogToLive(keras.callbacks.Callback):
        """Per epoch: train/<metric>, val/<metric>, the epoch's (first step's) learning_rate and
        elapsed_s (wall time since fit began, validation included) to DVCLive."""

        def on_train_begin(self, logs=None):
            self.start = time.perf_counter()

        def on_epoch_begin(self, epoch, logs=None):
            self.lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

        def on_epoch_end(self, epoch, logs=None):
            elapsed = time.perf_counter() - self.start
            live.log_metric("learning_rate", self.lr)
            for key, value in (logs or {}).items():
                if key == "learning_rate":
                    continue
                live.log_metric(f"val/{key[4:]}" if key.startswith("val_") else f"train/{key}", float(value))
            live.log_metric("elapsed_s", round(elapsed, 1))
            val_acc = (logs or {}).get("val_accuracy")
            for key, t in VAL_THRESHOLDS.items():
                if val_acc is not None and val_acc >= t and key not in progress:
                    progress[key] = {"epoch": epoch + 1, "seconds": round(elapsed, 1)}
                    print(f"val accuracy {val_acc:.4f} >= {t} at epoch {epoch + 1}, {elapsed / 60:.1f} min")
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

    callbacks = [StopOnNaN(), LogToLive()]
    if params["lr_schedule"] != "onecycle":  # onecycle is a per-step schedule inside the optimizer
        callbacks.insert(0, keras.callbacks.LearningRateScheduler(lambda e, _lr: lr_for_epoch(e, params)))
    return callbacks


def evaluate_test(model, x: np.ndarray, y: np.ndarray, batch_size: int, tta: str = "none") -> dict:
    """Test accuracy, cross-entropy and predictions of a model that outputs probabilities;
    tta = flip averages the probabilities of each image and its mirror image."""
    images = preprocess(x)
    probs = model.predict(images, batch_size=batch_size, verbose=0)
    if tta == "flip":
        probs = (probs + model.predict(images[:, :, ::-1], batch_size=batch_size, verbose=0)) / 2
    pred = probs.argmax(1)
    p_true = np.clip(probs[np.arange(len(y)), y.astype(int)], 1e-7, 1.0)
    return {"accuracy": float((pred == y).mean()), "loss": float(-np.log(p_true).mean()),
            "pred": pred}


def compile_model(trainer, params: dict, steps_per_epoch: int) -> None:
    """Compile with params' optimizer, schedule, weight decay and loss (label smoothing)."""
    trainer.compile(optimizer=make_optimizer(params, steps_per_epoch), loss=cross_entropy(params["label_smoothing"]),
                    metrics=["accuracy"], jit_compile=False)  # XLA is ~3x slower on CPU here


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
    (xtr, ytr), (xva, yva), (xte, yte) = splits["train"], splits["val"], splits["test"]
    seed, bs = params["seed"], params["batch_size"]
    compile_model(trainer, params, math.ceil(len(xtr) / bs))
    progress = {}
    live_dir = paths.train_dir(name)
    tmp_dir = live_dir.with_name(f".{live_dir.name}.tmp")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    try:
        with Live(str(tmp_dir), dvcyaml=None, save_dvc_exp=False, report=None) as live:
            trainer.fit(make_dataset(xtr, ytr, bs, shuffle=True, augment=params["augment"], seed=seed),
                        validation_data=make_dataset(xva, yva, bs), epochs=params["epochs"],
                        callbacks=_callbacks(params, live, progress), verbose=2,
                        shuffle=False)  # the dataset reshuffles itself, seeded, each epoch
            test = evaluate_test(model, xte, yte, bs, params["tta"])
            live.summary["test"] = {"accuracy": test["accuracy"], "loss": test["loss"]}
            live.summary["time_to_val_accuracy"] = {k: progress.get(k) for k in VAL_THRESHOLDS}
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
