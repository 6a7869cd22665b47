"""End to end: the real pipeline (`dvc repro`, `dvc exp run`, `dvc status`, `dvc plots`) in a temp git repo.

The session fixture `pipeline_repo` (tests/conftest.py) copies the project, points data.url at
a tiny official-format archive on a loopback server and runs `dvc repro` once on tiny settings.
"""
import json
import os
import re
import shlex

import pytest
import yaml

from tests.conftest import dvc, git, stale

pytestmark = pytest.mark.slow

STAGES = ["hash_source", "fetch_data", "train_baseline", "kmeans_centroids", "train_center_loss",
          "extract_activations@baseline", "extract_activations@center_loss",
          "tsne@baseline", "tsne@center_loss", "gradcam@baseline", "gradcam@center_loss", "compare", "explorer"]


def _stale_stages(repo, key, value):
    """Set a param in params.yaml, return the stages `dvc status` calls changed, restore params."""
    path = repo / "params.yaml"
    original = path.read_text()
    params = yaml.safe_load(original)
    section, name = key.split(".")
    params[section][name] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        return set(stale(repo))
    finally:
        path.write_text(original)


def _experiments(repo):
    """{experiment name: metrics dict of every metrics file} from `dvc exp show --json`."""
    out = {}
    for row in json.loads(dvc(repo, "exp", "show", "--json").stdout):
        for exp in row.get("experiments") or []:
            for rev in exp["revs"]:
                metrics = (rev.get("data") or {}).get("metrics") or {}
                out[rev.get("name") or rev["rev"]] = {f: m["data"] for f, m in metrics.items() if "data" in m}
    return out


def test_repro_runs_every_stage_on_the_tiny_archive(pipeline_repo):
    lock = yaml.safe_load((pipeline_repo / "dvc.lock").read_text())
    assert sorted(lock["stages"]) == sorted(STAGES)
    info = json.loads((pipeline_repo / "data/fetch.json").read_text())
    assert info["sizes"] == {"train": 200, "val": 50, "test": 100}
    metrics = json.loads(dvc(pipeline_repo, "metrics", "show", "--json").stdout)
    files = next(iter(metrics.values()))["data"]
    for name in ("baseline", "center_loss"):
        test = files[f"plots/train_{name}/metrics.json"]["data"][name]["test"]
        rows = json.loads((pipeline_repo / f"plots/train_{name}/plots/sklearn/confusion_matrix.json").read_text())
        assert len(rows) == 100 and test["loss"] > 0
        assert test["accuracy"] == sum(r["actual"] == r["predicted"] for r in rows) / 100


def _leaves(tree, prefix=""):
    """{"a.b": value} of every leaf of a nested dict."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    return {k: v for key, sub in tree.items() for k, v in _leaves(sub, f"{prefix}.{key}" if prefix else key).items()}


# What `dvc exp show` prints of the default pipeline: the headline numbers, one file per stage
# (keys unique across files, so `dvc exp show` names each column by its key alone)
HEADLINE = {
    "plots/train_baseline/metrics.json": {"baseline.test.accuracy", "baseline.test.loss"},
    "plots/train_center_loss/metrics.json": {"center_loss.test.accuracy", "center_loss.test.loss"},
    "plots/kmeans_centroids/metrics.json": {"kmeans.nmi", "kmeans.purity"},
    **{f"plots/tsne/{m}/metrics.json": {f"{m}.{layer}.knn_accuracy_2d" for layer in ("conv2d", "conv2d_4", "dense", "dense_1")}
       for m in ("baseline", "center_loss")},
    **{f"plots/gradcam/{m}/metrics.json": {f"{m}.deletion_auc", f"{m}.insertion_auc"} for m in ("baseline", "center_loss")},
    "plots/compare/metrics.json": {f"difference.{k}" for k in
                                   ("test_accuracy", "test_loss", "dense_kmeans_nmi", "dense_intra_inter_ratio")},
}
MAX_METRIC_COLUMNS = 30


def test_exp_show_lists_the_headline_metrics_only(pipeline_repo):
    rows = json.loads(dvc(pipeline_repo, "exp", "show", "--json").stdout)
    metrics = rows[0]["data"]["metrics"]                         # the workspace row
    found = {f: set(_leaves(m["data"])) for f, m in metrics.items()}
    assert found == HEADLINE
    assert sum(map(len, found.values())) <= MAX_METRIC_COLUMNS
    # every other number is in the details.json beside each metrics file
    for f in HEADLINE:
        details = _leaves(json.loads((pipeline_repo / f).with_name("details.json").read_text()))
        owner = next(iter(metrics[f]["data"])) if f != "plots/compare/metrics.json" else ""
        headline = {k[len(owner) + 1:] if owner else k: v for k, v in _leaves(metrics[f]["data"]).items()}
        assert {k: v for k, v in details.items() if k in headline} == headline


def test_train_baseline_only_experiment_carries_no_metrics_it_did_not_produce(pipeline_repo):
    dvc(pipeline_repo, "exp", "run", "--temp", "-n", "baseline-only", "train_baseline", "-S", "seed=1")
    exps = _experiments(pipeline_repo)
    assert set(exps["baseline-only"]) == {"plots/train_baseline/metrics.json"}
    assert exps["baseline-only"]["plots/train_baseline/metrics.json"] != \
        json.loads((pipeline_repo / "plots/train_baseline/metrics.json").read_text())   # its own run
    ref = next(line.split()[-1] for line in git(pipeline_repo, "for-each-ref", "refs/exps").splitlines()
               if line.endswith("/baseline-only"))
    tracked = [p for p in git(pipeline_repo, "ls-tree", "-r", "--name-only", ref, "plots").split()
               if not p.endswith("/.gitignore")]                     # DVC's ignore files of the cached outputs
    assert tracked == ["plots/train_baseline/metrics.json"]            # no other stage's (stale) metrics
    # the a-f table's recipe (docs/experiments.md) prints the variant params and the baseline's test numbers only
    from tests.conftest import REPO
    line = next(l for l in (REPO / "docs/experiments.md").read_text().splitlines()
                if l.startswith("dvc exp show --drop '.*' --keep") and "batch_norm" in l)
    table = dvc(pipeline_repo, *shlex.split(line)[1:], "--csv").stdout.splitlines()
    assert table[0].split(",") == ["Experiment", "baseline.test.accuracy",
                                   "baseline.test.loss", "seed", "optimizer",
                                   "learning_rate", "lr_schedule", "batch_norm", "augment"]
    assert any(row.startswith("baseline-only,") for row in table[1:])
    assert stale(pipeline_repo) == {}  # workspace untouched


def test_plots_show_finds_the_curves_of_a_training_still_running(pipeline_repo, tmp_path):
    import shutil
    import signal
    import subprocess
    import sys
    import time
    repo = tmp_path / "repo"
    shutil.copytree(pipeline_repo, repo, symlinks=True)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["epochs"] = 200          # minutes of training: plenty of time to look while it runs
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.rmtree(repo / "plots/train_baseline/plots")            # so every curve point seen is this run's
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ.get('PATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-m", "dvc", "repro", "train_baseline"], cwd=repo, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        backup = repo / "checkpoints/train_baseline/state.json"     # written when an epoch is done
        deadline = time.monotonic() + 300
        while not backup.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert backup.exists(), "no epoch finished"
        shown = json.loads(dvc(repo, "plots", "show", "--json", "accuracy").stdout)["data"]["accuracy"][0]
        assert proc.poll() is None                                  # still training
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    rows = [r for r in shown["content"]["data"]["values"] if "train_baseline" in r.get("filename", "")]
    assert rows and "0" in {r["step"] for r in rows}                  # the finished epochs so far


def test_repro_log_has_no_tensorflow_noise_and_says_how_long_each_stage_took(pipeline_repo):
    import re
    log = (pipeline_repo.parent / "repro.log").read_text()
    assert not re.search(r"^[IWEF]\d{4} ", log, re.M), "a TensorFlow C++ log line"   # I0000 00:00:... cudart_stub
    for noise in ("absl::InitializeLog", "cuInit", "cuda drivers", "cpu_feature_guard", "rebuild TensorFlow"):
        assert noise not in log
    for stage in STAGES:
        assert re.search(rf"^{re.escape(stage)}: done in [0-9.]+ s$|^{re.escape(stage)}: done in \d+ min \d\d s$",
                         log, re.M), stage
    # one Keras line per epoch in a log file (epochs = 1: Keras prints no "Epoch 1/1" header)
    assert re.search(r"^\d+/\d+ - .* - accuracy: [0-9.]+ .* - val_accuracy: [0-9.]+", log, re.M)
    assert re.search(r"^baseline conv2d: t-SNE of \d+ points in \d+ dims \.\.\.$", log, re.M)  # per layer


def test_second_repro_does_nothing(pipeline_repo):
    r = dvc(pipeline_repo, "repro")
    assert re.findall(r"Running stage '(.+)'", r.stdout) == ["hash_source"]   # the fingerprint, and nothing else
    assert "Stage 'fetch_data' didn't change, skipping" in r.stdout
    assert stale(pipeline_repo) == {}


def test_rerun_scope_of_tsne_and_gradcam_params(pipeline_repo):
    # `dvc status` names the stages whose own params changed; `compare` follows when they rerun.
    assert _stale_stages(pipeline_repo, "tsne.perplexity", 12) == {"tsne@baseline", "tsne@center_loss"}
    assert _stale_stages(pipeline_repo, "gradcam.images_per_class", 2) == {"gradcam@baseline", "gradcam@center_loss"}
    assert _stale_stages(pipeline_repo, "center_loss.mu", 0.2) == {"train_center_loss", "compare"}  # its report names it
    assert stale(pipeline_repo) == {}


def test_experiment_with_another_optimizer_reports_test_accuracy(pipeline_repo):
    # adam, not the contract's `-S optimizer=sgd`: sgd is the default, so that experiment would train nothing
    r = dvc(pipeline_repo, "exp", "run", "--temp", "-n", "adam", "train_baseline", "-S", "optimizer=adam")
    assert "Running stage 'train_baseline'" in r.stdout
    exps = _experiments(pipeline_repo)
    assert "adam" in exps
    acc = exps["adam"]["plots/train_baseline/metrics.json"]["baseline"]["test"]["accuracy"]
    assert acc * 100 == pytest.approx(round(acc * 100), abs=1e-9)  # a count of the 100 tiny test images
    assert stale(pipeline_repo) == {}  # workspace untouched


def test_unknown_optimizer_fails_fast_naming_the_key(pipeline_repo):
    r = dvc(pipeline_repo, "exp", "run", "-S", "optimizer=adagrad", check=False, timeout=300)
    try:
        assert r.returncode != 0
        assert "optimizer = 'adagrad' is not allowed; allowed: adam, sgd, rmsprop" in r.stdout + r.stderr
        assert "Epoch 1" not in r.stdout + r.stderr
    finally:  # DVC removed the stage's outputs before running it: restore the workspace as a user would
        git(pipeline_repo, "checkout", "--", ".")
        dvc(pipeline_repo, "checkout")
    assert stale(pipeline_repo) == {}


def test_plots_show_lists_curves_embeddings_heatmaps_and_confusion(pipeline_repo):
    shown = json.loads(dvc(pipeline_repo, "plots", "show", "--json").stdout)
    assert not shown.get("errors")
    ids = set(shown["data"])
    for name in ("baseline", "center_loss"):
        for layer in ("conv2d", "conv2d_4", "dense", "dense_1"):
            assert f"plots/tsne/{name}/2d/{layer}.tsv" in ids
            assert f"plots/tsne/{name}/3d/{layer}.png" in ids
        assert f"plots/gradcam/{name}/grid.png" in ids
        assert f"plots/train_{name}/plots/sklearn/confusion_matrix.json" in ids
    assert {"accuracy", "cross_entropy", "learning_rate", "center_loss_terms", "center_distances"} <= ids
    # compare's figures redraw the curves and confusion matrices: linked from its report, not shown twice
    assert not {"plots/compare/curves.png", "plots/compare/confusion_matrices.png"} & ids


def test_exp_run_with_a_learning_rate_in_exponent_form(pipeline_repo):
    # DVC writes `learning_rate: 1e-05`, a string to YAML 1.1 readers; the stages must read a number
    # (a constant rate, so each epoch's logged rate is the one given). Up to train_center_loss: the
    # later stages read params.yaml through the same study.params.load
    dvc(pipeline_repo, "exp", "run", "--temp", "-n", "lr-1e-5", "train_center_loss", "-S", "learning_rate=1e-5",
        "-S", "lr_schedule=none")
    ref = next(line.split()[-1] for line in git(pipeline_repo, "for-each-ref", "refs/exps").splitlines()
               if line.endswith("/lr-1e-5"))
    assert "\nlearning_rate: 1e-05\n" in git(pipeline_repo, "show", f"{ref}:params.yaml")
    from dvc.api import DVCFileSystem
    fs = DVCFileSystem(str(pipeline_repo), rev=ref)                  # the curves are cached outputs
    for name in ("baseline", "center_loss"):
        tsv = fs.read_text(f"plots/train_{name}/plots/metrics/learning_rate.tsv")
        rates = [float(line.split("\t")[-1]) for line in tsv.splitlines()[1:]]
        assert rates and all(r == pytest.approx(1e-05, rel=1e-6) for r in rates)  # the rate trained with
    assert stale(pipeline_repo) == {}  # workspace untouched
