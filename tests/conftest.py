"""Fixtures: the real params.yaml shrunk to tiny settings, in a temp working directory."""
from __future__ import annotations

import copy
import json
import os
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.synthetic import write_splits

REPO = Path(__file__).resolve().parents[1]

# fetch_data keeps each download in Keras's datasets folder (study.download.kept_archive): the
# session gets its own KERAS_HOME, and each test a fresh one (own_keras_home), so no test sees
# the user's copies or another test's
os.environ["KERAS_HOME"] = tempfile.mkdtemp(prefix="keras_home-")


@pytest.fixture(autouse=True)
def own_keras_home(tmp_path_factory, monkeypatch):
    """An empty KERAS_HOME for each test (see above)."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path_factory.mktemp("keras_home")))


def tiny_params() -> dict:
    """The repository's params.yaml with settings small enough for a test (same keys)."""
    p = yaml.safe_load((REPO / "params.yaml").read_text())
    p = copy.deepcopy(p)
    p.update(epochs=1, batch_size=32, lr_warmup_epochs=0.5,   # the default one-cycle warm-up ends within the epoch
             dtype_policy="float32")  # not auto: the same numbers on every test machine
    p["data"].update(val_size=50, train_size=200, test_size=100)
    p["kmeans"].update(n_init=2)
    p["activations"].update(n_samples=60, pca_dims=8, batch_size=32, surface_images=2)
    p["tsne"].update(perplexity=10, early_exaggeration_iter=50, n_iter=100, early_exaggeration_iter_3d=25,
                     n_iter_3d=50, knn_k=5, trust_samples=50)
    p["gradcam"].update(images_per_class=1, auc_steps=8)
    return p


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """chdir into a temp dir holding tiny params.yaml and synthetic data/ splits; yields params."""
    params = tiny_params()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    write_splits(tmp_path)
    monkeypatch.chdir(tmp_path)
    return params


@pytest.fixture(scope="session")
def cifar_server(tmp_path_factory):
    """Loopback HTTP server: a tiny official-format archive (30 train + 10 test per class) at
    .archive_url with its .md5, plus error endpoints; see tests.cifar_archive.CifarServer."""
    from tests.cifar_archive import CifarServer
    with CifarServer(tmp_path_factory.mktemp("cifar_server")) as server:
        yield server


def dvc(repo: Path, *args: str, check: bool = True, timeout: int = 900, capture: bool = True,
        env: dict | None = None):
    """Run `dvc <args>` in repo with the venv's python first on PATH (and `env` added); returns CompletedProcess.
    capture=False sends the output to /dev/null: for `dvc queue start`, whose detached worker
    would keep captured pipes open (and this call waiting) until the queue is done."""
    import os
    import subprocess
    import sys
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
           "DVC_NO_ANALYTICS": "1", "PYTHONPATH": "", **(env or {})}
    out = {"capture_output": True} if capture else {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    r = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, env=env, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL, **out)
    if check and r.returncode != 0:
        raise AssertionError(f"dvc {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


ALWAYS_RUNS = "hash_source"   # dvc.yaml's always_changed stage: DVC lists it in every `dvc status`


def stale(repo: Path) -> dict:
    """`dvc status --json` of repo without hash_source's "always changed" (it fingerprints data.url
    on every run; fetch_data reruns only when that fingerprint changes)."""
    import json
    out = json.loads(dvc(repo, "status", "--json").stdout)
    assert out.pop(ALWAYS_RUNS, ["always changed"]) == ["always changed"], out
    return out


def git(repo: Path, *args: str) -> str:
    """Run git in repo (a throwaway identity) and return stdout."""
    import subprocess
    return subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@example.org", *args],
                          cwd=repo, check=True, capture_output=True, text=True).stdout


def copy_project(dest: Path) -> Path:
    """Copy the project's own files (tracked + untracked-not-ignored, no outputs) into a new git repo."""
    import shutil
    files = git(REPO, "ls-files", "--cached", "--others", "--exclude-standard").splitlines()
    for rel in files:
        src = REPO / rel
        if src.is_file() and not rel.startswith(("data/", "models/", "plots/", "node_modules/")):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    git(dest, "init", "-q", "-b", "main")
    return dest


@pytest.fixture(scope="session")
def pipeline_repo(tmp_path_factory, cifar_server):
    """A temporary git repo of this project whose tiny-data `dvc repro` has run (all stages)."""
    repo = copy_project(tmp_path_factory.mktemp("pipeline_repo"))
    params = tiny_params()
    params["data"].update(url=cifar_server.archive_url, md5=cifar_server.md5)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "tiny project")
    run = dvc(repo, "repro")
    (repo.parent / "repro.log").write_text(run.stdout + run.stderr)   # what a user sees (tests grep it)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "tiny run")
    return repo


def queue_and_wait(repo, *runs, timeout=2400):
    """Queue each `dvc exp run` argument list, then run the queue with one worker until no
    experiment is left queued. The worker exits by itself once the queue is empty; we wait for
    its process rather than poll `dvc queue status`, whose worker inspection races with a busy
    worker on DVC's file-system broker and can crash it (treeverse/dvc#10428); a worker that
    dies that way is started again."""
    import time

    for args in runs:
        dvc(repo, "exp", "run", "--queue", *args)
    deadline = time.monotonic() + timeout
    for _ in range(3):
        dvc(repo, "queue", "start", "-j", "1", capture=False, timeout=120)
        pid = json.loads((repo / ".dvc/tmp/exps/celery/dvc-exp-worker-1.json").read_text())["pid"]
        while alive(pid):
            assert time.monotonic() < deadline, "the queue did not finish in time"
            time.sleep(2)
        status = dvc(repo, "queue", "status").stdout
        if "Queued" not in status and "Running" not in status:
            break
    assert "Failed" not in status and "Queued" not in status, status
    return status


def alive(pid: int) -> bool:
    import os
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0] == "Z"  # a zombie is gone


def exp_metrics(repo):
    """{experiment ref: (params, {file: metrics})} read straight from each experiment's commit."""
    out = {}
    for line in git(repo, "for-each-ref", "--format=%(refname)", "refs/exps").splitlines():
        if line.count("/") < 4:
            continue  # refs/exps/exec/*, refs/exps/celery/*: DVC's own bookkeeping
        params = yaml.safe_load(git(repo, "show", f"{line}:params.yaml"))
        files = {}
        tracked = git(repo, "ls-tree", "-r", "--name-only", line, "plots").split()
        for f in ("plots/train_baseline/metrics.json", "plots/train_center_loss/metrics.json"):
            if f in tracked:    # a train_baseline-only experiment has no center-loss results at all
                files[f] = json.loads(git(repo, "show", f"{line}:{f}"))
        out[line] = (params, files)
    return out


def exp_logs(repo: Path) -> dict[str, str]:
    """{experiment name: its `dvc queue logs` output} of every queued experiment of the repo."""
    names = [line.rsplit("/", 1)[-1] for line in git(repo, "for-each-ref", "--format=%(refname)", "refs/exps").splitlines()
             if line.count("/") >= 4]
    return {name: dvc(repo, "queue", "logs", name).stdout for name in names}


# The variant sweep of the contract, at 2 loss variants x 2 seeds (the contract's 3 variants
# would add two whole experiments that test nothing more: what a sweep shares is per seed; the
# contrastive loss trains in test_train_center_loss), plus a train_baseline-only experiment
# (seed 3), queued in a copy of pipeline_repo whose run cache is emptied first, so every
# baseline any of them needs is trained by the sweep itself (seeds 1 and 2: the copy's workspace
# holds seed 0's results).
SWEEP_VARIANTS, SWEEP_SEEDS, BASELINE_ONLY_SEED = ("center", "island"), (1, 2), 3


@pytest.fixture(scope="session")
def variant_sweep(pipeline_repo, tmp_path_factory):
    """A repo where `dvc exp run --queue -S 'center_loss.variant=...' -S 'seed=1,2'` (and one
    `train_baseline -S seed=3`) ran with `dvc queue start`."""
    import shutil
    repo = tmp_path_factory.mktemp("variant_sweep") / "repo"
    shutil.copytree(pipeline_repo, repo, ignore=shutil.ignore_patterns("tmp"), symlinks=True)
    for ref in git(repo, "for-each-ref", "--format=%(refname)", "refs/exps").split():
        git(repo, "update-ref", "-d", ref)  # other tests' experiments
    git(repo, "checkout", "-q", "--", ".")
    dvc(repo, "checkout")
    shutil.rmtree(repo / ".dvc/cache/runs", ignore_errors=True)
    queue_and_wait(repo, ["-S", f"center_loss.variant={','.join(SWEEP_VARIANTS)}",
                          "-S", f"seed={','.join(map(str, SWEEP_SEEDS))}"],
                   ["train_baseline", "-S", f"seed={BASELINE_ONLY_SEED}"])
    return repo


# Runs a module as __main__ and, at exit, writes the process's peak RSS (VmHWM, in kB) to the
# file named by $PEAK_RSS_FILE. VmHWM belongs to the process image after exec; getrusage's
# ru_maxrss does not: Linux carries the forking parent's peak (pytest's, with TensorFlow) over exec.
_PEAK_LAUNCHER = """
import atexit, os, re, runpy, sys
def _peak():
    with open('/proc/self/status') as f, open(os.environ['PEAK_RSS_FILE'], 'w') as out:
        out.write(re.search(r'VmHWM:\\s+(\\d+) kB', f.read()).group(1))
atexit.register(_peak)
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)
"""


def run_measured(module: str, cwd: Path, env: dict, *args: str, timeout: float = 300):
    """`python -m module args` to completion: (exit code, stdout, stderr, peak RSS in MB)."""
    import subprocess
    import sys
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        peak_file = Path(d) / "peak"
        r = subprocess.run([sys.executable, "-c", _PEAK_LAUNCHER, module, *args], cwd=cwd,
                           env={**env, "PEAK_RSS_FILE": str(peak_file)}, capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
        return r.returncode, r.stdout, r.stderr, int(peak_file.read_text()) / 1024


def stage_process(root: Path, module: str, *args: str, sys_tmp: Path | None = None, timeout: float = 300):
    """Run `python -m stages.<module> args` in root (TMPDIR=sys_tmp if given); CompletedProcess."""
    import os
    import subprocess
    import sys
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if sys_tmp is not None:
        env["TMPDIR"] = str(sys_tmp)
    return subprocess.run([sys.executable, "-m", f"stages.{module}", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def assert_one_line_error(r, pattern: str, code: int = 1) -> str:
    """The process exited `code` with exactly one `error: ...` line on stderr matching `pattern`
    (TensorFlow's own start-up lines aside) and no traceback; returns that line."""
    import re
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert len(errors) == 1 and re.fullmatch(pattern, errors[0]), r.stderr
    return errors[0]


def tree(root: Path) -> dict[str, bytes]:
    """{relative path: contents} of every file under root/data and root/models (hidden ones too)."""
    return {str(p.relative_to(root)): p.read_bytes() for d in ("data", "models") if (root / d).exists()
            for p in sorted((root / d).rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def baseline_dir(tmp_path_factory):
    """(folder, test metrics): tiny params and synthetic splits where train_baseline ran once.
    Tests copy its models/ and plots/ rather than training again."""
    from stages import train_baseline
    from study.params import load
    root = tmp_path_factory.mktemp("baseline")
    # Keras's initialisation: from the default whitening of 3x3 patches (a start made for natural
    # images), one epoch on these colour-and-stripe classes leaves some of them merged in `dense`,
    # and the k-means test needs them apart
    (root / "params.yaml").write_text(yaml.safe_dump(dict(tiny_params(), whiten_init=False), sort_keys=False))
    write_splits(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        return root, train_baseline.main(load())
