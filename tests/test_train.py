"""study.train and stages.train_baseline on tiny synthetic data: outputs, determinism, schedules."""
import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from study import paths
from study.io import StageError
from study.train import _callbacks, lr_for_epoch, make_dataset
from tests.conftest import REPO, assert_one_line_error, tree


def _read_tsv_column(path, column):
    lines = path.read_text().splitlines()
    col = lines[0].split("\t").index(column)
    return [float(line.split("\t")[col]) for line in lines[1:]]


def _train(params):
    from stages.train_baseline import main
    return main(params)


def test_lr_schedules_by_hand():
    p = {"learning_rate": 0.1, "lr_schedule": "step", "lr_step_epochs": 2, "lr_step_factor": 0.5, "epochs": 4}
    assert [lr_for_epoch(e, p) for e in range(5)] == [0.1, 0.1, 0.05, 0.05, 0.025]
    p["lr_schedule"] = "cosine"
    assert [round(lr_for_epoch(e, p), 6) for e in range(4)] == [0.1, 0.085355, 0.05, 0.014645]
    p["lr_schedule"] = "none"
    assert {lr_for_epoch(e, p) for e in range(4)} == {0.1}


def test_baseline_stage_writes_model_metrics_curves_and_confusion(workdir):
    test = _train(workdir)
    live = paths.train_dir("baseline")
    metrics = json.loads((live / "metrics.json").read_text())
    assert metrics["test"] == {"accuracy": test["accuracy"], "loss": test["loss"]}
    assert math.isfinite(test["loss"]) and test["loss"] > 0
    for split in ("train", "val"):
        for m in ("loss", "accuracy"):
            assert len(_read_tsv_column(live / "plots/metrics" / split / f"{m}.tsv", m)) == 1
    cm = json.loads((live / "plots/sklearn/confusion_matrix.json").read_text())
    rows = cm
    assert len(rows) == 100 and {"actual", "predicted"} <= set(rows[0])  # one row per test image
    assert test["accuracy"] == np.mean([r["actual"] == r["predicted"] for r in rows])  # the same 100 predictions
    import keras
    model = keras.saving.load_model(paths.model_file("baseline"))
    assert model.count_params() == 693_834
    assert "693,834" in paths.summary_file("baseline").read_text()
    leftovers = [p for p in (paths.MODELS.iterdir()) if p.name.startswith(".")]
    assert leftovers == [] and not live.with_name(".train_baseline.tmp").exists()


@pytest.mark.slow
def test_same_seed_gives_identical_test_metrics_and_weights(workdir):
    workdir.update(epochs=2, augment=True)
    first = _train(workdir)
    import keras
    w1 = keras.saving.load_model(paths.model_file("baseline")).get_weights()
    second = _train(workdir)
    w2 = keras.saving.load_model(paths.model_file("baseline")).get_weights()
    assert (first["accuracy"], first["loss"]) == (second["accuracy"], second["loss"])
    assert all(np.array_equal(a, b) for a, b in zip(w1, w2))
    workdir["seed"] = 1
    third = _train(workdir)
    w3 = keras.saving.load_model(paths.model_file("baseline")).get_weights()
    assert not all(np.array_equal(a, b) for a, b in zip(w1, w3))
    assert math.isfinite(third["loss"])


@pytest.mark.slow
@pytest.mark.parametrize("optimizer,schedule", [("sgd", "step"), ("rmsprop", "cosine"), ("adam", "none")])
def test_each_optimizer_and_schedule_trains_and_logs_its_learning_rate(workdir, optimizer, schedule):
    workdir.update(optimizer=optimizer, lr_schedule=schedule, epochs=3, lr_step_epochs=1,
                   lr_step_factor=0.5, learning_rate=0.01, batch_norm=optimizer != "adam")
    _train(workdir)
    live = paths.train_dir("baseline")
    logged = _read_tsv_column(live / "plots/metrics/learning_rate.tsv", "learning_rate")
    assert logged == pytest.approx([lr_for_epoch(e, workdir) for e in range(3)], rel=1e-6)
    losses = _read_tsv_column(live / "plots/metrics/train/loss.tsv", "loss")
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0], losses


def test_nan_loss_stops_training_with_a_clear_message():
    stop = [cb for cb in _callbacks({"learning_rate": 0.5}, live=None) if type(cb).__name__ == "StopOnNaN"][0]
    stop.on_epoch_begin(2)
    stop.on_train_batch_end(0, {"loss": 1.0})
    with pytest.raises(StageError, match=r"training loss became nan at epoch 3, batch 8; lower learning_rate \(now 0.5\)"):
        stop.on_train_batch_end(7, {"loss": float("nan")})


def test_dataset_preprocesses_and_augments_in_graph():
    x = np.random.default_rng(0).integers(0, 256, size=(8, 32, 32, 3), dtype=np.uint8)
    y = np.arange(8, dtype=np.uint8)
    plain = next(iter(make_dataset(x, y, 8)))
    assert plain[0].dtype.name == "float32" and np.allclose(plain[0].numpy(), x / 255.0)
    assert plain[1].numpy().tolist() == list(range(8))
    a1 = next(iter(make_dataset(x, y, 8, augment=True, seed=3)))[0].numpy()
    assert a1.shape == (8, 32, 32, 3) and not np.allclose(a1, x / 255.0)
    assert 0.0 <= a1.min() and a1.max() <= 1.0


@pytest.mark.parametrize("sig,code,how", [(signal.SIGINT, 1, "Ctrl-C \\(SIGINT\\)"),
                                          (signal.SIGTERM, 128 + signal.SIGTERM, "SIGTERM")])
def test_interrupted_training_is_one_line_and_leaves_no_output(workdir, tmp_path, sig, code, how):
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["epochs"] = 1000  # would run for an hour: stopped mid-training
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    sys_tmp = tmp_path / "systmp"
    sys_tmp.mkdir()
    before = tree(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "stages.train_baseline"], cwd=tmp_path, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(sys_tmp)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    live_tmp = tmp_path / "plots" / ".train_baseline.tmp"
    try:
        deadline = time.monotonic() + 120
        while not (live_tmp / "metrics.json").exists() and time.monotonic() < deadline:  # an epoch is done
            time.sleep(0.2)
        assert (live_tmp / "metrics.json").exists(), "training never started"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert_one_line_error(subprocess.CompletedProcess(proc.args, proc.returncode, out, err),
                          f"error: interrupted by {how} before the stage finished; `dvc repro` runs it again", code)
    assert tree(tmp_path) == before                       # no model, nothing half-written in data/ or models/
    assert not live_tmp.exists() and not (tmp_path / "plots" / "train_baseline").exists()
    assert list(sys_tmp.iterdir()) == []
