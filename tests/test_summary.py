"""study.summary: the dvc.lock freshness check, reading one
experiment's files, hostile files from other machines (in-process, on bytes), and (slow) the whole
command on queued seed experiments of a tiny DVC repo."""
import hashlib
import io
import json
import math
import re
import subprocess
import tracemalloc

import numpy as np
import pytest
import yaml

from study import experiments, summary
from study.experiments import Experiment, fresh_stages
from study.params import parse, validate
from study.statistics import describe
from study.untrusted import MAX_DEPTH, MAX_SIZE, UntrustedFileError
from tests.conftest import REPO

T_975_1 = 12.706204736174704   # Student t, 97.5th percentile, 1 degree of freedom (tables)


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _lock(code=b"print(1)\n", seed=0, epochs=1):
    """A two-stage dvc.lock: train (reads seed, train.py) -> report (reads train's out, epochs)."""
    return {
        "train": {"params": {"params.yaml": {"seed": seed}},
                  "deps": [{"path": "train.py", "md5": _md5(code)}],
                  "outs": [{"path": "model.bin", "md5": "m1"}]},
        "report": {"params": {"params.yaml": {"train.epochs": epochs}},
                   "deps": [{"path": "model.bin", "md5": "m1"}],
                   "outs": [{"path": "report.json", "md5": "r1"}]},
    }


def test_fresh_stages_follows_params_code_and_upstream_outputs():
    files = {"train.py": b"print(1)\n"}
    params = {"seed": 0, "train": {"epochs": 1}}
    md5 = lambda p: _md5(files[p]) if p in files else None  # noqa: E731
    assert fresh_stages(_lock(), params, md5) == {"train", "report"}
    assert fresh_stages(_lock(seed=3), params, md5) == set()  # report reads a stale model
    assert fresh_stages(_lock(epochs=5), params, md5) == {"train"}
    assert fresh_stages(_lock(code=b"print(2)\n"), params, md5) == set()
    lock = _lock()
    lock["report"]["deps"][0]["md5"] = "m0"  # ran against an older model
    assert fresh_stages(lock, params, md5) == {"train"}
    assert fresh_stages(_lock(), {"seed": 0}, md5) == {"train"}  # a param the commit lacks


def _experiment_files(acc_b=0.5, acc_c=0.55, center_seed=0, raw=None):
    """The files of a fake experiment commit: params, dvc.lock and the metrics summary reads
    (`raw`: {metrics path: bytes} written instead, with dvc.lock recording their md5)."""
    params = {"seed": 0, "epochs": 1}
    metrics = {
        "plots/train_baseline/metrics.json": {"baseline": {"test": {"accuracy": acc_b, "loss": 1.5}}},
        "plots/train_center_loss/metrics.json": {"center_loss": {"test": {"accuracy": acc_c, "loss": 1.4}}},
        "plots/tsne/baseline/metrics.json": {"baseline": {"dense": {"knn_accuracy_2d": 0.4}}},
        "plots/tsne/baseline/details.json": {"dense": {"knn_accuracy_2d": 0.4, "silhouette_2d": 0.1}},
        "plots/tsne/center_loss/metrics.json": {"center_loss": {"dense": {"knn_accuracy_2d": 0.45}}},
        "plots/tsne/center_loss/details.json": {"dense": {"knn_accuracy_2d": 0.45, "silhouette_2d": 0.2}},
    }
    files = {p: json.dumps(m).encode() for p, m in metrics.items()} | (raw or {})
    lock = {"stages": {}}
    for path in metrics:
        stage = path.split("/")[1] if "train_" in path else f"tsne@{path.split('/')[2]}"
        seed = center_seed if "center_loss" in path else 0
        entry = lock["stages"].setdefault(stage, {"params": {"params.yaml": {"seed": seed}}, "deps": [], "outs": []})
        entry["outs"].append({"path": path, "md5": _md5(files[path])})
    files["params.yaml"] = yaml.safe_dump(params).encode()
    files["dvc.lock"] = yaml.safe_dump(lock).encode()
    return files


def test_read_experiment_takes_values_only_from_stages_that_ran():
    exp = experiments.read_experiment("e1", "abc", _experiment_files().get)
    assert exp.values == {("baseline", "test_accuracy"): 0.5, ("baseline", "test_loss"): 1.5,
                          ("baseline", "dense_knn_accuracy"): 0.4, ("baseline", "dense_silhouette"): 0.1,
                          ("center_loss", "test_accuracy"): 0.55, ("center_loss", "test_loss"): 1.4,
                          ("center_loss", "dense_knn_accuracy"): 0.45, ("center_loss", "dense_silhouette"): 0.2}
    assert exp.missing == {} and exp.seed == 0
    # the center-loss stages' records are the parent's (seed 7): stale, so absent and explained
    stale = experiments.read_experiment("e2", "def", _experiment_files(center_seed=7).get)
    assert set(stale.values) == {("baseline", k) for k in ("test_accuracy", "test_loss",
                                                             "dense_knn_accuracy", "dense_silhouette")}
    assert stale.missing["center_loss", "test_accuracy"] == \
        "train_center_loss did not run in this experiment (its plots/train_center_loss/metrics.json is older)"
    edited = _experiment_files()
    edited["plots/train_baseline/metrics.json"] = b'{"baseline": {"test": {"accuracy": 0.99, "loss": 0.1}}}'
    exp = experiments.read_experiment("e3", "0a1", edited.get)
    assert exp.missing["baseline", "test_accuracy"] == \
        "plots/train_baseline/metrics.json was changed after train_baseline wrote it"
    del edited["plots/tsne/center_loss/details.json"]  # recorded in dvc.lock, not committed
    exp = experiments.read_experiment("e4", "0a2", edited.get)
    assert exp.missing["center_loss", "dense_silhouette"] == \
        "plots/tsne/center_loss/details.json is not in this experiment's commit"


def _exp(name, seed, acc_b, acc_c, **params):
    values = {("baseline", "test_accuracy"): acc_b}
    if acc_c is not None:
        values["center_loss", "test_accuracy"] = acc_c
    return Experiment(name, name, {"seed": seed, "epochs": 1, **params}, values,
                      {} if acc_c is not None else {("center_loss", "test_accuracy"): "did not run"})


def test_groups_by_every_param_but_seed_and_pairs_within_a_seed():
    exps = [_exp("a0", 0, 0.50, 0.52, lr=1), _exp("a1", 1, 0.60, 0.61, lr=1), _exp("a2", 2, 0.55, None, lr=1),
            _exp("b0", 0, 0.40, 0.45, lr=2), _exp("b0-again", 0, 0.1, 0.1, lr=2)]
    groups = summary.summarise(exps)
    assert [g["label"] for g in groups] == ["lr=1", "lr=2"]
    a, b = groups
    assert a["seeds"] == [0, 1, 2] and b["seeds"] == [0]  # b0-again repeats seed 0: not counted twice
    assert a["models"]["baseline"]["test_accuracy"] == describe([0.50, 0.60, 0.55])
    assert a["models"]["center_loss"]["test_accuracy"] == describe([0.52, 0.61])
    assert a["incomplete"]["center_loss.test_accuracy"] == ["a2: did not run"]
    assert a["difference"]["test_accuracy"]["n"] == 2
    assert a["difference"]["test_accuracy"]["mean"] == pytest.approx(0.015)
    assert b["difference"]["test_accuracy"]["verdict"] == "one seed: +5 points; no interval from one seed"
    text = summary.to_markdown(groups, ["q1: queued, not counted"])
    assert "| lr=2 | 1 (0) | 0.4000 (one seed) |" in text
    assert "0.5650 ± 0.0636 (n=2 of 3: incomplete)" in text
    assert "- q1: queued, not counted" in text


def test_the_original_studys_variants_are_recognised_from_their_training_params():
    base = dict(summary.ORIGINAL_RECIPE, epochs=5)
    assert summary.original_variant(base) == ("c. b + per-epoch learning rate", 0.846)
    assert summary.original_variant(base | {"batch_norm": False, "lr_schedule": "none"})[1] == 0.818
    assert summary.original_variant(base | {"augment": True}) == ("d. c + rotation/flip", 0.812)
    assert summary.original_variant(base | {"optimizer": "sgd", "learning_rate": 0.01})[1] == 0.818
    assert summary.original_variant(base | {"optimizer": "sgd"}) is None  # not the original study's SGD rate
    assert summary.original_variant(base | {"dtype_policy": "auto"}) is None  # bfloat16 on some machines
    for key, on in (("whiten_init", True), ("dirac_init", True), ("alternating_flip", True), ("ema_momentum", 0.99)):
        assert summary.original_variant(base | {key: on}) is None, key  # a trick for fewer epochs is not the recipe
    for key in summary.BEFORE_THE_KEY:  # an experiment from before the key ran with its off value
        before_the_key = {k: v for k, v in base.items() if k != key}
        assert summary.original_variant(before_the_key) == ("c. b + per-epoch learning rate", 0.846), key


def _documented_dvc_commands(start: str, end: str) -> list[list[str]]:
    """The arguments of each `dvc` command in docs/experiments.md from `start` to `end`, as bash
    expands them (`dvc` is a function printing its arguments, so shell arrays and line
    continuations are real)."""
    text = (REPO / "docs/experiments.md").read_text()
    i = text.index(start)
    block = text[i:text.index(end, i)]
    out = subprocess.run(["bash", "-euc", 'dvc() { printf "%s\\n" "$@"; printf "\\0"; }\n' + block],
                         capture_output=True, text=True, check=True).stdout
    return [cmd.strip("\n").split("\n") for cmd in out.split("\0") if cmd.strip()]


def _params_set_by(cmd: list[str]) -> dict:
    """{key: YAML value} of the -S options of one `dvc exp run` (seed sweeps aside); no key twice."""
    pairs = [cmd[i + 1].split("=", 1) for i, arg in enumerate(cmd) if arg == "-S"]
    pairs = [(k, yaml.safe_load(v)) for k, v in pairs if k != "seed"]
    assert len(pairs) == len(dict(pairs)), f"{cmd}: a key given twice"
    return dict(pairs)


def test_the_original_recipe_commands_spell_out_every_key_whatever_the_defaults():
    defaults = yaml.safe_load((REPO / "params.yaml").read_text())
    needed = set(summary.ORIGINAL_RECIPE) | {"epochs"}
    [recipe] = _documented_dvc_commands("dvc exp run -n original-recipe", "```")
    table = _documented_dvc_commands("original_recipe=(", "dvc queue start")
    assert [c[c.index("-n") + 1][0] for c in table] == list("abcdef")
    expected = [("c. b + per-epoch learning rate", 0.846)] + [(label, acc) for label, _, acc in summary.ORIGINAL_TABLE]
    for cmd, variant in zip([recipe] + table, expected):
        given = _params_set_by(cmd)
        assert needed <= set(given), f"{variant[0]}: relies on params.yaml for {sorted(needed - set(given))}"
        params = validate(defaults | given)
        assert params["epochs"] == 50
        assert summary.original_variant(params) == variant


# ---------------------------------------------------------------- experiments from other machines

# 406 bytes that expand to 9**9 (387 million) "lol"s once aliases are followed
BILLION_LAUGHS = b'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + b"".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n".encode() for p, c in zip("abcdefgh", "bcdefghi"))
TRAIN_METRICS = "plots/train_baseline/metrics.json"


def _read_good_and(bad: dict):
    """read_experiments() of two finished experiments: 'good' (ordinary files) and 'bad' (`bad`)."""
    rows = [{"Experiment": "good", "rev": "r1", "State": "Success"},
            {"Experiment": "bad", "rev": "r2", "State": "Success"}]
    files = {"r1": _experiment_files(), "r2": bad}
    return experiments.read_experiments(rows, lambda rev: files[rev].get)


HOSTILE_PARAMS = {  # params.yaml -> why its experiment is not counted
    "billion laughs": (BILLION_LAUGHS,
                       f"expands to more than {MAX_SIZE} values and characters (YAML aliases repeat values)"),
    "7 MB": (b"seed: 0\n" + b"# padding\n" * 700_000, "larger than 128 KiB"),
    "not UTF-8": (b"seed: 0\ndata: {url: caf\xe9}\n", "not UTF-8 text (byte 0xe9 at offset 23)"),
    "a list": (b"- seed\n- 0\n", "a list, not a mapping of params"),
    "a mapping inside itself": (b"data: &d {url: x, again: *d}\n",
                                "contains itself (a YAML anchor used in its own value)"),
    "nested 40 deep": (b"data: " + b"[" * 40 + b"]" * 40 + b"\n", f"nested deeper than {MAX_DEPTH} levels"),
    "nested 5000 deep": (b"data: " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested too deeply to be a params file"),
    "a date": (b"seed: 2026-12-07\n", "holds a date, not JSON-like data"),
    "a 400-bit integer": (b"seed: 0x" + b"f" * 100 + b"\n", "holds an integer of 400 bits (more than 64)"),
    "a 5000-digit integer": (b"seed: " + b"9" * 5000 + b"\n",
                             "holds an integer of more than 4300 digits; not a params file value"),
}


def _one_bad_file(file: str, data: bytes, reason: str) -> None:
    """An experiment whose `file` holds `data` is not counted, in one line; the good one is read whole."""
    bad = _experiment_files()
    bad[file] = data
    exps, skipped = _read_good_and(bad)
    assert skipped == [f"bad: {file}: {reason}; not counted"]
    assert [e.name for e in exps] == ["good"] and len(exps[0].values) == 8


@pytest.mark.parametrize("case", HOSTILE_PARAMS)
def test_hostile_params_yaml_leaves_its_experiment_out_in_one_line(case):
    _one_bad_file("params.yaml", *HOSTILE_PARAMS[case])


HOSTILE_LOCKS = {  # dvc.lock -> why its experiment is not counted
    "a list": (b"- stages\n", "expected a mapping with a `stages` mapping"),
    "stages a list": (b"stages: [train_baseline]\n", "expected a mapping with a `stages` mapping"),
    "a stage a number": (b"stages: {train_baseline: 1}\n", "stage train_baseline: not a mapping"),
    "an output without path": (b"stages: {train_baseline: {outs: [{md5: m1}]}}\n",
                               "stage train_baseline: an entry of `outs` has no file path"),
    "a dep path with a NUL": (b'stages: {train_baseline: {deps: [{path: "a\\0b"}]}}\n',
                              "stage train_baseline: an entry of `deps` has no file path"),
    "params a list": (b"stages: {train_baseline: {params: [seed]}}\n",
                      "stage train_baseline: `params` is not a mapping of files to mappings"),
    "a stage named in HTML": (b'stages: {"<b>x\\n|": 1}\n', "stage <b>x |: not a mapping"),
    "257 stages": (b"stages:\n" + b"".join(b"  s%d: {}\n" % i for i in range(257)), "257 stages, more than 256"),
}


@pytest.mark.parametrize("case", HOSTILE_LOCKS)
def test_hostile_dvc_lock_leaves_its_experiment_out_in_one_line(case):
    _one_bad_file("dvc.lock", *HOSTILE_LOCKS[case])


def test_fresh_stages_follows_a_chain_of_the_most_stages_allowed():
    """MAX_STAGES bounds fresh_stages' recursion (one call per upstream stage): a chain that long is fine."""
    lock = {f"s{i}": {"deps": [{"path": f"o{i - 1}", "md5": "m"}] if i else [], "outs": [{"path": f"o{i}", "md5": "m"}]}
            for i in range(experiments.MAX_STAGES)}
    assert fresh_stages(lock, {}, lambda p: None) == set(lock)


HOSTILE_METRICS = {  # plots/train_baseline/metrics.json, recorded in dvc.lock -> why its experiment is not counted
    "not JSON": (b'{"baseline": ', "not valid JSON (Expecting value: line 1 column 14 (char 13))"),
    "not UTF-8": (b'{"baseline": "\xff"}', "not UTF-8 text (byte 0xff at offset 14)"),
    "2 MB": (b" " * (2 << 20) + b"{}", "larger than 128 KiB"),
    "nested 60000 deep": (b"[" * 60_000 + b"]" * 60_000, "nested too deeply to parse"),
    "nested 40 deep": (b'{"baseline": ' + b"[" * 40 + b"]" * 40 + b"}", f"nested deeper than {MAX_DEPTH} levels"),
    "a 400-digit integer": (b'{"baseline": {"test": {"accuracy": 1' + b"0" * 399 + b"}}}",
                            "holds an integer of 1326 bits (more than 64)"),
    "a 5000-digit integer": (b'{"baseline": {"test": {"accuracy": ' + b"9" * 5000 + b"}}}", "not valid JSON "
                             "(Exceeds the limit (4300 digits) for integer string conversion: value has 5000 d…)"),
}


@pytest.mark.parametrize("case", HOSTILE_METRICS)
def test_hostile_metrics_json_leaves_its_experiment_out_in_one_line(case):
    data, reason = HOSTILE_METRICS[case]
    exps, skipped = _read_good_and(_experiment_files(raw={TRAIN_METRICS: data}))
    assert skipped == [f"bad: {TRAIN_METRICS}: {reason}; not counted"]
    assert [e.name for e in exps] == ["good"]


def test_metrics_json_of_another_shape_is_a_missing_number():
    # valid JSON, but a string that contains the dotted path: lookup must not index the string
    exp = experiments.read_experiment("e", "r", _experiment_files(raw={TRAIN_METRICS: b'"baseline.test.accuracy"'}).get)
    assert exp.missing["baseline", "test_accuracy"] == f"{TRAIN_METRICS} has no number at baseline.test.accuracy"
    assert exp.values["center_loss", "test_accuracy"] == 0.55  # control: the other files count


def test_the_repositorys_params_yaml_is_read_as_before():
    files = _experiment_files()
    files["params.yaml"] = (REPO / "params.yaml").read_bytes()
    exp = experiments.read_experiment("e", "r", files.get)
    assert exp.params == experiments.flatten(parse((REPO / "params.yaml").read_text()))
    assert exp.params["data.url"].startswith("https://")


def test_a_billion_laughs_experiment_gives_a_small_summary_in_little_memory():
    bad = _experiment_files()
    bad["params.yaml"] = BILLION_LAUGHS
    tracemalloc.start()
    try:
        exps, skipped = _read_good_and(bad)
        text = summary.to_markdown(summary.summarise(exps), skipped)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 << 20 and len(text) < 3000
    assert f"- bad: params.yaml: expands to more than {MAX_SIZE} values and characters (YAML aliases " \
           "repeat values); not counted" in text
    assert "| all experiments | 1 (0) | 0.5000 (one seed) |" in text
    # control: three of its levels (729 "lol"s) are ordinary YAML, read and labelled
    small = _experiment_files()
    small["params.yaml"] = b"\n".join(BILLION_LAUGHS.splitlines()[:3])
    exps, skipped = _read_good_and(small)
    assert skipped == [] and exps[1].params["c"][8][8] == ["lol"] * 9


def _cells(row: str) -> int:
    """The number of cells of a markdown table row (escaped characters aside)."""
    return re.sub(r"\\.", "", row).count("|") - 1


def test_markdown_escapes_and_cuts_every_text_from_the_experiments():
    urls = {"pipe": "http://x/a|b", "newline": "http://x/a\nb", "html": '<img src=x onerror="alert(1)">&\\',
            "long": "http://x/" + "y" * 1000, "bidi": "http://x/\u202egpj.exe", "plain": "https://x/cifar.tar.gz"}
    exps = [_exp(name, 0, 0.5, 0.55, **{"data.url": url}) for name, url in urls.items()]
    exps.append(_exp("`[a|<i>](x)", 1, 0.5, None, **{"data.url": urls["plain"]}))
    text = summary.to_markdown(summary.summarise(exps), ["q|<b>1\n: queued, not counted"])
    rows = [line for line in text.splitlines() if line.startswith("| data.url=")]
    assert len(rows) == len(urls) * (1 + len(experiments.QUANTITIES))  # a newline in a value adds no line
    assert {_cells(row) for row in rows} == {7}
    assert "| data.url=http://x/a\\|b |" in text
    assert "| data.url=http://x/a b |" in text and "| data.url=http://x/ gpj.exe |" in text
    assert '| data.url=&lt;img src=x onerror="alert(1)"&gt;&amp;\\\\ |' in text and "<img" not in text
    assert "| data.url=http://x/" + "y" * 70 + "… |" in text  # the value cut to 80 characters
    assert "| data.url=https://x/cifar.tar.gz | 2 (0, 1) |" in text  # control: an ordinary value as it is
    assert "e.g. \\`\\[a\\|&lt;i&gt;\\](x): did not run" in text
    assert "- q\\|&lt;b&gt;1 : queued, not counted" in text


def test_strip_plot_draws_a_dollar_in_a_label_as_text(tmp_path):
    import matplotlib.pyplot as plt
    exps = [_exp("e0", 0, 0.5, 0.55, url="x$\\frac{$"), _exp("e1", 0, 0.5, 0.6, url="y")]
    groups = summary.summarise(exps)
    summary.save_figure(summary.strip_plot(groups, exps), tmp_path / "strip.png")
    assert (tmp_path / "strip.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig, ax = plt.subplots()  # control: as matplotlib's default text, the label is TeX and fails
    ax.set_xticks([0], [groups[0]["label"]])
    with pytest.raises(ValueError):
        fig.savefig(io.BytesIO(), format="png")
    plt.close(fig)


def test_odd_but_bounded_params_are_summarised_without_a_traceback():
    odd = {"dot": b"seed: .\n", "list1": b"seed: [1]\naugment: [1]\n", "lista": b"seed: [a]\naugment: [1]\n"}
    rows = [{"Experiment": name, "rev": name} for name in odd]
    files = {name: _experiment_files() | {"params.yaml": data} for name, data in odd.items()}
    exps, skipped = experiments.read_experiments(rows, lambda rev: files[rev].get)
    assert skipped == [] and [e.seed for e in exps] == [".", [1], ["a"]]
    text = summary.to_markdown(summary.summarise(exps), skipped)
    assert "| augment=\\[1\\] | 2 (\\['a'\\], \\[1\\]) |" in text  # seeds of any type, in a fixed order


def test_read_or_none_reads_no_more_than_its_limit(tmp_path):
    import fsspec
    fs = fsspec.filesystem("file")
    (tmp_path / "fits").write_bytes(b"x" * (1 << 20))
    (tmp_path / "big").write_bytes(b"x" * ((1 << 20) + 1))
    assert experiments._read_or_none(fs, str(tmp_path / "fits"), 1 << 20) == b"x" * (1 << 20)
    with pytest.raises(UntrustedFileError, match="big: larger than 1 MiB$"):
        experiments._read_or_none(fs, str(tmp_path / "big"), 1 << 20)
    assert experiments._read_or_none(fs, str(tmp_path / "absent")) is None
    assert experiments._read_or_none(fs, str(tmp_path)) is None  # a folder


def test_an_experiments_files_are_read_once_within_a_budget(monkeypatch):
    files = _experiment_files()
    files |= {f"big{i}.bin": bytes([i]) * 300_000 for i in range(3)}
    lock = yaml.safe_load(files["dvc.lock"])
    lock["stages"]["train_baseline"]["deps"] = [{"path": f"big{i % 3}.bin", "md5": _md5(files[f"big{i % 3}.bin"])}
                                                for i in range(100)]
    files["dvc.lock"] = yaml.safe_dump(lock).encode()
    reads = []
    monkeypatch.setattr(experiments, "READ_BUDGET", 1 << 20)
    exp = experiments.read_experiment("e", "r", lambda p: reads.append(p) or files.get(p))
    assert reads.count("big0.bin") == 1 and exp.values["baseline", "test_accuracy"] == 0.5
    files["big2.bin"] += b"x" * 300_000  # 1.2 MB in all
    with pytest.raises(UntrustedFileError, match="^dvc.lock: the files it names add up to more than 1 MiB$"):
        experiments.read_experiment("e", "r", files.get)


@pytest.mark.slow
def test_summary_pairs_each_variant_with_its_seeds_baseline(variant_sweep, tmp_path):
    from tests.conftest import BASELINE_ONLY_SEED, SWEEP_SEEDS, SWEEP_VARIANTS, exp_metrics
    direct = exp_metrics(variant_sweep)
    assert len(direct) == len(SWEEP_VARIANTS) * len(SWEEP_SEEDS) + 1
    assert [p["seed"] for p, f in direct.values() if "plots/train_center_loss/metrics.json" not in f] == \
        [BASELINE_ONLY_SEED]
    out = tmp_path / "out"
    groups = {g["params"]["center_loss.variant"]: g for g in summary.main(["--repo", str(variant_sweep), "--out", str(out)])}
    assert set(groups) == set(SWEEP_VARIANTS)                     # one table row per variant
    for variant, g in groups.items():
        runs = [(p["seed"], f) for p, f in direct.values() if p["center_loss"]["variant"] == variant]
        full = [(s, f) for s, f in runs if s != BASELINE_ONLY_SEED]
        assert sorted(g["seeds"]) == sorted(s for s, _ in runs)
        acc = {m: [f[f"plots/train_{m}/metrics.json"][m]["test"]["accuracy"] for s, f in (runs if m == "baseline" else full)]
               for m in ("baseline", "center_loss")}
        for m in acc:
            got = g["models"][m]["test_accuracy"]
            assert got["n"] == len(acc[m])
            assert got["mean"] == pytest.approx(np.mean(acc[m])) and got["sd"] == pytest.approx(np.std(acc[m], ddof=1))
        diffs = [f["plots/train_center_loss/metrics.json"]["center_loss"]["test"]["accuracy"]
                 - f["plots/train_baseline/metrics.json"]["baseline"]["test"]["accuracy"] for _, f in full]
        d = g["difference"]["test_accuracy"]
        half = T_975_1 * np.std(diffs, ddof=1) / math.sqrt(2)
        assert d["n"] == 2 and d["mean"] == pytest.approx(np.mean(diffs))
        if half:
            assert d["ci"] == [pytest.approx(np.mean(diffs) - half), pytest.approx(np.mean(diffs) + half)]
    # each seed's baseline is one training (restored by the run cache): the same numbers in every variant
    baselines = {v: sorted((s, json.dumps(f["plots/train_baseline/metrics.json"])) for p, f in direct.values()
                           for s in [p["seed"]] if p["center_loss"]["variant"] == v and s in SWEEP_SEEDS)
                 for v in SWEEP_VARIANTS}
    assert len({json.dumps(b) for b in baselines.values()}) == 1 and len(baselines) == len(SWEEP_VARIANTS)
    # the baseline-only experiment: counted for the baseline, incomplete (not stale values) for the rest
    g = groups["center"]
    assert g["models"]["baseline"]["test_accuracy"]["n"] == 3 and g["models"]["center_loss"]["test_accuracy"]["n"] == 2
    lacking = g["incomplete"]["center_loss.test_accuracy"]
    assert len(lacking) == 1 and "train_center_loss did not run in this experiment" in lacking[0]
    assert "baseline.test_accuracy" not in g["incomplete"]
    text = (out / "summary.md").read_text()
    assert "(n=2 of 3: incomplete)" in text and "## Incomplete" in text
    assert "center_loss.variant=island" in text                  # groups are labelled by what varies
    assert json.loads((out / "summary.json").read_text())["groups"][0]["seeds"]
    assert (out / "strip.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
