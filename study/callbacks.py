"""The callbacks of a training's fit: the per-epoch learning-rate schedule, a stop on a NaN loss,
and the per-epoch DVCLive log (curves, learning rate, elapsed time, time to accuracy lines).
"""
from __future__ import annotations

import math

from study.curves import VAL_THRESHOLDS
from study.errors import StageError
from study.schedules import lr_for_epoch


def training_callbacks(params, live, elapsed_before: float = 0.0, best_before: float = 0.0):
    """Callbacks of a fit: the per-epoch schedule, NaN stop and DVCLive logging. A resumed run
    passes the training seconds (`elapsed_before`) and best val accuracy (`best_before`) of the
    epochs it does not repeat."""
    import keras

    callbacks = [_stop_on_nan(params), _log_to_live(live, elapsed_before, best_before)]
    if params["lr_schedule"] != "onecycle":  # onecycle is a per-step schedule inside the optimizer
        callbacks.insert(0, keras.callbacks.LearningRateScheduler(lambda e, _lr: lr_for_epoch(e, params)))
    return callbacks


def _log_to_live(live, elapsed_before: float, best_before: float):
    """Per epoch: train/<metric>, val/<metric>, the epoch's (first step's) learning_rate and
    elapsed_s (training wall time so far, validation included) to DVCLive; a line when val
    accuracy first reaches each of VAL_THRESHOLDS."""
    import time

    import keras

    class LogToLive(keras.callbacks.Callback):
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

    return LogToLive()


def _stop_on_nan(params):
    """A callback: a NaN or infinite loss stops training with a message saying what to change."""
    import keras

    class StopOnNaN(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                raise StageError(f"training loss became {float(loss)} at epoch {self.epoch + 1}, "
                                 f"batch {batch + 1}; lower learning_rate "
                                 f"(now {params['learning_rate']}) or center_loss weights")

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

    return StopOnNaN()
