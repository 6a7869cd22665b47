"""Results that describe outputs which no longer exist are removed, not left to be misread.

When a stage writes new outputs, every git-tracked result (dvc.yaml's `cache: false` outs: the
metrics) of the stages downstream of it was computed from the old outputs. `dvc repro` rebuilds them next; `dvc exp run <target>` stops before them, and its
experiment would otherwise commit them as if they belonged to it. So they are removed: a number
in an experiment comes from that experiment's run or is absent (`dvc status` lists the stages
to rerun). Cached outs stay: dvc.lock records what they are. A stage restored from DVC's run
cache runs no process, so it removes nothing (docs/pipeline.md, "No stale rows").
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path


def current_stage() -> str | None:
    """The dvc.yaml stage this process runs (`python -m stages.<stage> [<item>]`), else None."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    if spec is None or not spec.name.startswith("stages."):
        return None
    name = spec.name.split(".", 1)[1]
    return f"{name}@{sys.argv[1]}" if len(sys.argv) > 1 else name


def downstream_results(stage: str, root: str | Path = ".") -> dict[str, list[Path]]:
    """{downstream stage: its git-tracked outputs} for the stages that depend, directly or not,
    on `stage` in the DVC repo at `root`; empty outside a DVC repo or for an unknown stage."""
    import networkx as nx
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo
    try:
        repo = Repo(str(root))
    except NotDvcRepoError:
        return {}
    with repo:
        graph = repo.index.graph                     # edges point from a stage to what it depends on
        node = next((s for s in graph if s.name == stage), None)    # name: "tsne@baseline"
        if node is None:
            return {}
        return {s.name: [Path(o.fs_path) for o in s.outs if not o.use_cache]
                for s in sorted(nx.ancestors(graph, node), key=lambda s: s.name)}


def remove(path: Path) -> None:
    """Remove a result: a file, a folder with its contents, or a symbolic link itself (never what it
    points to, which may lie outside the repository)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def discard_downstream_results(stage: str | None = None) -> list[str]:
    """Remove the existing git-tracked outputs of the stages downstream of `stage` (default: the
    running one); print which stages lost results and return their names."""
    stage = stage or current_stage()
    if stage is None:
        return []
    touched = []
    for name, outs in downstream_results(stage).items():
        existing = [p for p in outs if p.exists() or p.is_symlink()]
        for path in existing:
            remove(path)
        if existing:
            touched.append(name)
    if touched:
        print(f"{stage}: removed the now stale results of {', '.join(touched)} "
              f"(`dvc repro` rebuilds them)")
    return touched
