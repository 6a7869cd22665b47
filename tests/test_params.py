"""study.params: every class of invalid value fails with one line naming key, value and what is allowed."""
import copy
import subprocess
import sys

import pytest
import yaml

from study.params import ParamsError, load, validate
from tests.conftest import REPO, tiny_params


def _with(key: str, value):
    p = copy.deepcopy(tiny_params())
    *parents, last = key.split(".")
    d = p
    for k in parents:
        d = d[k]
    d[last] = value
    return p


def test_repository_params_are_valid():
    p = load(REPO / "params.yaml")
    assert p["optimizer"] in ("adam", "sgd", "rmsprop") and p["data"]["val_size"] == 5000


@pytest.mark.parametrize("key,value,allowed", [
    ("optimizer", "adagrad", "allowed: adam, sgd, rmsprop"),
    ("lr_schedule", "exponential", "allowed: none, step, cosine"),
    ("learning_rate", 0, "in (0, 10]"),
    ("learning_rate", -0.1, "in (0, 10]"),
    ("learning_rate", "fast", "a finite number"),
    ("learning_rate", float("nan"), "a finite number"),
    ("epochs", 0, "in [1, 1000]"),
    ("epochs", 5000, "in [1, 1000]"),
    ("kmeans.max_iter", 300_000, "in [1, 10000]"),
    ("tsne.n_iter", 50_000, "in [50, 10000]"),
    ("epochs", 2.5, "an integer"),
    ("batch_size", -4, "in [1, 50000]"),
    ("batch_norm", "yes", "true or false"),
    ("augment", 1, "true or false"),
    ("seed", -1, "in [0, 2147483647]"),
    ("data.md5", "abc", "32 hex digits"),
    ("data.url", "ftp://example.org/x.tar.gz", "an http(s):// URL"),
    ("data.train_size", 0, "or null"),
    ("center_loss.variant", "arcface", "allowed: center, island, contrastive"),
    ("center_loss.alpha", 1.5, "in [0, 1]"),
    ("center_loss.init", "imagenet", "allowed: scratch, baseline"),
    ("activations.pca_dims", 1, "in [2, 4096]"),
])
def test_invalid_value_names_key_value_and_allowed(key, value, allowed):
    with pytest.raises(ParamsError) as e:
        validate(_with(key, value))
    msg = str(e.value)
    assert "\n" not in msg
    assert f"{key} = {value!r}" in msg and allowed in msg


def test_unknown_and_missing_keys():
    p = tiny_params()
    p["optimiser"] = "adam"
    with pytest.raises(ParamsError, match="unknown key 'optimiser'"):
        validate(p)
    p = tiny_params()
    del p["kmeans"]["n_init"]
    with pytest.raises(ParamsError, match="missing key 'kmeans.n_init'"):
        validate(p)


def test_cross_key_rules():
    p = _with("data.train_size", 49_960)
    with pytest.raises(ParamsError, match=r"data.train_size \+ data.val_size = 50010"):
        validate(p)
    p = _with("activations.n_samples", 500)  # tiny test split is 100
    with pytest.raises(ParamsError, match=r"activations.n_samples = 500 .* <= the test split size \(100\)"):
        validate(p)


def test_stage_fails_before_heavy_work_with_one_line(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(_with("optimizer", "adagrad")))
    r = subprocess.run([sys.executable, "-m", "stages.train_baseline"], cwd=tmp_path, capture_output=True,
                       text=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "error: params.yaml: optimizer = 'adagrad' is not allowed; allowed: adam, sgd, rmsprop"]
    assert not (tmp_path / "models").exists() and not (tmp_path / "plots").exists()
