"""study.params: every class of invalid value fails with one line naming key, value and what is allowed."""
import copy
import re
import subprocess
import sys

import pytest
import yaml

from study.params import ParamsError, load, parse, validate
from tests.conftest import REPO, assert_one_line_error, stage_process, tiny_params, tree


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
    ("lr_schedule", "exponential", "allowed: none, step, cosine, onecycle"),
    ("weight_decay", -0.1, "in [0, 1]"),
    ("label_smoothing", 0.7, "in [0, 0.5]"),
    ("lr_warmup_epochs", -1, "in [0, 1000]"),
    ("tta", "ten_crop", "allowed: none, flip, flip_shift"),
    ("dtype_policy", "mixed_float16", "allowed: auto, float32, mixed_bfloat16"),
    ("devices", "gpu", "auto, cpu or a number of devices in [1, 64]"),
    ("devices", 0, "auto, cpu or a number of devices in [1, 64]"),
    ("devices", True, "auto, cpu or a number of devices in [1, 64]"),
    ("devices", 1.5, "auto, cpu or a number of devices in [1, 64]"),
    ("learning_rate", 0, "in (0, 10]"),
    ("learning_rate", -0.1, "in (0, 10]"),
    ("learning_rate", "fast", "a finite number"),
    ("learning_rate", float("nan"), "a finite number"),
    ("epochs", 0, "in [1, 1000]"),
    ("epochs", 5000, "in [1, 1000]"),
    ("kmeans.max_iter", 300_000, "in [1, 10000]"),
    ("tsne.n_iter", 50_000, "in [50, 10000]"),
    ("tsne.n_iter_3d", 10, "in [50, 10000]"),
    ("tsne.early_exaggeration_iter_3d", -1, "in [0, 10000]"),
    ("epochs", 2.5, "an integer"),
    ("batch_size", -4, "in [1, 50000]"),
    ("batch_norm", "yes", "true or false"),
    ("augment", 1, "allowed: none, rotate_flip, crop_flip (true = rotate_flip, false = none)"),
    ("augment", "crop", "allowed: none, rotate_flip, crop_flip"),
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


def test_batch_size_must_split_evenly_over_the_devices_asked_for():
    assert validate(dict(tiny_params(), devices=4, batch_size=64))["devices"] == 4
    with pytest.raises(ParamsError, match=r"^params\.yaml: batch_size = 33 is not allowed with devices = 2; "
                                          r"allowed: a multiple of 2 \(each device takes an equal share of every batch\)$"):
        validate(dict(tiny_params(), devices=2, batch_size=33))


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
    p = _with("activations.n_samples", 500)  # tiny test split is 100
    with pytest.raises(ParamsError, match=r"activations.n_samples = 500 .* <= data.test_size \(100\)"):
        validate(p)
    p = _with("data.md5", None)
    with pytest.raises(ParamsError, match=r"data.md5 = null is not allowed for an http\(s\) data.url"):
        validate(p)
    assert validate(_with("data.url", "my_images"))["data"]["url"] == "my_images"  # the control: a local path


def test_rules_that_need_the_data_are_checked_once_it_is_known():
    from study.params import check_against_data
    p = _with("data.test_size", None)
    check_against_data(p, 100, 10)                                     # n_samples 60, trust 50: fine
    with pytest.raises(ParamsError, match=r"activations.n_samples = 60 .* <= the test split size \(59\)"):
        check_against_data(p, 59, 10)
    check_against_data(p, 100, 3)
    with pytest.raises(ParamsError, match=r"tsne.trust_samples = 50 .* <= 40 .* or >= 60"):
        check_against_data(p, 100, 20)                                  # 20 classes leave 40


def test_the_defaults_hold_for_any_number_of_epochs():
    # `dvc exp run -S epochs=1`: the one-cycle warm-up (2 epochs by default) is capped at half the training
    from study.schedules import warmup_epochs
    defaults = load(REPO / "params.yaml")
    assert defaults["lr_warmup_epochs"] == 2
    got = {epochs: warmup_epochs(validate(dict(defaults, epochs=epochs))) for epochs in (1, 3, 4, 30)}
    assert got == {1: 0.5, 3: 1.5, 4: 2, 30: 2}                         # 30: the recipe unchanged


@pytest.mark.parametrize("given,meant", [(True, "rotate_flip"), (False, "none"), ("crop_flip", "crop_flip")])
def test_augment_true_false_keep_meaning_the_seeds_switch(given, meant):
    assert validate(_with("augment", given))["augment"] == meant


def test_stage_fails_before_heavy_work_with_one_line(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(_with("optimizer", "adagrad")))
    r = subprocess.run([sys.executable, "-m", "stages.train_baseline"], cwd=tmp_path, capture_output=True,
                       text=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "error: params.yaml: optimizer = 'adagrad' is not allowed; allowed: adam, sgd, rmsprop"]
    assert not (tmp_path / "models").exists() and not (tmp_path / "plots").exists()


def test_numbers_as_dvc_writes_them():
    # `dvc exp run -S learning_rate=1e-5` writes `learning_rate: 1e-05`; YAML 1.1 would read a string
    text = "a: 1e-05\nb: 1E-3\nc: .5\nd: 1_000\ne: -2.5e+3\nf: 0.001\ng: '1e-5'\nh: 1e\ni: 10\n"
    assert parse(text) == {"a": 1e-05, "b": 0.001, "c": 0.5, "d": 1000, "e": -2500.0, "f": 0.001,
                           "g": "1e-5", "h": "1e", "i": 10}
    p = tiny_params()
    text = yaml.safe_dump(dict(p, learning_rate=0.001), sort_keys=False).replace("learning_rate: 0.001", "learning_rate: 1e-05")
    assert "learning_rate: 1e-05" in text
    assert validate(parse(text))["learning_rate"] == 1e-05


PARAMS_TEXT = yaml.safe_dump(tiny_params(), sort_keys=False)


@pytest.mark.parametrize("write,line", [
    (lambda p: p.mkdir(), r"error: params.yaml: is a directory; expected the params file \(YAML text\)"),
    (lambda p: p.write_bytes(PARAMS_TEXT.encode().replace(b"optimizer: ", b"optimizer: \xe4", 1)),
     r"error: params.yaml: not UTF-8 text \(byte 0xe4 at offset \d+\)"),
    (lambda p: p.write_text(PARAMS_TEXT + "seed: 1\n"), r"error: params.yaml: key 'seed' is given twice \(line \d+\); keep one"),
    (lambda p: p.write_text(PARAMS_TEXT.replace("  n_init: 2\n", "  n_init: 2\n  n_init: 3\n")),
     r"error: params.yaml: key 'n_init' is given twice \(line \d+\); keep one"),
    (lambda p: p.write_text(yaml.safe_dump({**tiny_params(), "data": 5})),
     r"error: params.yaml: data = 5 is not allowed; allowed: a section of keys \(data.url, data.md5, .*\)"),
    (lambda p: p.write_text("seed: " + "[" * 50_000 + "]" * 50_000), r"error: params.yaml: nested too deeply to be a params file"),
    (lambda p: p.write_text(PARAMS_TEXT.replace("seed: 0", "seed: &s [1, *s]")),
     r"error: params.yaml: seed = \[1, \[1, \[1, \[\.\.\.\]\]\]\] is not allowed; allowed: an integer in \[0, 2147483647\]"),
    (lambda p: p.write_text(PARAMS_TEXT.replace("\nepochs: 1\n", "\nepochs: 5000\n")),
     r"error: params.yaml: epochs = 5000 is not allowed; allowed: an integer in \[1, 1000\]"),
    (lambda p: p.write_text("\x00" * 2_000_000), r"error: params.yaml: larger than 1024 KiB; .*"),
])
def test_unreadable_params_file_is_one_line_in_every_stage(tmp_path, write, line):
    write(tmp_path / "params.yaml")
    sys_tmp = tmp_path / "systmp"
    sys_tmp.mkdir()
    for stage in ("fetch_data", "train_baseline"):
        r = stage_process(tmp_path, stage, sys_tmp=sys_tmp, timeout=120)
        assert_one_line_error(r, line)
    assert tree(tmp_path) == {} and list(sys_tmp.iterdir()) == []


def test_values_read_exactly_as_dvc_reads_them():
    from dvc.utils.serialize import parse_yaml
    text = "a: 010\nb: 1:30\nc: .\nd: -.\ne: 1e-05\nf: .5\ng: 0o10\nh: yes\ni: 1_000\nj: 0x1F\nk: ~\nl: 1E3\n"
    assert parse(text) == parse_yaml(text, "params.yaml")       # DVC's own reader of params files
    assert parse(text)["a"] == 10 and parse(text)["b"] == "1:30" and parse(text)["c"] == "."


@pytest.mark.parametrize("key,value,line", [
    ("learning_rate", ".", r"learning_rate = '\.' is not allowed; allowed: a finite number in \(0, 10\]"),
    ("learning_rate", "-.", r"learning_rate = '-\.' is not allowed; allowed: a finite number in \(0, 10\]"),
    ("learning_rate", "1" * 400, r"learning_rate = 1111.* is not allowed; allowed: a finite number in \(0, 10\]"),
    ("epochs", "1:30", r"epochs = '1:30' is not allowed; allowed: an integer in \[1, 1000\]"),
    ("epochs", "1" * 5000, r"holds an integer of more than 4300 digits; not a params file value"),
    ("seed", "010", None),                                     # 10, as DVC reads it: valid
])
def test_odd_numbers_are_valid_or_one_line(tmp_path, key, value, line):
    text = re.sub(rf"(?m)^{key}: .*$", f"{key}: {value}", PARAMS_TEXT)
    (tmp_path / "params.yaml").write_text(text)
    if line is None:
        assert load(tmp_path / "params.yaml")[key] == 10
        return
    with pytest.raises(ParamsError) as e:
        load(tmp_path / "params.yaml")
    assert re.search(line, str(e.value)) and "\n" not in str(e.value)


def test_a_url_with_a_control_character_is_one_line():
    p = tiny_params()
    p["data"]["url"] = "https://example.org/cifar.tar.gz\nrm -rf /"
    with pytest.raises(ParamsError) as e:
        validate(p)
    assert str(e.value).startswith("params.yaml: data.url = 'https://example.org/cifar.tar.gz\\nrm -rf /' is not allowed")
    assert "\n" not in str(e.value)


def test_an_impossible_date_is_one_line_of_its_own():
    with pytest.raises(ParamsError, match=r"^params.yaml: a value cannot be read \(month must be in 1\.\.12\)$"):
        parse("seed: 2001-13-05\n")
