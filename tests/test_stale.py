"""study.stale: a stage's new outputs remove the git-tracked results of every stage downstream."""
import subprocess
import sys

import yaml

from study import stale

DVC_YAML = {"stages": {
    "train": {"cmd": "true", "deps": ["data.txt"], "outs": ["model.bin", {"train/metrics.json": {"cache": False}}]},
    "probe": {"foreach": ["a", "b"], "do": {
        "cmd": "true", "deps": ["model.bin"],
        "outs": [{"probe/${item}/points": {"cache": False}}, "probe/${item}.npz"],
        "metrics": [{"probe/${item}/metrics.json": {"cache": False}}]}},
    "report": {"cmd": "true", "deps": ["probe/a/metrics.json", "probe/b/metrics.json"],
               "outs": [{"report.md": {"cache": False}}]},
    "other": {"cmd": "true", "deps": ["data.txt"], "metrics": [{"other.json": {"cache": False}}]},
}}
FILES = ("data.txt", "model.bin", "train/metrics.json", "probe/a/points/x.tsv", "probe/b/points/x.tsv",
         "probe/a.npz", "probe/a/metrics.json", "probe/b/metrics.json", "report.md", "other.json")


def _repo(root):
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=root, check=True)
    (root / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML))
    for f in FILES:
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_text(f)
    return root


def _left(root):
    return {f for f in FILES if (root / f).exists()}


def test_downstream_results_follow_the_graph_and_foreach(tmp_path):
    root = _repo(tmp_path)
    found = stale.downstream_results("train", root)
    assert {k: sorted(p.relative_to(root).as_posix() for p in v) for k, v in found.items()} == {
        "probe@a": ["probe/a/metrics.json", "probe/a/points"],
        "probe@b": ["probe/b/metrics.json", "probe/b/points"],
        "report": ["report.md"]}
    assert list(stale.downstream_results("probe@b", root)) == ["report"]
    assert stale.downstream_results("report", root) == {}
    assert stale.downstream_results("no_such_stage", root) == {}


def test_discard_removes_git_tracked_results_downstream_only(tmp_path, monkeypatch, capsys):
    root = _repo(tmp_path)
    monkeypatch.chdir(root)
    assert stale.discard_downstream_results("probe@a") == ["report"]
    assert _left(root) == set(FILES) - {"report.md"}
    assert stale.discard_downstream_results("train") == ["probe@a", "probe@b"]
    # cached outputs (probe/a.npz) stay: dvc.lock says what they are; other branches are untouched
    assert _left(root) == {"data.txt", "model.bin", "train/metrics.json", "probe/a.npz", "other.json"}
    assert "train: removed the now stale results of probe@a, probe@b" in capsys.readouterr().out
    assert stale.discard_downstream_results("train") == []   # nothing left to remove


def test_outside_a_dvc_repo_nothing_happens(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert stale.downstream_results("train") == {}
    assert stale.discard_downstream_results() == []          # pytest is not `python -m stages.<stage>`


def test_current_stage_from_the_module_and_its_argument(tmp_path):
    code = "import sys; sys.path.insert(0, {!r}); from study.stale import current_stage; print(current_stage())"
    pkg = tmp_path / "stages"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "probe.py").write_text(code.format(str(stale.__file__).rsplit("/study/", 1)[0]))
    run = lambda *a: subprocess.run([sys.executable, "-m", "stages.probe", *a], cwd=tmp_path,  # noqa: E731
                                    capture_output=True, text=True, check=True).stdout.strip()
    assert run() == "probe" and run("center_loss") == "probe@center_loss"


def test_a_symlinked_result_loses_the_link_never_its_target(tmp_path, monkeypatch):
    (tmp_path / "repo").mkdir()
    root = _repo(tmp_path / "repo")
    outside = tmp_path / "elsewhere"
    (outside / "points").mkdir(parents=True)
    (outside / "points" / "x.tsv").write_text("kept")
    (outside / "metrics.json").write_text("kept")
    for link, target in (("probe/a/points", outside / "points"), ("probe/a/metrics.json", outside / "metrics.json"),
                         ("probe/b/metrics.json", tmp_path / "dangling")):
        stale.remove(root / link)
        (root / link).symlink_to(target)
    monkeypatch.chdir(root)
    assert stale.discard_downstream_results("train") == ["probe@a", "probe@b", "report"]
    assert not any((root / p).is_symlink() or (root / p).exists()
                   for p in ("probe/a/points", "probe/a/metrics.json", "probe/b/metrics.json", "report.md"))
    assert (outside / "points" / "x.tsv").read_text() == "kept" and (outside / "metrics.json").read_text() == "kept"
