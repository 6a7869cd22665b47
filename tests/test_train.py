"""study.train and stages.train_baseline on tiny synthetic data: outputs, determinism, schedules."""
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from study import paths
from study.schedules import lr_for_epoch
from study.train import cross_entropy, evaluate_test, make_optimizer
from tests.conftest import REPO, assert_one_line_error, tree
from tests.test_schedules import onecycle_by_hand


def _read_tsv_column(path, column):
    lines = path.read_text().splitlines()
    col = lines[0].split("\t").index(column)
    return [float(line.split("\t")[col]) for line in lines[1:]]


def _train(params):
    from stages.train_baseline import main
    return main(params)


def test_label_smoothing_in_the_loss():
    import keras
    y = np.array([0, 2, 1])
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.25, 0.5, 0.25]], dtype="float32")
    plain = keras.ops.convert_to_numpy(cross_entropy(0)(y, probs))
    assert plain == pytest.approx(-np.log(probs[np.arange(3), y]), rel=1e-6)
    smooth = keras.ops.convert_to_numpy(cross_entropy(0.3)(y, probs))
    target = np.eye(3)[y] * 0.7 + 0.3 / 3   # (1 - ls) * one-hot + ls / K
    assert smooth == pytest.approx(-(target * np.log(probs)).sum(1), rel=1e-5)


def test_weight_decay_shrinks_kernels_not_biases_or_batch_norm():
    import keras
    p = {"optimizer": "sgd", "learning_rate": 0.1, "lr_schedule": "none", "weight_decay": 0.5, "ema_momentum": 0}
    net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="fc"), keras.layers.BatchNormalization(name="bn")])
    for v in net.trainable_variables:
        v.assign(np.ones(v.shape, "float32"))
    opt = make_optimizer(p, steps_per_epoch=1)
    opt.apply_gradients([(np.zeros(v.shape, "float32"), v) for v in net.trainable_variables])
    after = {f"{layer.name}/{v.name}": float(np.asarray(v).ravel()[0])
             for layer in net.layers for v in layer.trainable_variables}
    assert after == {"fc/kernel": pytest.approx(1 - 0.1 * 0.5), "fc/bias": 1.0, "bn/gamma": 1.0, "bn/beta": 1.0}
    assert make_optimizer({**p, "weight_decay": 0}, 1).weight_decay is None  # 0: the original study's optimizer


def test_flip_tta_averages_each_image_and_its_mirror():
    import keras
    x = np.random.default_rng(1).integers(0, 256, size=(40, 32, 32, 3), dtype=np.uint8)
    y = np.arange(40) % 10
    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    both = (net.predict(x / 255.0, verbose=0) + net.predict(x[:, :, ::-1] / 255.0, verbose=0)) / 2
    got = evaluate_test(net, x, y, 16, tta="flip")
    assert got["pred"].tolist() == both.argmax(1).tolist()
    assert got["loss"] == pytest.approx(-np.log(both[np.arange(40), y]).mean(), rel=1e-5)
    plain = evaluate_test(net, x, y, 16)
    assert plain["pred"].tolist() == net.predict(x / 255.0, verbose=0).argmax(1).tolist()


def test_baseline_stage_writes_model_metrics_curves_and_confusion(workdir):
    test = _train(workdir)
    live = paths.train_dir("baseline")
    assert json.loads((live / "metrics.json").read_text()) == {"baseline": {"test": {"accuracy": test["accuracy"],
                                                                                     "loss": test["loss"]}}}
    metrics = json.loads((live / "details.json").read_text())   # DVCLive's summary, time to accuracy
    assert metrics["test"] == {"accuracy": test["accuracy"], "loss": test["loss"]}
    assert metrics["device"] == f"CPU ({os.cpu_count()} cores; TensorFlow sees no GPU)"   # this machine
    assert metrics["dtype_policy"] == "float32"   # the policy the training used (tiny_params: float32)
    steps = math.ceil(len(np.load(paths.TRAIN)["y"]) / workdir["batch_size"])    # one epoch
    assert metrics["warnings"][0].startswith(f"only {steps} training steps")   # a tiny run says it is one
    val_acc = _read_tsv_column(live / "plots/metrics/val/accuracy.tsv", "accuracy")
    assert metrics["time_to_val_accuracy"] == {
        k: ({"epoch": 1, "seconds": _read_tsv_column(live / "plots/metrics/elapsed_s.tsv", "elapsed_s")[0]}
            if val_acc[0] >= t else None) for k, t in (("0_80", 0.8), ("0_85", 0.85), ("0_864", 0.864))}
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
    # a plain Keras model: Keras alone loads it, whatever the recipe (this one smooths labels, one-cycle)
    assert workdir["label_smoothing"] > 0 and workdir["lr_schedule"] == "onecycle" and not model.compiled
    code = "import sys, keras; m = keras.saving.load_model(sys.argv[1]); print(m.count_params())"
    out = subprocess.run([sys.executable, "-c", code, str(paths.model_file("baseline").resolve())], cwd="/",
                         capture_output=True, text=True, timeout=300)
    assert out.stdout.split()[-1:] == ["693834"], out.stderr[-500:]
    assert "693,834" in paths.summary_file("baseline").read_text()
    leftovers = [p for p in (paths.MODELS.iterdir()) if p.name.startswith(".")]
    assert leftovers == [] and not live.with_name(".train_baseline.tmp").exists()


@pytest.mark.slow
def test_same_seed_gives_identical_test_metrics_and_weights(workdir):
    workdir.update(epochs=2, augment="rotate_flip")
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
def test_mixed_bfloat16_trains_deterministically_and_saves_a_float32_model(workdir, monkeypatch, capsys):
    import keras
    from study import devices
    workdir.update(epochs=2)
    monkeypatch.setattr(devices, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
    runs = []
    for policy in ("mixed_bfloat16", "auto"):  # auto on a CPU with bfloat16 units: the same training
        workdir["dtype_policy"] = policy
        test = _train(workdir)
        model = keras.saving.load_model(paths.model_file("baseline"))
        runs.append((test, model.get_weights()))
        details = json.loads((paths.train_dir("baseline") / "details.json").read_text())
        assert details["dtype_policy"] == "mixed_bfloat16"
    assert "baseline: dtype_policy auto: mixed_bfloat16 (CPU flags avx512_bf16: bfloat16 units)" in capsys.readouterr().out
    (first, w1), (second, w2) = runs
    assert (first["accuracy"], first["loss"]) == (second["accuracy"], second["loss"]) and math.isfinite(first["loss"])
    assert all(np.array_equal(a, b) for a, b in zip(w1, w2))
    assert {layer.compute_dtype for layer in model.layers} == {"float32"} and model.count_params() == 693_834
    from study.data import load_split
    reloaded = evaluate_test(model, *load_split("test"), workdir["batch_size"], workdir["tta"])
    assert reloaded["accuracy"] == first["accuracy"]  # the test metrics are the saved float32 model's
    np.testing.assert_array_equal(reloaded["pred"], first["pred"])


@pytest.mark.slow
@pytest.mark.parametrize("optimizer,schedule", [("sgd", "step"), ("rmsprop", "cosine"), ("adam", "none"),
                                                ("sgd", "onecycle")])
def test_each_optimizer_and_schedule_trains_and_logs_its_learning_rate(workdir, optimizer, schedule):
    workdir.update(optimizer=optimizer, lr_schedule=schedule, epochs=3, lr_step_epochs=1,
                   lr_step_factor=0.5, learning_rate=0.01, batch_norm=optimizer != "adam")
    if schedule == "onecycle":  # the fast recipe's other keys too
        workdir.update(learning_rate=0.05, weight_decay=5e-3, label_smoothing=0.1, augment="crop_flip",
                       tta="flip", lr_warmup_epochs=1)
    _train(workdir)
    live = paths.train_dir("baseline")
    logged = _read_tsv_column(live / "plots/metrics/learning_rate.tsv", "learning_rate")
    steps = math.ceil(workdir["data"]["train_size"] / workdir["batch_size"])  # 7 steps per epoch
    want = [onecycle_by_hand(e * steps, 0.05, steps, 3 * steps) for e in range(3)] if schedule == "onecycle" \
        else [lr_for_epoch(e, workdir) for e in range(3)]  # each epoch logs its first step's rate
    assert logged == pytest.approx(want, rel=1e-5)
    losses = _read_tsv_column(live / "plots/metrics/train/loss.tsv", "loss")
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0], losses


def _start_training(root, extra_env=None):
    """`python -m stages.train_baseline` in root, as DVC runs it; returns the Popen."""
    return subprocess.Popen([sys.executable, "-m", "stages.train_baseline"], cwd=root, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO), **(extra_env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for_backup(root, proc, timeout=120):
    """Poll until the first epoch's backup exists (checkpoints/train_baseline/state.json)."""
    state = root / "checkpoints" / "train_baseline" / "state.json"
    deadline = time.monotonic() + timeout
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert state.exists(), "no epoch finished"
    return state


@pytest.mark.parametrize("sig,code,how", [(signal.SIGINT, 1, "Ctrl-C \\(SIGINT\\)"),
                                          (signal.SIGTERM, 128 + signal.SIGTERM, "SIGTERM")])
def test_interrupted_training_is_one_line_and_keeps_only_curves_and_backup(workdir, tmp_path, sig, code, how):
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["epochs"] = 1000  # would run for an hour: stopped mid-training
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    sys_tmp = tmp_path / "systmp"
    sys_tmp.mkdir()
    before = tree(tmp_path)
    proc = _start_training(tmp_path, {"TMPDIR": str(sys_tmp)})
    try:
        _wait_for_backup(tmp_path, proc)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert_one_line_error(subprocess.CompletedProcess(proc.args, proc.returncode, out, err),
                          f"error: interrupted by {how} before the stage finished; `dvc repro` runs it again", code)
    assert tree(tmp_path) == before                       # no model, nothing half-written in data/ or models/
    # what stays is what a rerun resumes from: the finished epochs' curves and their backup
    assert (tmp_path / "plots/train_baseline/plots/metrics/train/accuracy.tsv").exists()
    assert json.loads((tmp_path / "checkpoints/train_baseline/state.json").read_text())["epoch"] >= 1
    assert list(sys_tmp.iterdir()) == []


def _curves(root):
    """{tsv path: rows without the timestamp and elapsed time} of a training's DVCLive curves."""
    out = {}
    for tsv in sorted((root / "plots/train_baseline/plots/metrics").rglob("*.tsv")):
        if tsv.name != "elapsed_s.tsv":
            rows = [line.split("\t") for line in tsv.read_text().splitlines()]
            keep = [i for i, h in enumerate(rows[0]) if h != "timestamp"]
            out[str(tsv.relative_to(root))] = [[r[i] for i in keep] for r in rows]
    return out


@pytest.mark.slow
def test_killed_training_resumes_from_its_last_epoch_to_the_same_weights(tmp_path):
    import keras
    from tests.conftest import tiny_params
    from tests.synthetic import write_splits
    params = tiny_params()   # every source of randomness on: dropout, crop_flip, shuffling, a per-step schedule
    params.update(epochs=3, augment="crop_flip", optimizer="sgd", lr_schedule="onecycle", learning_rate=0.05,
                  weight_decay=0.0005)
    runs = {}
    for run in ("uninterrupted", "killed"):
        root = tmp_path / run
        root.mkdir()
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        write_splits(root, n_train=100, n_val=10, n_test=10)     # 1,000 images: an epoch takes a while
        runs[run] = root
    r = subprocess.run([sys.executable, "-m", "stages.train_baseline"], cwd=runs["uninterrupted"], text=True,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, timeout=600)
    assert r.returncode == 0, r.stderr
    root = runs["killed"]
    proc = _start_training(root)
    try:
        state = _wait_for_backup(root, proc)
        proc.send_signal(signal.SIGKILL)          # no handler, no clean-up: as a power cut or OOM kill
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    done = json.loads(state.read_text())["epoch"]
    assert 1 <= done < 3 and not paths.model_file("baseline").exists()
    shutil.rmtree(root / "plots/train_baseline")   # DVC removes a stage's outputs before it reruns it
    r = subprocess.run([sys.executable, "-m", "stages.train_baseline"], cwd=root, text=True,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert f"checkpoints/train_baseline: resuming after epoch {done} of 3" in r.stdout
    assert f"Epoch {done + 1}/3" in r.stdout and "Epoch 1/3" not in r.stdout
    # a val-accuracy threshold reached before the kill is not announced again after it
    acc = _read_tsv_column(runs["uninterrupted"] / "plots/train_baseline/plots/metrics/val/accuracy.tsv", "accuracy")
    reached = {t for t in ("0.8", "0.85", "0.864") if any(a >= float(t) for a in acc[:done])}
    assert not reached & set(re.findall(r"val accuracy [0-9.]+ >= ([0-9.]+) at epoch", r.stdout))
    assert not (root / "checkpoints" / "train_baseline").exists()          # deleted once finished
    a, b = (keras.saving.load_model(runs[k] / "models/baseline.keras") for k in ("uninterrupted", "killed"))
    for wa, wb in zip(a.weights, b.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(wa), np.asarray(wb), err_msg=wa.path)
    for f in ("metrics.json", "plots/sklearn/confusion_matrix.json"):
        assert (runs["killed"] / "plots/train_baseline" / f).read_text() == \
            (runs["uninterrupted"] / "plots/train_baseline" / f).read_text()
    assert _curves(runs["killed"]) == _curves(runs["uninterrupted"])     # every epoch once, same values


def test_a_backup_of_other_params_is_discarded(tmp_path, workdir):
    params = dict(workdir, epochs=3)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    proc = _start_training(tmp_path)
    try:
        _wait_for_backup(tmp_path, proc)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(dict(params, learning_rate=0.002)))
    r = subprocess.run([sys.executable, "-m", "stages.train_baseline"], cwd=tmp_path, text=True,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "checkpoints/train_baseline: not resuming (params, data or code changed since it was written); " \
           "discarded it, training from epoch 1" in r.stdout
    assert "Epoch 1/3" in r.stdout
    assert len(_curves(tmp_path)["plots/train_baseline/plots/metrics/train/accuracy.tsv"]) == 1 + 3


def test_a_short_or_chance_level_training_says_so():
    from study.train import training_warnings
    assert training_warnings(1_000, 60, 100, 10) == []
    few = training_warnings(32, 60, 100, 10)
    assert few == ["only 32 training steps (epochs x training images / batch_size); the pipeline needs about "
                   "1,000 to learn: raise epochs or data.train_size, or lower batch_size"]
    # one-sided binomial test against 1/10: 17 of 100 is p = 0.021 (not significant at 0.01), 19 is p = 0.0046
    chance = training_warnings(5_000, 17, 100, 10)
    assert chance == ["test accuracy 0.1700 is at chance level (0.10 for 10 classes): the model did not learn "
                      "(too few steps, or a learning rate too high)"]
    assert training_warnings(5_000, 19, 100, 10) == []
    assert training_warnings(5_000, 40, 100, 3) == [chance[0].replace("0.1700", "0.4000").replace("0.10 for 10", "0.33 for 3")]


def test_weight_ema_ends_with_the_average_of_the_raw_weights_and_off_means_no_average():
    import keras
    x = np.random.default_rng(0).normal(size=(32, 3)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5], "float32"))[:, None]
    raw = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            raw.append(self.model.get_weights()[0].copy())

    def fit(ema):
        keras.utils.set_random_seed(0)
        net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, use_bias=False)])
        opt = make_optimizer({"optimizer": "sgd", "learning_rate": 0.05, "lr_schedule": "none", "weight_decay": 0,
                              "ema_momentum": ema}, steps_per_epoch=4)
        net.compile(optimizer=opt, loss="mse")
        raw.clear()
        net.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False, callbacks=[Record()])
        return opt, net.get_weights()[0]

    opt, final = fit(0.0)
    assert not opt.use_ema and np.array_equal(final, raw[-1])          # off: the last step's weights
    opt, final = fit(0.75)
    average = raw[0]                                                     # Keras: the first step copies
    for w in raw[1:]:
        average = 0.75 * average + 0.25 * w
    assert opt.use_ema and np.allclose(final, average, atol=1e-6) and not np.allclose(final, raw[-1], atol=1e-3)


def test_tricks_on_train_and_say_so(workdir, capsys):
    workdir.update(whiten_init=True, dirac_init=True, alternating_flip=True, ema_momentum=0.9, tta="flip_shift")
    test = _train(workdir)
    out = capsys.readouterr().out
    assert "baseline: whiten_init: conv2d's first 54 filters whiten 3x3 patches (200 training images)" in out
    assert "baseline: dirac_init: conv2d_1, conv2d_2, conv2d_3, conv2d_4 start as the identity" in out
    assert math.isfinite(test["loss"])
