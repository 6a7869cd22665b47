"""study.callbacks: a NaN loss stops training with a message saying what to change."""
import pytest

from study.callbacks import training_callbacks
from study.errors import StageError


def test_nan_loss_stops_training_with_a_clear_message():
    params = {"learning_rate": 0.5, "lr_schedule": "none"}
    stop = [cb for cb in training_callbacks(params, live=None) if type(cb).__name__ == "StopOnNaN"][0]
    stop.on_epoch_begin(2)
    stop.on_train_batch_end(0, {"loss": 1.0})
    with pytest.raises(StageError, match=r"training loss became nan at epoch 3, batch 8; lower learning_rate \(now 0.5\)"):
        stop.on_train_batch_end(7, {"loss": float("nan")})
