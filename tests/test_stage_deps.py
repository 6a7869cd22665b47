"""dvc.yaml lists, for every stage, exactly the project files its script runs: the script, and every
module of study/ (and stages/) it imports, transitively, including imports inside functions and
the packages' __init__.py. So a change to any of them, and only to them, reruns the stage."""
from __future__ import annotations

import ast
import copy
from pathlib import Path

import yaml

from tests.conftest import REPO

PACKAGES = ("study", "stages")


def _module_file(module: str, root: Path) -> Path | None:
    """study.paths -> study/paths.py (or a package's __init__.py); None if not a project module."""
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(path: Path, root: Path) -> set[str]:
    """Dotted names of the project modules `path` imports anywhere in its body."""
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x / from .y import z
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(p for p in [*parent, base] if p)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from study import paths`
    return {m for m in found if m.split(".")[0] in PACKAGES and _module_file(m, root)}


def stage_files(script: Path, root: Path = REPO) -> set[str]:
    """Every project file that running `script` executes: itself, the modules it imports
    (transitively) and the __init__.py of every package on the way, as repo-relative paths."""
    todo, seen = [script], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in _imported_modules(path, root):
            parts = module.split(".")
            todo += [_module_file(".".join(parts[:i]), root) for i in range(1, len(parts) + 1)]
        todo += [_module_file(path.relative_to(root).parts[0], root)] if path.parent != root else []
    return {str(p.relative_to(root)) for p in seen if p is not None}


def deps_problems(dvc_yaml: dict, root: Path = REPO) -> list[str]:
    """One line per stage whose project-file deps differ from what its script imports."""
    problems = []
    for name, stage in dvc_yaml["stages"].items():
        body = stage.get("do", stage)
        script = root / (body["cmd"].split()[2].replace(".", "/") + ".py")  # python -m stages.<name> [item]
        listed = {d for d in body.get("deps", []) if isinstance(d, str) and d.split("/")[0] in PACKAGES
                  and d.endswith(".py")}   # a page template or script a stage reads is checked by its own test
        needed = stage_files(script, root)
        if needed - listed:
            problems.append(f"{name}: deps lack {', '.join(sorted(needed - listed))}")
        if listed - needed:
            problems.append(f"{name}: deps list {', '.join(sorted(listed - needed))}, which it does not import")
    return problems


def _dvc_yaml() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())


def test_every_stage_lists_exactly_the_files_it_imports():
    assert deps_problems(_dvc_yaml()) == []


def test_the_check_fails_when_a_dep_is_lost_or_extra():
    spec = _dvc_yaml()
    lost = copy.deepcopy(spec)
    lost["stages"]["train_baseline"]["deps"].remove("study/stage.py")
    lost["stages"]["tsne"]["do"]["deps"].remove("study/tsne_plots.py")  # imported inside a function
    assert deps_problems(lost) == ["train_baseline: deps lack study/stage.py", "tsne: deps lack study/tsne_plots.py"]
    extra = copy.deepcopy(spec)
    extra["stages"]["fetch_data"]["deps"].append("study/gradcam.py")
    assert deps_problems(extra) == ["fetch_data: deps list study/gradcam.py, which it does not import"]


def test_imports_are_followed_through_functions_and_packages(tmp_path):
    (tmp_path / "study").mkdir()
    (tmp_path / "stages").mkdir()
    for f in ("study/__init__.py", "stages/__init__.py", "study/b.py"):
        (tmp_path / f).write_text("")
    (tmp_path / "study/a.py").write_text("def f():\n    from study import b\n")
    (tmp_path / "stages/s.py").write_text("import os\nfrom study.a import f\n")
    assert stage_files(tmp_path / "stages/s.py", tmp_path) == {
        "stages/s.py", "stages/__init__.py", "study/__init__.py", "study/a.py", "study/b.py"}
