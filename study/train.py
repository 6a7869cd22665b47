"""The one training recipe both models use (train_baseline and train_center_loss).

`train_and_evaluate()` compiles with the params' optimizer, schedule and loss, fits on the
train split (study.dataset's pipeline, study.callbacks' callbacks, study.resume's backup) while
monitoring the validation split, evaluates the test split once at the end, and writes the
model, its summary and the DVCLive folder (curves, metrics.json with a `test` section, test
confusion matrix) atomically.
"""
from __future__ import annotations

import math

import numpy as np

from study import paths
from study.callbacks import training_callbacks
from study.curves import read_curve, time_to_val_accuracy, trim_curves
from study.data import preprocess
from study.dataset import make_dataset, tta_views
from study.files import atomic_path, write_metrics, write_npy
from study.schedules import onecycle

SGD_MOMENTUM = 0.9
MIN_STEPS = 1_000     # fewer optimizer steps than this: the network's predictions tend to collapse (docs/experiments.md)
CHANCE_P = 0.01       # test accuracy not above chance at this significance: the training did not learn


def set_seed(seed: int) -> None:
    """Seed Python, numpy, TF and Keras, and make TF ops deterministic on this device."""
    import keras
    import tensorflow as tf
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


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


def _prepare(name: str, model, params: dict, splits: dict, fresh: bool):
    """Before training: refuse batches the replicas cannot share, take the model's summary, set up
    replicas and fused batch norm, log the device and dtype policy, and give a `fresh` model params'
    starting weights. Returns (summary text, the undo of share_global_batch, the device line)."""
    from study.devices import check_batch_size, check_last_batches, dtype_policy_line, share_global_batch
    from study.model import summary_text
    from study.params import check_against_data
    check_batch_size(params["batch_size"])
    check_last_batches({f"data.{s}_size": len(splits[s][1]) for s in ("train", "val", "test")}, params["batch_size"])
    check_against_data(params, len(splits["test"][1]), model.output_shape[-1])  # fails here, not after training
    summary = summary_text(model)  # before compile: no optimizer variables in the counts
    single_device = share_global_batch(model)  # several replicas: batch norm, dropout over the global batch
    if params["fused_batch_norm"]:
        from study.fused_batch_norm import enable
        print(f"{name}: {enable(model)}", flush=True)
    device = device_line()
    print(f"{name}: device {device}", flush=True)
    print(f"{name}: {dtype_policy_line(params['dtype_policy'])}", flush=True)
    if fresh:
        from study.initializers import initialize
        for line in initialize(model, params, splits["train"][0]):
            print(f"{name}: {line}", flush=True)
    return summary, single_device, device


def _save(name: str, saved, summary: str, centers) -> None:
    """Write models/<name>.keras, its summary and, for the center loss, its final centres, atomically."""
    import keras
    with atomic_path(paths.model_file(name)) as tmp:
        keras.saving.save_model(saved, tmp)
    with atomic_path(paths.summary_file(name)) as tmp:
        tmp.write_text(summary)
    if centers is not None:
        write_npy(paths.centers_file(name), np.asarray(centers, np.float32))


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
    from dvclive import Live
    from study import resume
    from study.model import plain_copy

    summary, single_device, device = _prepare(name, model, params, splits, fresh)
    trainer = trainer or model
    (xtr, ytr), (xva, yva), (xte, yte) = splits["train"], splits["val"], splits["test"]
    seed, bs, epochs = params["seed"], params["batch_size"], params["epochs"]
    steps = math.ceil(len(xtr) / bs)
    compile_model(trainer, params, steps)
    backup = resume.backup_dir(name)
    print_ = resume.fingerprint(params, trainer, [xtr, ytr, xva, yva])
    live_dir = paths.train_dir(name)
    curves = live_dir / "plots" / "metrics"
    start, elapsed_before, best_before = _restore(backup, trainer, epochs, print_, live_dir)
    with Live(str(live_dir), resume=bool(start), dvcyaml=None, save_dvc_exp=False, report=None) as live:
        live.step = start
        callbacks = [*training_callbacks(params, live, elapsed_before, best_before),
                     resume.backup_callback(backup, epochs, print_, curves)]
        trainer.fit(make_dataset(xtr, ytr, bs, shuffle=True, augment=params["augment"], seed=seed,
                                 epochs=epochs, start_epoch=start, alternating_flip=params["alternating_flip"]),
                    validation_data=make_dataset(xva, yva, bs), epochs=epochs, initial_epoch=start,
                    steps_per_epoch=steps, callbacks=callbacks, verbose=keras_verbosity(),
                    shuffle=False)  # the dataset orders itself, per epoch (epoch_orders)
        single_device()  # the model to test and save is the plain one-device Keras model
        saved = plain_copy(model)  # float32 whatever the dtype policy: the model later stages load
        test = evaluate_test(saved, xte, yte, bs, params["tta"])
        _log_test(name, live, test, yte, classes, epochs * steps)
    _save(name, saved, summary, getattr(trainer, "centers", None))
    # DVCLive's summary (last epoch's values, time to accuracy, test) becomes details.json;
    # metrics.json keeps the headline `<name>.test` section only
    policy = model.get_layer("conv2d").dtype_policy.name  # the policy it trained in (auto resolved)
    write_metrics(live_dir, dict(live.summary) | {"device": device, "dtype_policy": policy},
                  {"test": live.summary["test"]}, name)
    resume.discard(backup)
    print(f"{name}: test accuracy {test['accuracy']:.4f}, test loss {test['loss']:.4f}")
    return test


def _restore(backup, trainer, epochs: int, print_: str, live_dir) -> tuple[int, float, float]:
    """(epoch to start from, seconds and best validation accuracy before it) after restoring
    `trainer` from the backup of a killed run (0, 0.0, 0.0 for a fresh start); the curves are
    cut back to the restored epoch."""
    from study import resume
    start = resume.restore(backup, trainer, epochs, print_, live_dir / "plots" / "metrics")
    if not start:
        return 0, 0.0, 0.0
    trim_curves(live_dir, start)
    return (start, read_curve(live_dir, "elapsed_s").get(start - 1, 0.0),
            max(read_curve(live_dir, "val/accuracy").values(), default=0.0))


def _log_test(name: str, live, test: dict, yte, classes: list[str], total_steps: int) -> None:
    """The test results into DVCLive's summary (test, warnings, time to validation accuracy) and
    its confusion-matrix plot; each warning is printed too."""
    live.summary["test"] = {"accuracy": test["accuracy"], "loss": test["loss"]}
    live.summary["warnings"] = training_warnings(total_steps, int((test["pred"] == yte).sum()), len(yte),
                                                 len(classes))
    for line in live.summary["warnings"]:
        print(f"{name}: warning: {line}", flush=True)
    live.summary["time_to_val_accuracy"] = time_to_val_accuracy(live.dir)
    live.log_sklearn_plot("confusion_matrix", [classes[i] for i in yte],
                          [classes[i] for i in test["pred"]], name="confusion_matrix.json")
