"""params' learning-rate schedules: per epoch (none | step | cosine, applied by a callback) or
per step (onecycle, inside the optimizer)."""
from __future__ import annotations

import math

ONECYCLE_DIV = 25     # onecycle starts at learning_rate / 25 (PyTorch OneCycleLR's div_factor)


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
