"""Atomic output writing and the one-line error exit every stage uses."""
from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np


class StageError(RuntimeError):
    """A problem the user can fix (bad input, bad data); printed as one line, exit 1."""


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
    from study.paths import details_file, metrics_file
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


class Terminated(BaseException):
    """SIGTERM, raised like KeyboardInterrupt so `finally` blocks remove temp files on the way out."""


def _raise_terminated(signum, _frame):
    raise Terminated(signum)


def model_name_arg(argv: list[str]) -> str:
    """The one CLI argument of a foreach stage (`python -m stages.<stage> baseline`), checked."""
    from study.paths import MODEL_NAMES
    if len(argv) != 1 or argv[0] not in MODEL_NAMES:
        raise StageError(f"model name argument {' '.join(argv) or '(none)'!r} is not allowed; "
                         f"allowed: exactly one of {', '.join(MODEL_NAMES)}")
    return argv[0]


def run_model_stage(main) -> None:
    """Entry point of a foreach stage: check the model name (sys.argv), then load params.yaml,
    then `main(params, name)`, all under run_stage."""
    from study.params import load

    def checked():
        name = model_name_arg(sys.argv[1:])
        return main(load(), name)
    run_stage(checked)


def format_seconds(seconds: float) -> str:
    """A wall time as a person reads it: 42.0 s, 3 min 05 s, 2 h 03 min."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(round(seconds), 60)
    return f"{minutes} min {sec:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def run_stage(main, *args) -> None:
    """Run a stage's main(); user-fixable errors and interruptions become one line on stderr.

    ParamsError / StageError, OSError (disk full, no permission) and Ctrl-C (SIGINT) exit 1;
    SIGTERM exits 143 (128 + 15).
    Outputs are written atomically, so an interrupted stage leaves no half-written file. After a
    stage succeeds, the results of the stages downstream of it are removed (study.stale)."""
    from study.params import ParamsError
    import time

    from study.stale import current_stage, discard_downstream_results
    signal.signal(signal.SIGTERM, _raise_terminated)
    start = time.perf_counter()
    try:
        main(*args)
        discard_downstream_results()
        if current_stage():
            print(f"{current_stage()}: done in {format_seconds(time.perf_counter() - start)}", flush=True)
    except (ParamsError, StageError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except OSError as e:  # a full disk, a read-only or vanished folder: the user's to fix
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        sys.exit(1)
    except (KeyboardInterrupt, Terminated) as e:
        how = "Ctrl-C (SIGINT)" if isinstance(e, KeyboardInterrupt) else "SIGTERM"
        print(f"error: interrupted by {how} before the stage finished; `dvc repro` runs it again",
              file=sys.stderr)
        sys.exit(1 if isinstance(e, KeyboardInterrupt) else 128 + signal.SIGTERM)
