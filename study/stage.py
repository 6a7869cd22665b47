"""Running a stage: its entry point (params, the model-name argument of a foreach stage) and the
one-line exit on an error the user can fix or on an interruption."""
from __future__ import annotations

import signal
import sys
import time

from study.errors import StageError
from study.params import ParamsError, load
from study.paths import MODEL_NAMES
from study.stale import current_stage, discard_downstream_results


class Terminated(BaseException):
    """SIGTERM, raised like KeyboardInterrupt so `finally` blocks remove temp files on the way out."""


def _raise_terminated(signum, _frame):
    raise Terminated(signum)


def model_name_arg(argv: list[str]) -> str:
    """The one CLI argument of a foreach stage (`python -m stages.<stage> baseline`), checked."""
    if len(argv) != 1 or argv[0] not in MODEL_NAMES:
        raise StageError(f"model name argument {' '.join(argv) or '(none)'!r} is not allowed; "
                         f"allowed: exactly one of {', '.join(MODEL_NAMES)}")
    return argv[0]


def run_model_stage(main) -> None:
    """Entry point of a foreach stage: check the model name (sys.argv), then load params.yaml,
    then `main(params, name)`, all under run_stage."""
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


def run_stage(main, *args, discard: bool = True) -> None:
    """Run a stage's main(); user-fixable errors and interruptions become one line on stderr.

    ParamsError / StageError, OSError (disk full, no permission) and Ctrl-C (SIGINT) exit 1;
    SIGTERM exits 143 (128 + 15).
    Outputs are written atomically (study.files), so an interrupted stage leaves no half-written
    file. After a stage succeeds, the results of the stages downstream of it are removed
    (study.stale), unless `discard` is false (a stage that decides it itself)."""
    signal.signal(signal.SIGTERM, _raise_terminated)
    start = time.perf_counter()
    try:
        main(*args)
        if discard:
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
