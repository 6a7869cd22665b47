"""study.summary: statistics on hand-made numbers, the dvc.lock freshness check, reading one
experiment's files, and (slow) the whole command on queued seed experiments of a tiny DVC repo."""
import hashlib
import json
import math
import subprocess

import numpy as np
import pytest
import yaml

from study import summary
from study.params import validate
from study.summary import Experiment, describe, fresh_stages, paired, verdict
from tests.conftest import REPO

T_975_4 = 2.7764451051977987   # Student t, 97.5th percentile, 4 degrees of freedom (tables)
T_975_2 = 4.302652729911275    # ... 2 degrees of freedom
T_975_1 = 12.706204736174704   # ... 1 degree of freedom


def test_describe_mean_and_sample_sd():
    assert describe([1, 2, 3, 4, 5]) == {"n": 5, "mean": 3.0, "sd": pytest.approx(math.sqrt(2.5))}
    assert describe([0.7]) == {"n": 1, "mean": 0.7, "sd": None}
    assert describe([]) == {"n": 0, "mean": None, "sd": None}


def test_paired_t_interval_and_sign_count():
    d = paired([1, 2, 3, 4, 5])
    half = T_975_4 * math.sqrt(2.5) / math.sqrt(5)
    assert d["ci"] == [pytest.approx(3 - half), pytest.approx(3 + half)]
    assert (d["positive"], d["negative"]) == (5, 0)
    d = paired([-0.01, 0.005, 0.02])
    sd = np.std([-0.01, 0.005, 0.02], ddof=1)
    assert d["mean"] == pytest.approx(0.005)
    assert d["ci"] == [pytest.approx(0.005 - T_975_2 * sd / math.sqrt(3)),
                       pytest.approx(0.005 + T_975_2 * sd / math.sqrt(3))]
    assert (d["positive"], d["negative"]) == (2, 1)
    assert paired([0.01])["ci"] is None


def test_verdict_claims_no_more_than_the_interval():
    assert verdict(paired([-0.01, 0.005, 0.02]), 100, " points") == \
        "no detectable difference at n=3: +0.5 points [-3.23, +4.23] (2 of 3 seeds agree in sign)"
    assert verdict(paired([0.004, 0.006, 0.008, 0.005, 0.007]), 100, " points") == \
        "center_loss higher: +0.6 points [+0.404, +0.796] (5 of 5 seeds agree in sign)"
    assert verdict(paired([-0.2, -0.3, -0.25])).startswith("center_loss lower: -0.25 [")
    assert verdict(paired([0.01]), 100, " points") == "one seed: +1 points; no interval from one seed"
    assert verdict(paired([])) == "not measured"
    # skewed: the mean is positive while most seeds are negative; the count follows the mean
    assert verdict(paired([0.09, -0.01, -0.01, -0.01]), 100, " points").endswith("(1 of 4 seeds agree in sign)")


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


def _experiment_files(acc_b=0.5, acc_c=0.55, center_seed=0):
    """The files of a fake experiment commit: params, dvc.lock and the metrics summary reads."""
    params = {"seed": 0, "epochs": 1}
    metrics = {
        "plots/train_baseline/metrics.json": {"baseline": {"test": {"accuracy": acc_b, "loss": 1.5}}},
        "plots/train_center_loss/metrics.json": {"center_loss": {"test": {"accuracy": acc_c, "loss": 1.4}}},
        "plots/tsne/baseline/metrics.json": {"baseline": {"dense": {"knn_accuracy_2d": 0.4}}},
        "plots/tsne/baseline/details.json": {"dense": {"knn_accuracy_2d": 0.4, "silhouette_2d": 0.1}},
        "plots/tsne/center_loss/metrics.json": {"center_loss": {"dense": {"knn_accuracy_2d": 0.45}}},
        "plots/tsne/center_loss/details.json": {"dense": {"knn_accuracy_2d": 0.45, "silhouette_2d": 0.2}},
    }
    files = {p: json.dumps(m).encode() for p, m in metrics.items()}
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
    exp = summary.read_experiment("e1", "abc", _experiment_files().get)
    assert exp.values == {("baseline", "test_accuracy"): 0.5, ("baseline", "test_loss"): 1.5,
                          ("baseline", "dense_knn_accuracy"): 0.4, ("baseline", "dense_silhouette"): 0.1,
                          ("center_loss", "test_accuracy"): 0.55, ("center_loss", "test_loss"): 1.4,
                          ("center_loss", "dense_knn_accuracy"): 0.45, ("center_loss", "dense_silhouette"): 0.2}
    assert exp.missing == {} and exp.seed == 0
    # the center-loss stages' records are the parent's (seed 7): stale, so absent and explained
    stale = summary.read_experiment("e2", "def", _experiment_files(center_seed=7).get)
    assert set(stale.values) == {("baseline", k) for k in ("test_accuracy", "test_loss",
                                                             "dense_knn_accuracy", "dense_silhouette")}
    assert stale.missing["center_loss", "test_accuracy"] == \
        "train_center_loss did not run in this experiment (its plots/train_center_loss/metrics.json is older)"
    edited = _experiment_files()
    edited["plots/train_baseline/metrics.json"] = b'{"baseline": {"test": {"accuracy": 0.99, "loss": 0.1}}}'
    exp = summary.read_experiment("e3", "0a1", edited.get)
    assert exp.missing["baseline", "test_accuracy"] == \
        "plots/train_baseline/metrics.json was changed after train_baseline wrote it"
    del edited["plots/tsne/center_loss/details.json"]  # recorded in dvc.lock, not committed
    exp = summary.read_experiment("e4", "0a2", edited.get)
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


def test_seed_variants_are_recognised_from_their_training_params():
    base = dict(summary.SEED_RECIPE, epochs=5)
    assert summary.seed_variant(base) == ("c. b + per-epoch learning rate", 0.846)
    assert summary.seed_variant(base | {"batch_norm": False, "lr_schedule": "none"})[1] == 0.818
    assert summary.seed_variant(base | {"augment": True}) == ("d. c + rotation/flip", 0.812)
    assert summary.seed_variant(base | {"optimizer": "sgd", "learning_rate": 0.01})[1] == 0.818
    assert summary.seed_variant(base | {"optimizer": "sgd"}) is None  # not the seed's SGD rate
    assert summary.seed_variant(base | {"dtype_policy": "auto"}) is None  # bfloat16 on some machines
    before_the_key = {k: v for k, v in base.items() if k != "dtype_policy"}
    assert summary.seed_variant(before_the_key) == ("c. b + per-epoch learning rate", 0.846)


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


def test_readme_seed_recipe_commands_spell_out_every_key_whatever_the_defaults():
    defaults = yaml.safe_load((REPO / "params.yaml").read_text())
    needed = set(summary.SEED_RECIPE) | {"epochs"}
    [recipe] = _documented_dvc_commands("dvc exp run -n original-recipe", "```")
    table = _documented_dvc_commands("original_recipe=(", "dvc queue start")
    assert [c[c.index("-n") + 1][0] for c in table] == list("abcdef")
    expected = [("c. b + per-epoch learning rate", 0.846)] + [(label, acc) for label, _, acc in summary.SEED_TABLE]
    for cmd, variant in zip([recipe] + table, expected):
        given = _params_set_by(cmd)
        assert needed <= set(given), f"{variant[0]}: relies on params.yaml for {sorted(needed - set(given))}"
        params = validate(defaults | given)
        assert params["epochs"] == 50
        assert summary.seed_variant(params) == variant


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
    assert baselines["center"] == baselines["island"] == baselines["contrastive"]
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
