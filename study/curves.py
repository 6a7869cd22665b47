"""DVCLive's per-epoch curves (plots/train_<name>/plots/metrics/**.tsv: a header with `step`
and the metric, one row per epoch): the one reader, and what trainings derive from them.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

from study.files import atomic_path

# Time to accuracy: when val accuracy first reaches these (keys without dots: DVC splits keys at dots)
VAL_THRESHOLDS = {"0_80": 0.80, "0_85": 0.85, "0_864": 0.864}


def parse_curve(path) -> dict[int, float]:
    """{step: value} of one DVCLive TSV (columns: [timestamp,] step, <metric>); ValueError when it
    is not one (no header with `step`, a row of another length, a step or value that is no number,
    a non-finite value)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    if not rows or "step" not in rows[0] or len(rows[0]) < 2:
        raise ValueError("expected a DVCLive TSV with a 'step' column")
    header = rows[0]
    step, value = header.index("step"), next(i for i, k in enumerate(header) if k not in ("step", "timestamp"))
    out = {}
    for r in rows[1:]:
        if len(r) != len(header) or not math.isfinite(float(r[value])):
            raise ValueError(f"row {r[:4]!r} is not a step and a finite {header[value]}")
        out[int(r[step])] = float(r[value])
    return out


def read_curve(live_dir, metric: str) -> dict[int, float]:
    """{step: value} of one curve (e.g. "val/accuracy") of a DVCLive folder; {} if absent."""
    path = Path(live_dir, "plots", "metrics", f"{metric}.tsv")
    return parse_curve(path) if path.exists() else {}


def time_to_val_accuracy(live_dir) -> dict:
    """{threshold key: {"epoch", "seconds"} | None}: when val accuracy first reached each of
    VAL_THRESHOLDS, from the curves (so a resumed run counts the epochs before it too)."""
    acc, elapsed = read_curve(live_dir, "val/accuracy"), read_curve(live_dir, "elapsed_s")
    return {key: next(({"epoch": step + 1, "seconds": elapsed.get(step)} for step in sorted(acc)
                       if acc[step] >= t), None) for key, t in VAL_THRESHOLDS.items()}


def trim_curves(live_dir, steps: int) -> None:
    """Drop the rows of step >= `steps` from DVCLive's TSV curves under live_dir (an epoch logged
    after the last backup: the resumed run logs it again)."""
    for tsv in Path(live_dir, "plots", "metrics").rglob("*.tsv"):
        with open(tsv, newline="") as f:
            rows = list(csv.reader(f, delimiter="\t"))
        step = rows[0].index("step")
        kept = [rows[0]] + [r for r in rows[1:] if int(r[step]) < steps]
        with atomic_path(tsv) as tmp, open(tmp, "w", newline="") as f:
            csv.writer(f, delimiter="\t", lineterminator="\n").writerows(kept)
