"""Files between stages: reading what another stage wrote (missing or damaged is a one-line
StageError naming the `dvc repro` that rebuilds it) and writing outputs atomically (temp file,
then rename), so an interrupted stage leaves no half-written file."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from study.errors import StageError
from study.paths import details_file, metrics_file


def read_input(path, stage: str, read, what: str = "file", hint: str = ""):
    """`read(path)` of a file another stage writes. Missing or unreadable (empty, truncated, another
    format) is a one-line StageError naming the file and the `dvc repro` command that rebuilds it
    (`hint` is added to the not-found line)."""
    path = Path(path)
    if not path.is_file():
        raise StageError(f"{path}: not found; run `dvc repro {stage}` first{hint}")
    try:
        return read(path)
    except StageError:
        raise
    except Exception as e:  # every reader fails its own way (BadZipFile, ValueError, EOFError, ...)
        reason = (str(e).strip().splitlines() or [""])[0][:200]
        raise StageError(f"{path}: not a readable {what} ({type(e).__name__}: {reason}); "
                         f"run `dvc repro {stage}` to rebuild it") from None


def read_json(path, stage: str):
    """Parsed JSON of a file another stage writes, via read_input."""
    return read_input(path, stage, lambda p: json.loads(p.read_text()), "JSON file")


def load_npz(path, stage: str, required=()) -> dict:
    """All arrays of an .npz another stage writes (via read_input); one of `required` missing
    is a one-line StageError naming the stage that rebuilds the file."""
    def read(p):
        with np.load(p, allow_pickle=False) as f:
            missing = [k for k in required if k not in f.files]
            if missing:
                raise StageError(f"{p}: lacks {', '.join(missing)}; run `dvc repro {stage}` to rebuild it")
            return {k: f[k] for k in f.files}
    return read_input(path, stage, read, "NumPy .npz file")


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temp path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp" + path.suffix)  # keep the suffix: Keras checks it
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextmanager
def atomic_dir(path: str | Path):
    """Yield an empty temp folder beside `path`; if the block succeeds, it replaces the folder
    `path` whole (its old files go), so a reader sees all the old files or all the new ones."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    old = tmp.with_suffix(".old")
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())    # mkdtemp makes 0700; outputs get the usual mode
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, old):
            if leftover.exists():
                shutil.rmtree(leftover)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path, obj) -> None:
    """Write `obj` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_metrics(folder, details: dict, headline: dict, owner: str | None = None) -> None:
    """A stage's numbers: all of them in <folder>/details.json, and the few a user compares across
    experiments in <folder>/metrics.json (dvc.yaml's `metrics:`, the columns of `dvc exp show`),
    under `owner` (the model, or the stage's subject) when given. Metric keys are unique across
    the pipeline's metrics files, so `dvc exp show` names a column `baseline.test.accuracy`
    rather than prefixing it with its file's path."""
    write_json(details_file(Path(folder)), details)
    write_json(metrics_file(Path(folder)), {owner: headline} if owner else headline)


def pick(d: dict, keys) -> dict:
    """The entries of `d` named in `keys`, in that order."""
    return {k: d[k] for k in keys}


def write_text(path, text: str) -> None:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_npy(path, array) -> None:
    """Write one array to a .npy, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


def write_npz(path, **arrays) -> None:
    """Write arrays to an .npz, atomically (np.savez would append .npz to a temp name)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def save_figure(fig, path, dpi: int = 110) -> None:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
