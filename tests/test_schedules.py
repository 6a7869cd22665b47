"""study.schedules: the per-epoch and per-step (one-cycle) learning-rate schedules, by hand."""
import math

import pytest

from study.schedules import ONECYCLE_DIV, lr_for_epoch, onecycle


def test_lr_schedules_by_hand():
    p = {"learning_rate": 0.1, "lr_schedule": "step", "lr_step_epochs": 2, "lr_step_factor": 0.5, "epochs": 4}
    assert [lr_for_epoch(e, p) for e in range(5)] == [0.1, 0.1, 0.05, 0.05, 0.025]
    p["lr_schedule"] = "cosine"
    assert [round(lr_for_epoch(e, p), 6) for e in range(4)] == [0.1, 0.085355, 0.05, 0.014645]
    p["lr_schedule"] = "none"
    assert {lr_for_epoch(e, p) for e in range(4)} == {0.1}


def onecycle_by_hand(step, lr, warmup, total):
    """The one-cycle rate written out: linear from lr/25 to lr over `warmup` steps, then cosine to 0."""
    if step < warmup:
        return lr / ONECYCLE_DIV + (lr - lr / ONECYCLE_DIV) * step / warmup
    return 0.5 * lr * (1 + math.cos(math.pi * min(step - warmup, total - warmup) / (total - warmup)))


@pytest.mark.parametrize("warmup_epochs", [0, 1, 1.5, 3])
def test_onecycle_rate_per_step_and_per_epoch(warmup_epochs):
    p = {"learning_rate": 0.2, "lr_schedule": "onecycle", "lr_warmup_epochs": warmup_epochs, "epochs": 4}
    schedule, steps = onecycle(p, steps_per_epoch=10), 10
    warmup = round(min(warmup_epochs, 4 / 2) * steps)         # at most half the training
    got = [float(schedule(i)) for i in range(41)]
    want = [onecycle_by_hand(i, 0.2, warmup, 40) for i in range(41)]
    assert got == pytest.approx(want, rel=1e-5, abs=1e-7)
    assert got[0] == pytest.approx(0.2 / 25 if warmup else 0.2) and max(got) == pytest.approx(0.2)
    assert got[40] == pytest.approx(0.0, abs=1e-7)  # the last step ends at 0
    assert got[warmup] == pytest.approx(0.2)       # the peak is where the warm-up ends
