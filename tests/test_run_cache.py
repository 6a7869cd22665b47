"""DVC's run cache: a stage already run (same command, deps, params) is restored, not run again.

The session fixture `variant_sweep` (tests/conftest.py) queued the contract's variant sweep
(3 center-loss variants x seeds 1, 2) plus a train_baseline-only experiment (seed 3) in a copy
of the tiny pipeline whose run cache was emptied, and ran the queue.
"""
import json
import re
import shlex

import pytest
import yaml

from tests.conftest import (ALWAYS_RUNS, BASELINE_ONLY_SEED, REPO, SWEEP_SEEDS, SWEEP_VARIANTS, dvc, exp_logs, exp_metrics,
                            git)

pytestmark = pytest.mark.slow

STAGES = ["hash_source", "fetch_data", "train_baseline", "kmeans_centroids", "train_center_loss",
          "extract_activations@baseline", "extract_activations@center_loss",
          "tsne@baseline", "tsne@center_loss", "gradcam@baseline", "gradcam@center_loss", "compare", "explorer"]


def _ran(log: str, stage: str) -> bool:
    """Whether a `dvc exp run` log shows `stage`'s command running (not restored, not skipped)."""
    return f"Running stage '{stage}':" in log


def test_every_stage_can_be_saved_in_the_run_cache():
    from dvc.repo import Repo
    with Repo(str(REPO)) as repo:  # DVC's conditions (dvc/stage/cache.py _can_hash, Stage.run)
        stages = list(repo.index.stages)
        assert sorted(s.addressing for s in stages) == sorted(STAGES)
        for stage in stages:
            assert not any(o.persist for o in stage.outs), stage.addressing
            # Stage.run saves to the run cache only when every cache: false out is a metric or plot
            assert all(o.use_cache or o.is_metric or o.is_plot for o in stage.outs), stage.addressing


def test_a_variant_sweep_trains_one_baseline_per_seed(variant_sweep):
    logs = exp_logs(variant_sweep)
    direct = {ref.rsplit("/", 1)[-1]: v for ref, v in exp_metrics(variant_sweep).items()}
    sweep = {name: p for name, (p, _) in direct.items() if p["seed"] in SWEEP_SEEDS}
    assert sorted((p["center_loss"]["variant"], p["seed"]) for p in sweep.values()) == \
        sorted((v, s) for v in SWEEP_VARIANTS for s in SWEEP_SEEDS)
    trained = [name for name in sweep if _ran(logs[name], "train_baseline")]
    assert sorted(sweep[n]["seed"] for n in trained) == list(SWEEP_SEEDS)          # 2, not 6
    for name in sweep:
        assert _ran(logs[name], "train_center_loss"), name                          # every variant trains its own
        if name not in trained:
            assert "Stage 'train_baseline' is cached - skipping run, checking out outputs" in logs[name]
    fetched = sorted(direct[n][0]["seed"] for n, log in logs.items() if _ran(log, "fetch_data"))
    assert fetched == [*SWEEP_SEEDS, BASELINE_ONLY_SEED]                # one fetch per seed (it draws the splits)
    # a seed's baseline metrics are the same in every variant; its center-loss metrics are not
    for seed in SWEEP_SEEDS:
        runs = [direct[n][1] for n in sweep if sweep[n]["seed"] == seed]
        assert len({json.dumps(f["plots/train_baseline/metrics.json"]) for f in runs}) == 1
        assert len({json.dumps(f["plots/train_center_loss/metrics.json"]) for f in runs}) == len(SWEEP_VARIANTS)
    only = next(n for n, (p, _) in direct.items() if p["seed"] == BASELINE_ONLY_SEED)
    assert _ran(logs[only], "train_baseline") and not _ran(logs[only], "train_center_loss")


def test_repeating_a_finished_experiment_runs_no_stage(variant_sweep):
    r = dvc(variant_sweep, "exp", "run", "--temp", "-n", "again", "-S", "center_loss.variant=island",
            "-S", f"seed={SWEEP_SEEDS[0]}")
    try:
        _check_restored(variant_sweep, r.stdout + r.stderr)
    finally:
        dvc(variant_sweep, "exp", "remove", "again")                   # the sweep stays as queued for other tests


def _check_restored(variant_sweep, log: str) -> None:
    """Every stage restored from the run cache, the same numbers as the first run, curves readable."""
    assert re.findall(r"Running stage '(.+)'", log) == [ALWAYS_RUNS], log     # the fingerprint only
    for stage in STAGES[1:]:
        assert f"Stage '{stage}' is cached - skipping run, checking out outputs" in log
    direct = {ref.rsplit("/", 1)[-1]: v for ref, v in exp_metrics(variant_sweep).items()}
    first = next(f for n, (p, f) in direct.items()
                 if n != "again" and p["seed"] == SWEEP_SEEDS[0] and p["center_loss"]["variant"] == "island")
    assert direct["again"][1] == first                                              # the same numbers
    # and the restored experiment's cached outputs (curves) are readable from its commit
    from dvc.api import DVCFileSystem
    ref = next(line for line in git(variant_sweep, "for-each-ref", "--format=%(refname)", "refs/exps").split()
               if line.endswith("/again"))
    rows = DVCFileSystem(str(variant_sweep), rev=ref).read_text("plots/train_center_loss/plots/metrics/val/accuracy.tsv")
    assert len(rows.splitlines()) == 1 + yaml.safe_load((variant_sweep / "params.yaml").read_text())["epochs"]


def sweep_names(repo, seed: int) -> dict[str, str]:
    """{variant: experiment name} of the sweep's experiments of one seed."""
    return {p["center_loss"]["variant"]: ref.rsplit("/", 1)[-1] for ref, (p, f) in exp_metrics(repo).items()
            if p["seed"] == seed and "plots/train_center_loss/metrics.json" in f}


def test_plots_diff_overlays_two_variants(variant_sweep):
    names = sweep_names(variant_sweep, SWEEP_SEEDS[0])
    a, b = names["center"], names["island"]
    diff = json.loads(dvc(variant_sweep, "plots", "diff", a, b, "--json").stdout)["data"]
    for curve in ("accuracy", "cross_entropy", "center_loss_terms"):  # both experiments in one chart
        assert [item["revisions"] for item in diff[curve]] == [[a, b]]
    grids = {tuple(item["revisions"]) for item in diff["plots/gradcam/center_loss/grid.png"]}
    assert grids == {(a,), (b,)}                                      # cached images of both experiments


def _documented(line_start: str) -> list[str]:
    """The README command lines that start with `line_start`, split as bash would."""
    return [shlex.split(line) for line in (REPO / "README.md").read_text().splitlines() if line.startswith(line_start)]


def test_readmes_exp_show_lines_fit_a_terminal_for_a_variant_sweep(variant_sweep):
    lines = _documented("dvc exp show")
    assert len(lines) >= 2
    for args in lines:
        header = dvc(variant_sweep, *args[1:], "--csv").stdout.splitlines()[0].split(",")
        assert max(map(len, header)) <= 40, [h for h in header if len(h) > 40]
        assert not [h for h in header if ".json:" in h]                # no file-path prefixes
    keep = next(a for a in lines if "--keep" in a)
    table = dvc(variant_sweep, *keep[1:], "--csv").stdout.splitlines()
    assert table[0].split(",") == ["Experiment", "baseline.test.accuracy", "center_loss.test.accuracy",
                                   "difference.test_accuracy", "seed", "center_loss.variant"]
    assert len(table) >= 2 + len(SWEEP_VARIANTS) * len(SWEEP_SEEDS)   # workspace, HEAD, the experiments
    wide = dvc(variant_sweep, *keep[1:], env={"COLUMNS": "200"}).stdout
    assert max(map(len, wide.splitlines())) <= 200
