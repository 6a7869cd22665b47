"""The one training recipe both models use (train_baseline and train_center_loss).

`train_and_evaluate()` seeds everything, builds the tf.data pipelines, compiles
with the params' optimizer and schedule, fits on the train split while
monitoring the validation split, evaluates the test split once at the end, and
writes the model, its summary and the DVCLive folder (curves, metrics.json with
a `test` section, test confusion matrix) atomically.
"""
from __future__ import annotations

import math
import numpy as np

from study import paths
from study.data import preprocess
from study.io import StageError, atomic_path, write_metrics, write_npy

AUTOTUNE = -1  # tf.data.AUTOTUNE without importing tensorflow at module import
ROTATION_DEGREES = 15
CROP_PAD = 4          # crop_flip: the largest shift in pixels (pad 4 + random 32x32 crop)
ONECYCLE_DIV = 25     # onecycle starts at learning_rate / 25 (PyTorch OneCycleLR's div_factor)
# Time to accuracy: when val accuracy first reaches these (keys without dots: DVC splits keys at dots)
VAL_THRESHOLDS = {"0_80": 0.80, "0_85": 0.85, "0_864": 0.864}
SGD_MOMENTUM = 0.9
MIN_STEPS = 1_000     # fewer optimizer steps than this: the network's predictions tend to collapse (docs/experiments.md)
CHANCE_P = 0.01       # test accuracy not above chance at this significance: the training did not learn


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


def warmup_epochs(params: dict) -> float:
    """The one-cycle warm-up in epochs: lr_warmup_epochs, at most half of the training (so the
    defaults hold for any `epochs`, down to a one-epoch smoke run)."""
    return min(params["lr_warmup_epochs"], params["epochs"] / 2)


def onecycle(params: dict, steps_per_epoch: int):
    """The per-step one-cycle schedule: linear warm-up from learning_rate / ONECYCLE_DIV to
    learning_rate over warmup_epochs(), then cosine to 0 at the last step (Keras CosineDecay)."""
    import keras
    lr = params["learning_rate"]
    warmup = round(warmup_epochs(params) * steps_per_epoch)
    total = params["epochs"] * steps_per_epoch
    if not warmup:
        return keras.optimizers.schedules.CosineDecay(lr, decay_steps=total, alpha=0.0)
    return keras.optimizers.schedules.CosineDecay(lr / ONECYCLE_DIV, decay_steps=max(total - warmup, 1),
                                                  alpha=0.0, warmup_target=lr, warmup_steps=warmup)


def make_optimizer(params: dict, steps_per_epoch: int):
    """adam | sgd (momentum 0.9, Nesterov) | rmsprop at params' learning rate (a per-step
    schedule for onecycle), with decoupled weight decay on kernels (not biases, not batch norm) and,
    with ema_momentum > 0, Keras's weight EMA (the fit ends with the averaged weights)."""
    import keras
    name = params["optimizer"]
    lr = onecycle(params, steps_per_epoch) if params["lr_schedule"] == "onecycle" else params["learning_rate"]
    kw = {"weight_decay": params["weight_decay"]} if params["weight_decay"] else {}
    ema = {"use_ema": True, "ema_momentum": params["ema_momentum"]} if params["ema_momentum"] else {}
    if name == "sgd":
        opt = keras.optimizers.SGD(lr, momentum=SGD_MOMENTUM, nesterov=True, **kw, **ema)
    elif name == "rmsprop":
        opt = keras.optimizers.RMSprop(lr, **kw, **ema)
    else:
        opt = keras.optimizers.Adam(lr, **kw, **ema)
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


def epoch_orders(n: int, epochs: int, seed: int) -> np.ndarray:
    """(epochs, n): the shuffled order of the n training images in each epoch, a function of
    (seed, epoch) only, so a resumed training sees the same batches as an uninterrupted one."""
    return np.stack([np.random.default_rng([seed, epoch]).permutation(n) for epoch in range(epochs)])


def random_shift(images, pad: int, seed):
    """Shift each image of a (B, H, W, C) batch by a random whole number of pixels in [-pad, pad]
    along each axis, filling from the reflected border (pad, then crop at a random offset)."""
    import tensorflow as tf
    h, w = images.shape[1], images.shape[2]
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")   # (B, H+2p, W+2p, C)
    offset = tf.random.stateless_uniform([tf.shape(images)[0], 2], seed, 0, 2 * pad + 1, dtype=tf.int32)
    rows = offset[:, :1] + tf.range(h)[None]                                                # (B, H)
    cols = offset[:, 1:] + tf.range(w)[None]                                                # (B, W)
    return tf.gather(tf.gather(padded, rows, axis=1, batch_dims=1), cols, axis=2, batch_dims=1)


def random_rotate(images, degrees: float, seed):
    """Rotate each image of a (B, H, W, C) batch about its centre by a random angle in
    [-degrees, degrees] (bilinear, reflected border), as keras.layers.RandomRotation does."""
    import keras
    import tensorflow as tf
    h, w = images.shape[1], images.shape[2]
    angle = tf.random.stateless_uniform([tf.shape(images)[0], 1], seed, -degrees, degrees) * (math.pi / 180)
    cos, sin = tf.cos(angle), tf.sin(angle)                                                 # (B, 1) each
    x_off = ((w - 1) - (cos * (w - 1) - sin * (h - 1))) / 2
    y_off = ((h - 1) - (sin * (w - 1) + cos * (h - 1))) / 2
    transform = tf.concat([cos, -sin, x_off, sin, cos, y_off, tf.zeros_like(cos), tf.zeros_like(cos)], axis=1)
    return keras.ops.image.affine_transform(images, transform, interpolation="bilinear", fill_mode="reflect")


def augment_batch(images, kind: str, seed, flip=None):
    """params' `augment` on a float image batch, drawn from a (2,) stateless seed: rotate_flip
    (+-ROTATION_DEGREES, the original study's variant d) or crop_flip (shift by up to CROP_PAD px),
    then a horizontal flip of each image with probability 1/2, or of the images where the (B,)
    bool `flip` is true."""
    import tensorflow as tf
    move_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    moved = random_rotate(images, ROTATION_DEGREES, move_seed) if kind == "rotate_flip" \
        else random_shift(images, CROP_PAD, move_seed)
    if flip is None:
        flip = tf.random.stateless_uniform([tf.shape(images)[0]], flip_seed) < 0.5
    return tf.where(flip[:, None, None, None], tf.reverse(moved, axis=[2]), moved)


def alternating_flips(n: int, seed: int) -> np.ndarray:
    """(n,) bool: which images alternating_flip mirrors in even epochs (a random half, from the
    seed); odd epochs mirror the others, so each image is seen both ways in every two epochs."""
    return np.random.default_rng([seed, 2]).random(n) < 0.5


def make_dataset(x: np.ndarray, y: np.ndarray, batch_size: int, *, shuffle: bool = False,
                 augment: str = "none", seed: int = 0, epochs: int = 1, start_epoch: int = 0,
                 alternating_flip: bool = False):
    """A tf.data pipeline of (float images, labels) batches. shuffle: epochs start_epoch..epochs-1
    back to back, each in its epoch_orders() order (fit with steps_per_epoch); else one pass in
    order. Batch i of the run (counted from epoch 0) is augmented with the stateless seed (seed, i);
    alternating_flip: its flips are alternating_flips() in even epochs and their complement in odd."""
    import tensorflow as tf
    images, labels = tf.constant(x), tf.constant(y.astype("int32"))
    order = epoch_orders(len(x), epochs, seed)[start_epoch:] if shuffle else np.arange(len(x))[None]
    steps = math.ceil(len(x) / batch_size)
    first = start_epoch * steps if shuffle else 0
    base_flips = tf.constant(alternating_flips(len(x), seed))
    batches = len(order) * math.ceil(len(x) / batch_size)
    ds = tf.data.Dataset.from_tensor_slices(order).flat_map(
        lambda idx: tf.data.Dataset.from_tensor_slices(idx).batch(batch_size)).enumerate(first)
    ds = ds.apply(tf.data.experimental.assert_cardinality(batches))   # Keras then knows where it ends

    def load(i, idx):
        batch = preprocess(tf.gather(images, idx))
        if augment != "none":
            flip = tf.not_equal(tf.gather(base_flips, idx), (i // steps) % 2 == 1) if alternating_flip else None
            batch = augment_batch(batch, augment, tf.stack([tf.constant(seed, tf.int64), i]), flip)
        return batch, tf.gather(labels, idx)
    return ds.map(load, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def _callbacks(params, live, elapsed_before: float = 0.0, best_before: float = 0.0):
    """Callbacks of a fit: the per-epoch schedule, NaN stop and DVCLive logging. A resumed run
    passes the training seconds (`elapsed_before`) and best val accuracy (`best_before`) of the
    epochs it does not repeat."""
    import time

    import keras

    class LogToLive(keras.callbacks.Callback):
        """Per epoch: train/<metric>, val/<metric>, the epoch's (first step's) learning_rate and
        elapsed_s (training wall time so far, validation included) to DVCLive; a line when val
        accuracy first reaches each of VAL_THRESHOLDS."""

        def on_train_begin(self, logs=None):
            self.start = time.perf_counter() - elapsed_before
            self.best = best_before

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
            for t in VAL_THRESHOLDS.values():
                if val_acc is not None and val_acc >= t > self.best:
                    print(f"val accuracy {val_acc:.4f} >= {t} at epoch {epoch + 1}, {elapsed / 60:.1f} min")
            self.best = max(self.best, val_acc or 0.0)
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


def training_warnings(steps: int, correct: int, n_test: int, n_classes: int) -> list[str]:
    """Lines for the log and details.json when a training had fewer than MIN_STEPS optimizer steps,
    or its test accuracy is not above chance (1/n_classes; one-sided binomial test at CHANCE_P)."""
    from scipy.stats import binomtest
    out = []
    if steps < MIN_STEPS:
        out.append(f"only {steps} training steps (epochs x training images / batch_size); the pipeline needs "
                   f"about {MIN_STEPS:,} to learn: raise epochs or data.train_size, or lower batch_size")
    if n_test and binomtest(correct, n_test, 1 / n_classes, alternative="greater").pvalue > CHANCE_P:
        out.append(f"test accuracy {correct / n_test:.4f} is at chance level ({1 / n_classes:.2f} for {n_classes} "
                   f"classes): the model did not learn (too few steps, or a learning rate too high)")
    return out


def device_line() -> str:
    """What a training runs on, for its log and details.json: the GPUs TensorFlow uses, else the
    CPU, and the replicas of the distribution strategy in scope (params' `devices`)."""
    import os

    import tensorflow as tf
    from study.devices import describe
    gpus = tf.config.get_visible_devices("GPU")
    if gpus:
        names = [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus]
        line = f"{len(gpus)} GPU{'s' if len(gpus) > 1 else ''}: {', '.join(names)}"
    else:
        seen = "GPUs hidden (devices: cpu)" if tf.config.list_physical_devices("GPU") else "TensorFlow sees no GPU"
        line = f"CPU ({os.cpu_count()} cores; {seen})"
    replicas = describe(tf.distribute.get_strategy())
    return f"{line}; {replicas}" if replicas else line


def keras_verbosity() -> int:
    """Keras fit's `verbose`: a live progress bar in a terminal, one line per epoch in a log file."""
    import sys
    return 1 if sys.stdout.isatty() else 2


def tta_views(images: np.ndarray, tta: str) -> list[np.ndarray]:
    """The views of a float (N, H, W, C) batch whose predictions params' `tta` averages: none: the
    images; flip: and their mirror images; flip_shift: both, each also shifted one pixel up-left
    and one down-right (reflected border)."""
    views = [images] if tta == "none" else [images, images[:, :, ::-1]]
    if tta == "flip_shift":
        for v in views[:2]:
            padded = np.pad(v, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="reflect")
            views += [padded[:, :-2, :-2], padded[:, 2:, 2:]]
    return views


def evaluate_test(model, x: np.ndarray, y: np.ndarray, batch_size: int, tta: str = "none") -> dict:
    """Test accuracy, cross-entropy and predictions of a model that outputs probabilities,
    averaged over params' `tta` views (tta_views)."""
    views = tta_views(preprocess(x), tta)
    probs = sum(model.predict(v, batch_size=batch_size, verbose=0) for v in views) / len(views)
    pred = probs.argmax(1)
    p_true = np.clip(probs[np.arange(len(y)), y.astype(int)], 1e-7, 1.0)
    return {"accuracy": float((pred == y).mean()), "loss": float(-np.log(p_true).mean()),
            "pred": pred}


def compile_model(trainer, params: dict, steps_per_epoch: int) -> None:
    """Compile with params' optimizer, schedule, weight decay and loss (label smoothing)."""
    trainer.compile(optimizer=make_optimizer(params, steps_per_epoch), loss=cross_entropy(params["label_smoothing"]),
                    metrics=["accuracy"], jit_compile=False)  # no XLA: Keras turns it off anyway while
                                                                 # op determinism is on (set_seed)


def read_curve(live_dir, metric: str) -> dict[int, float]:
    """{step: value} of one DVCLive TSV curve (e.g. "val/accuracy") under live_dir; {} if absent."""
    import csv
    from pathlib import Path
    path = Path(live_dir, "plots", "metrics", f"{metric}.tsv")
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        return {int(r["step"]): float(r[metric.split("/")[-1]]) for r in csv.DictReader(f, delimiter="\t")}


def time_to_val_accuracy(live_dir) -> dict:
    """{threshold key: {"epoch", "seconds"} | None}: when val accuracy first reached each of
    VAL_THRESHOLDS, from the curves (so a resumed run counts the epochs before it too)."""
    acc, elapsed = read_curve(live_dir, "val/accuracy"), read_curve(live_dir, "elapsed_s")
    return {key: next(({"epoch": step + 1, "seconds": elapsed.get(step)} for step in sorted(acc)
                       if acc[step] >= t), None) for key, t in VAL_THRESHOLDS.items()}


def trim_curves(live_dir, steps: int) -> None:
    """Drop the rows of step >= `steps` from DVCLive's TSV curves under live_dir (an epoch logged
    after the last backup: the resumed run logs it again)."""
    import csv
    from pathlib import Path
    for tsv in Path(live_dir, "plots", "metrics").rglob("*.tsv"):
        with open(tsv, newline="") as f:
            rows = list(csv.reader(f, delimiter="\t"))
        step = rows[0].index("step")
        kept = [rows[0]] + [r for r in rows[1:] if int(r[step]) < steps]
        with atomic_path(tsv) as tmp, open(tmp, "w", newline="") as f:
            csv.writer(f, delimiter="\t", lineterminator="\n").writerows(kept)


def train_and_evaluate(name: str, model, params: dict, splits: dict, classes: list[str], trainer=None,
                       fresh: bool = True) -> dict:
    """Fit `trainer` (default: `model`), test `model` once, and write the stage's outputs:
    plots/train_<name>/ (DVCLive, written each epoch: curves, and metrics.json holding the last
    epoch's values until the end, then the headline `test` section; details.json), and atomically
    models/<name>.keras, models/<name>_summary.txt and, for a trainer that keeps class centres
    (center loss), models/<name>_centers.npy.

    `trainer` is a keras.Model that wraps `model` with extra loss terms (center loss). A `fresh`
    model (not fine-tuned) starts from params' whiten_init / dirac_init. A run killed after epoch k
    resumes from the backup of epoch k (study.resume). Returns the test metrics.
    """
    import keras
    from dvclive import Live
    from study import resume
    from study.devices import check_batch_size, check_last_batches, dtype_policy_line, share_global_batch
    from study.model import plain_copy, summary_text

    check_batch_size(params["batch_size"])
    check_last_batches({f"data.{s}_size": len(splits[s][1]) for s in ("train", "val", "test")}, params["batch_size"])
    summary = summary_text(model)  # before compile: no optimizer variables in the counts
    single_device = share_global_batch(model)  # several replicas: batch norm, dropout over the global batch
    if params["fused_batch_norm"]:
        from study.fused_batch_norm import enable
        print(f"{name}: {enable(model)}", flush=True)
    device = device_line()
    print(f"{name}: device {device}", flush=True)
    print(f"{name}: {dtype_policy_line(params['dtype_policy'])}", flush=True)
    trainer = trainer or model
    (xtr, ytr), (xva, yva), (xte, yte) = splits["train"], splits["val"], splits["test"]
    if fresh:
        from study.initializers import initialize
        for line in initialize(model, params, xtr):
            print(f"{name}: {line}", flush=True)
    seed, bs, epochs = params["seed"], params["batch_size"], params["epochs"]
    steps = math.ceil(len(xtr) / bs)
    compile_model(trainer, params, steps)
    backup = resume.backup_dir(name)
    print_ = resume.fingerprint(params, trainer, [xtr, ytr, xva, yva])
    live_dir = paths.train_dir(name)
    curves = live_dir / "plots" / "metrics"
    start = resume.restore(backup, trainer, epochs, print_, curves)
    if start:
        trim_curves(live_dir, start)
    elapsed_before = read_curve(live_dir, "elapsed_s").get(start - 1, 0.0) if start else 0.0
    best_before = max(read_curve(live_dir, "val/accuracy").values(), default=0.0) if start else 0.0
    with Live(str(live_dir), resume=bool(start), dvcyaml=None, save_dvc_exp=False, report=None) as live:
        live.step = start
        callbacks = [*_callbacks(params, live, elapsed_before, best_before),
                     resume.backup_callback(backup, epochs, print_, curves)]
        trainer.fit(make_dataset(xtr, ytr, bs, shuffle=True, augment=params["augment"], seed=seed,
                                 epochs=epochs, start_epoch=start, alternating_flip=params["alternating_flip"]),
                    validation_data=make_dataset(xva, yva, bs), epochs=epochs, initial_epoch=start,
                    steps_per_epoch=steps, callbacks=callbacks, verbose=keras_verbosity(),
                    shuffle=False)  # the dataset orders itself, per epoch (epoch_orders)
        single_device()  # the model to test and save is the plain one-device Keras model
        saved = plain_copy(model)  # float32 whatever the dtype policy: the model later stages load
        test = evaluate_test(saved, xte, yte, bs, params["tta"])
        live.summary["test"] = {"accuracy": test["accuracy"], "loss": test["loss"]}
        live.summary["warnings"] = training_warnings(epochs * steps, int((test["pred"] == yte).sum()), len(yte),
                                                     len(classes))
        for line in live.summary["warnings"]:
            print(f"{name}: warning: {line}", flush=True)
        live.summary["time_to_val_accuracy"] = time_to_val_accuracy(live_dir)
        live.log_sklearn_plot("confusion_matrix", [classes[i] for i in yte],
                              [classes[i] for i in test["pred"]], name="confusion_matrix.json")
    with atomic_path(paths.model_file(name)) as tmp:
        keras.saving.save_model(saved, tmp)
    with atomic_path(paths.summary_file(name)) as tmp:
        tmp.write_text(summary)
    if hasattr(trainer, "centers"):
        write_npy(paths.centers_file(name), np.asarray(trainer.centers, np.float32))
    # DVCLive's summary (last epoch's values, time to accuracy, test) becomes details.json;
    # metrics.json keeps the headline `<name>.test` section only
    policy = model.get_layer("conv2d").dtype_policy.name  # the policy it trained in (auto resolved)
    write_metrics(live_dir, dict(live.summary) | {"device": device, "dtype_policy": policy},
                  {"test": live.summary["test"]}, name)
    resume.discard(backup)
    print(f"{name}: test accuracy {test['accuracy']:.4f}, test loss {test['loss']:.4f}")
    return test
