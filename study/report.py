"""Small markdown builders for plots/compare/report.md (pure: strings in, strings out)."""
from __future__ import annotations

import os
from pathlib import Path


def link(target: str | Path, report: str | Path) -> str:
    """`target`'s path relative to the folder of `report`, with forward slashes."""
    return Path(os.path.relpath(target, Path(report).parent)).as_posix()


def image(alt: str, target: str | Path, report: str | Path) -> str:
    """A markdown image whose link works from the report's folder (and on GitHub)."""
    return f"![{alt}]({link(target, report)})"


def fmt(value, digits: int = 4) -> str:
    """A number for a table cell; None (a metric a stage did not write) as an en dash."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(header: list[str], rows: list[list]) -> str:
    """A GitHub markdown table; cells go through fmt()."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def side_by_side(title: str, names: list[str], targets: list[str | Path], report: str | Path) -> str:
    """A one-row table putting one image per model next to each other, under a heading."""
    cells = [image(f"{title}, {n}", t, report) for n, t in zip(names, targets)]
    return f"### {title}\n\n" + table(names, [cells])


def accuracy_sentence(acc: dict[str, float], base: str, other: str) -> str:
    """The test-accuracy difference, stated with the caveat a single run needs."""
    diff = acc[other] - acc[base]
    if diff:
        change = f"{abs(diff) * 100:.2f} percentage points {'higher' if diff > 0 else 'lower'} than {base}"
    else:
        change = f"the same as {base}"
    return (f"Test accuracy: {base} {acc[base]:.4f}, {other} {acc[other]:.4f}; "
            f"{other} is {change}. "
            "This is one training run per model (one seed): it cannot show whether the "
            "difference is significant. Repeating both with several seeds "
            "(`dvc exp run -S seed=...`) would measure the run-to-run spread it must exceed.")
