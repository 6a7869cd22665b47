"""python -m study.summary: the study's experiments summarised over seeds, per group of params.

Run `dvc exp run --queue -S 'seed=range(0,5)'` (plus any other -S) and `dvc queue start`
first. This reads every finished experiment of the repo (study.experiments: each one at its own
commit, through DVC's Python API), groups them by every param except `seed` and, per group, gives:
  - per model: n seeds, test accuracy and test cross-entropy as mean +/- sd;
  - the paired difference center_loss - baseline over the seeds that have both (each
    experiment trains both models with its seed): mean, 95% t-interval, sign agreement, for
    test accuracy, test cross-entropy and the `dense` layer's 2D t-SNE kNN accuracy and
    silhouette, with a verdict that claims no more than the interval;
  - the original study's single-run number next to groups that are one of its a-f variants.
A value counts only if the stage that wrote it ran in that experiment (study.experiments);
otherwise (a `train_baseline`-only experiment carries the workspace's center-loss files along)
the quantity is reported as incomplete, never mixed in. Every text taken from an experiment
is escaped and cut short in the markdown.
Writes plots/summary/summary.md, summary.json and strip.png (per-seed test accuracies);
prints the markdown. Not a DVC stage: it spans experiments.

    python -m study.summary [--repo .] [--out plots/summary]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from study import paths
from study.errors import StageError
from study.files import save_figure, write_json, write_text
from study.params import TRICKS_OFF
from study.experiments import MODELS, QUANTITIES, Experiment, load_experiments
from study.statistics import CONFIDENCE, describe, paired, verdict
from study.untrusted import shown

FIRST, SECOND = MODELS
OUT_DIR = paths.PLOTS / "summary"
# The original study's hyperparameter table (one run each, 50 epochs): its training keys per
# variant on top of its recipe, and its test accuracy. docs/experiments.md's a-f commands queue
# these. The recipe has none of our tricks for fewer epochs (their off values).
ORIGINAL_RECIPE = {"optimizer": "adam", "learning_rate": 0.001, "weight_decay": 0, "label_smoothing": 0,
                   "lr_schedule": "step", "lr_step_epochs": 10, "lr_step_factor": 0.5, "batch_size": 64,
                   "batch_norm": True, "augment": "none", "tta": "none", "dtype_policy": "float32"} | TRICKS_OFF
# The value an experiment from before a key was added ran with
BEFORE_THE_KEY = {"dtype_policy": "float32"} | TRICKS_OFF
ORIGINAL_TABLE = (
    ("a. no batch norm", {"batch_norm": False, "lr_schedule": "none"}, 0.818),
    ("b. + batch norm", {"lr_schedule": "none"}, 0.826),
    ("c. b + per-epoch learning rate", {}, 0.846),
    ("d. c + rotation/flip", {"augment": "rotate_flip"}, 0.812),
    ("e. c + SGD", {"optimizer": "sgd", "learning_rate": 0.01}, 0.818),
    ("f. c + RMSprop", {"optimizer": "rmsprop"}, 0.835),
)
AUGMENT_BOOLS = {True: "rotate_flip", False: "none"}  # params.yaml's augment: true/false
LINE_CHARS = 240            # a label, a note or a not-counted line in the markdown


# ---------------------------------------------------------------- groups

def group_experiments(exps: list[Experiment]) -> list[list[Experiment]]:
    """Experiments grouped by every param except `seed`, in first-seen order; within a group one
    experiment per seed (the first listed: exp_show lists the newest first)."""
    groups: dict[str, list[Experiment]] = {}
    for exp in exps:
        key = json.dumps({k: v for k, v in sorted(exp.params.items()) if k != "seed"}, default=str)
        members = groups.setdefault(key, [])
        if all(e.seed != exp.seed for e in members):
            members.append(exp)
    return [sorted(g, key=_seed_order) for g in groups.values()]


def _seed_order(exp: Experiment) -> tuple:
    """A sort key for seeds of any type: numbers and strings by value, anything else (a list,
    which may not compare with another) by its JSON text."""
    seed = exp.seed
    return str(type(seed)), seed if isinstance(seed, (int, float, str)) else json.dumps(seed)


def group_labels(groups: list[list[Experiment]]) -> list[str]:
    """A short label per group: the params whose values differ between groups ('k=v, ...'), each
    key and value as one line cut short (study.untrusted.shown)."""
    firsts = [g[0].params for g in groups]
    keys = sorted({k for p in firsts for k in p if k != "seed"})
    varying = [k for k in keys if len({json.dumps(p.get(k), default=str) for p in firsts}) > 1]
    if not varying:
        return ["all experiments"] * len(groups)
    return [", ".join(f"{shown(k)}={shown(p.get(k))}" for k in varying) for p in firsts]


def original_variant(params: dict):
    """(label, the original study's test accuracy) if these training params are one of its a-f
    variants (epochs and data sizes aside), else None."""
    recipe = {k: params.get(k, BEFORE_THE_KEY.get(k)) for k in ORIGINAL_RECIPE}
    if isinstance(recipe["augment"], bool):
        recipe["augment"] = AUGMENT_BOOLS[recipe["augment"]]
    for label, change, accuracy in ORIGINAL_TABLE:
        if recipe == ORIGINAL_RECIPE | change:
            return label, accuracy
    return None


def summarise_group(exps: list[Experiment], label: str) -> dict:
    """Per model describe() of each quantity, and paired() of center_loss - baseline per quantity,
    with counts of experiments that lack a quantity and why."""
    out = {"label": label, "seeds": [e.seed for e in exps], "experiments": [e.name for e in exps],
           "params": {k: v for k, v in exps[0].params.items() if k != "seed"},
           "models": {}, "difference": {}, "incomplete": {}}
    variant = original_variant(exps[0].params)
    out["original_variant"] = {"label": variant[0], "original_test_accuracy": variant[1]} if variant else None
    for key, _, _, _, scale in QUANTITIES:
        for model in MODELS:
            vals = [e.values[model, key] for e in exps if (model, key) in e.values]
            out["models"].setdefault(model, {})[key] = describe(vals)
            lacking = [f"{e.name}: {e.missing[model, key]}" for e in exps if (model, key) in e.missing]
            if lacking:
                out["incomplete"][f"{model}.{key}"] = lacking
        both = [e for e in exps if all((m, key) in e.values for m in MODELS)]
        diff = paired([e.values[SECOND, key] - e.values[FIRST, key] for e in both])
        diff["verdict"] = verdict(diff, SECOND, scale, " points" if scale == 100 else "")
        out["difference"][key] = diff
    return out


def summarise(exps: list[Experiment]) -> list[dict]:
    """summarise_group() of every group of experiments."""
    groups = group_experiments(exps)
    return [summarise_group(g, label) for g, label in zip(groups, group_labels(groups))]


# ---------------------------------------------------------------- report

def _mean_sd(d: dict, n_all: int, digits: int = 4) -> str:
    """'0.6254 ± 0.0120' (n shown when not every seed has the value)."""
    if not d["n"]:
        return "incomplete: not run"
    text = f"{d['mean']:.{digits}f}" + (f" ± {d['sd']:.{digits}f}" if d["sd"] is not None else " (one seed)")
    return text + (f" (n={d['n']} of {n_all}: incomplete)" if d["n"] < n_all else "")


_MARKDOWN_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\\": "\\\\", "|": "\\|",
                                   "`": "\\`", "[": "\\[", "]": "\\]"})


def md_text(value, limit: int = LINE_CHARS) -> str:
    """Text taken from experiments, safe in a markdown table cell or list item: one line cut to
    `limit` characters (shown), HTML's & < > as entities, and \\ | ` [ ] escaped, so it can
    neither end a cell nor open HTML, a code span, a link or an image."""
    return shown(value, limit).translate(_MARKDOWN_ESCAPES)


def to_markdown(summary: list[dict], skipped: list[str]) -> str:
    """The summary's tables as markdown; every text from the experiments through md_text."""
    lines = ["## Per model: mean ± sd over seeds", "",
             "| group | seeds | " + " | ".join(f"{m} test accuracy" for m in MODELS) + " | "
             + " | ".join(f"{m} test cross-entropy" for m in MODELS) + " | the original study's single run |",
             "| --- " * (3 + 2 * len(MODELS)) + "|"]
    for g in summary:
        n_all, models = len(g["seeds"]), g["models"]
        original = g["original_variant"]
        original = f"{original['label']}: {original['original_test_accuracy']}" if original else ""
        cells = [_mean_sd(models[m]["test_accuracy"], n_all) for m in MODELS] + \
                [_mean_sd(models[m]["test_loss"], n_all, 3) for m in MODELS]
        seeds = md_text(", ".join(map(str, g["seeds"])))
        lines.append(f"| {md_text(g['label'])} | {n_all} ({seeds}) | " + " | ".join(cells) + f" | {original} |")
    lines += ["", f"## Paired difference {SECOND} − {FIRST} (same seed), {CONFIDENCE:.0%} t-interval", "",
              "| group | quantity | n | mean | interval | seeds +/− | verdict |", "| --- " * 7 + "|"]
    for g in summary:
        for key, what, _, _, scale in QUANTITIES:
            d = g["difference"][key]
            mean = f"{d['mean'] * scale:+.3g}" if d["n"] else ""
            ci = f"[{d['ci'][0] * scale:+.3g}, {d['ci'][1] * scale:+.3g}]" if d["ci"] else ""
            lines.append(f"| {md_text(g['label'])} | {what} | {d['n']} | {mean} | {ci} | "
                         f"{d['positive']}/{d['negative']} | {d['verdict']} |")
    notes = [f"- {md_text(g['label'])}, {quantity}: {len(why)} experiment(s) lack it; e.g. {md_text(why[0])}"
             for g in summary for quantity, why in g["incomplete"].items()]
    if notes:
        lines += ["", "## Incomplete", "", *notes]
    if skipped:
        lines += ["", "## Not counted", "", *(f"- {md_text(s)}" for s in skipped)]
    return "\n".join(lines) + "\n"


def strip_plot(summary: list[dict], exps: list[Experiment]):
    """Per group, each seed's test accuracy of both models (a line joins a seed's pair), with
    the mean of each model as a bar."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    by_name = {e.name: e for e in exps}
    fig, ax = plt.subplots(figsize=(max(4.0, 2.2 * len(summary)), 4.0))
    colors = dict(zip(MODELS, ("tab:blue", "tab:orange")))
    for i, g in enumerate(summary):
        xs = {m: i + (j - 0.5) * 0.4 for j, m in enumerate(MODELS)}
        for name in g["experiments"]:
            vals = by_name[name].values
            pair = [(xs[m], vals[m, "test_accuracy"]) for m in MODELS if (m, "test_accuracy") in vals]
            if len(pair) == len(MODELS):
                ax.plot(*zip(*pair), color="0.75", lw=0.8, zorder=1)
            for m in MODELS:
                if (m, "test_accuracy") in vals:
                    ax.scatter(xs[m], vals[m, "test_accuracy"], color=colors[m], s=18, zorder=2)
        for m in MODELS:
            d = g["models"][m]["test_accuracy"]
            if d["n"]:
                ax.hlines(d["mean"], xs[m] - 0.12, xs[m] + 0.12, color=colors[m], lw=2.5, zorder=3)
    for m in MODELS:
        ax.scatter([], [], color=colors[m], label=m)
    ax.set_xticks(range(len(summary)), [f"{shown(g['label'])}\n({len(g['seeds'])} seeds)" for g in summary],
                  rotation=15, ha="right", parse_math=False)  # a `$` in a param is text, not TeX
    ax.set_ylabel("test accuracy (one dot per seed, bar = mean)")
    ax.set_title("test accuracy per seed; lines join each seed's two models")
    ax.legend(loc="best", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig


def main(argv=None) -> list[dict]:
    """Summarise the repo's experiments; write markdown, JSON and the strip plot; print the markdown."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", default=".", help="the DVC repository (default: the current folder)")
    ap.add_argument("--out", default=str(OUT_DIR), help=f"output folder (default: {OUT_DIR})")
    args = ap.parse_args(argv)
    exps, skipped = load_experiments(args.repo)
    if not exps:
        raise StageError(f"{args.repo}: no finished experiments derived from HEAD; run "
                         "`dvc exp run --queue -S 'seed=range(0,5)'` and `dvc queue start` first"
                         + (f" ({len(skipped)} not counted: {skipped[0]})" if skipped else ""))
    summary = summarise(exps)
    out = Path(args.out)
    text = to_markdown(summary, skipped)
    write_text(out / "summary.md", text)
    write_json(out / "summary.json", {"groups": summary, "not_counted": skipped})
    save_figure(strip_plot(summary, exps), out / "strip.png")
    print(text, end="")
    return summary


if __name__ == "__main__":
    from study.stage import run_stage
    run_stage(main)
