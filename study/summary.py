"""python -m study.summary: the study's experiments summarised over seeds, per group of params.

Run `dvc exp run --queue -S 'seed=range(0,5)'` (plus any other -S) and `dvc queue start`
first. This reads every finished experiment of the repo through DVC's Python API
(`dvc.api.exp_show` lists them, `dvc.api.DVCFileSystem` reads each one's params.yaml,
dvc.lock and metrics files at its own commit), groups them by every param except `seed`
and, per group, gives:
  - per model: n seeds, test accuracy and test cross-entropy as mean +/- sd;
  - the paired difference center_loss - baseline over the seeds that have both (each
    experiment trains both models with its seed): mean, 95% t-interval, sign agreement, for
    test accuracy, test cross-entropy and the `dense` layer's 2D t-SNE kNN accuracy and
    silhouette, with a verdict that claims no more than the interval;
  - the seed's single-run number next to groups that are one of its a-f variants.
A value counts only if the stage that wrote it ran in that experiment: its dvc.lock record
matches the experiment's params, code and upstream outputs. Otherwise (a `train_baseline`
-only experiment carries the workspace's center-loss files along) the quantity is reported
as incomplete, never mixed in.
Experiments may come from other machines (`dvc exp pull`): each file is read within bounds
(study.untrusted), an experiment with a file this study does not write is listed as not counted,
and every text taken from an experiment is escaped and cut short in the markdown.
Writes plots/summary/summary.md, summary.json and strip.png (per-seed test accuracies);
prints the markdown. Not a DVC stage: it spans experiments.

    python -m study.summary [--repo .] [--out plots/summary]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from study import paths
from study.errors import StageError
from study.files import save_figure, write_json, write_text
from study.model import FEATURE_LAYER
from study.untrusted import UntrustedFileError, load_json, load_yaml, shown

MODELS = paths.MODEL_NAMES            # ("baseline", "center_loss"): the pair of each seed
FIRST, SECOND = MODELS
OUT_DIR = paths.PLOTS / "summary"
CONFIDENCE = 0.95
# (key, what it is, file of one model's metrics, path in that JSON ({model}: the model's name, the
# top key of its headline metrics.json), scale to the unit shown)
QUANTITIES = (
    ("test_accuracy", "test accuracy (points)", paths.train_metrics, ("{model}", "test", "accuracy"), 100),
    ("test_loss", "test cross-entropy", paths.train_metrics, ("{model}", "test", "loss"), 1),
    ("dense_knn_accuracy", f"`{FEATURE_LAYER}` 2D t-SNE kNN accuracy (points)", paths.tsne_metrics,
     ("{model}", FEATURE_LAYER, "knn_accuracy_2d"), 100),
    ("dense_silhouette", f"`{FEATURE_LAYER}` 2D t-SNE silhouette", paths.tsne_details,
     (FEATURE_LAYER, "silhouette_2d"), 1),
)
# The seed's hyperparameter table (one run each, 50 epochs): its training keys per variant
# on top of the seed's recipe, and its test accuracy. README's a-f commands queue these.
SEED_RECIPE = {"optimizer": "adam", "learning_rate": 0.001, "weight_decay": 0, "label_smoothing": 0,
               "lr_schedule": "step", "lr_step_epochs": 10, "lr_step_factor": 0.5, "batch_size": 64,
               "batch_norm": True, "augment": "none", "tta": "none", "dtype_policy": "float32"}
SEED_TABLE = (
    ("a. no batch norm", {"batch_norm": False, "lr_schedule": "none"}, 0.818),
    ("b. + batch norm", {"lr_schedule": "none"}, 0.826),
    ("c. b + per-epoch learning rate", {}, 0.846),
    ("d. c + rotation/flip", {"augment": "rotate_flip"}, 0.812),
    ("e. c + SGD", {"optimizer": "sgd", "learning_rate": 0.01}, 0.818),
    ("f. c + RMSprop", {"optimizer": "rmsprop"}, 0.835),
)
AUGMENT_BOOLS = {True: "rotate_flip", False: "none"}  # params.yaml's augment: true/false
# Bounds on reading one experiment's commit (its dvc.lock may name any file, any number of times)
MAX_READ_BYTES = 16 << 20   # one file: our source files and metrics are KBs; data are stage outputs, never read
READ_BUDGET = 64 << 20      # all files of one experiment together
MAX_STAGES = 256            # dvc.lock stages (ours: 11); fresh_stages recurses once per upstream stage
LINE_CHARS = 240            # a label, a note or a not-counted line in the markdown


# ---------------------------------------------------------------- statistics (pure)

def describe(values) -> dict:
    """n, mean and sample sd (None below 2 values) of a list of numbers."""
    x = np.asarray(values, float)
    n = len(x)
    return {"n": n, "mean": float(x.mean()) if n else None,
            "sd": float(x.std(ddof=1)) if n > 1 else None}


def paired(diffs, confidence: float = CONFIDENCE) -> dict:
    """Paired differences: describe() plus the t-interval of the mean (None below 2 values) and
    how many differences are positive and negative."""
    from scipy import stats
    out = describe(diffs)
    x = np.asarray(diffs, float)
    out["ci"] = None
    if out["n"] > 1:
        half = stats.t.ppf((1 + confidence) / 2, out["n"] - 1) * out["sd"] / math.sqrt(out["n"])
        out["ci"] = [out["mean"] - half, out["mean"] + half]
    out["positive"], out["negative"] = int((x > 0).sum()), int((x < 0).sum())
    return out


def verdict(d: dict, scale: float = 1, unit: str = "") -> str:
    """A plain sentence on a paired() result (in `unit` after multiplying by `scale`) that never
    claims more than the interval: a direction only when the whole interval is on one side of 0;
    'k of n seeds agree in sign' counts the seeds on the mean's side."""
    n = d["n"]
    if n == 0:
        return "not measured"
    mean = f"{d['mean'] * scale:+.3g}{unit}"
    if n == 1:
        return f"one seed: {mean}; no interval from one seed"
    lo, hi = (v * scale for v in d["ci"])
    interval = f"{mean} [{lo:+.3g}, {hi:+.3g}]"
    agree = d["positive"] if d["mean"] > 0 else d["negative"] if d["mean"] < 0 else max(d["positive"], d["negative"])
    if lo <= 0 <= hi:
        return f"no detectable difference at n={n}: {interval} ({agree} of {n} seeds agree in sign)"
    side = "higher" if lo > 0 else "lower"
    return f"{SECOND} {side}: {interval} ({agree} of {n} seeds agree in sign)"


# ---------------------------------------------------------------- one experiment

def lookup(tree: dict, dotted: str, default=None):
    """tree['a']['b'] for 'a.b' (or tree['a.b']), `default` when absent (or `tree` is no dict)."""
    if isinstance(tree, dict) and dotted in tree:
        return tree[dotted]
    node = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def flatten(tree: dict, prefix: str = "") -> dict:
    """{'data': {'url': u}, 'seed': 0} -> {'data.url': u, 'seed': 0}."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


_ABSENT = object()


def lock_outputs(lock: dict) -> dict:
    """{output path: (stage that writes it, its recorded md5)} of dvc.lock's `stages`."""
    return {out["path"]: (stage, out.get("md5")) for stage, rec in lock.items() for out in rec.get("outs", [])}


def fresh_stages(lock: dict, params: dict, file_md5) -> set[str]:
    """The stages of dvc.lock's `stages` whose record matches this commit, as `dvc status` would
    judge it: every param they read has the recorded value in `params` (nested params.yaml), every
    dep has the recorded md5 (`file_md5(path)` for a file in git, the producing stage's recorded
    output for an upstream output) and every upstream stage is itself fresh. A stage that did not
    run in an experiment keeps its parent's record, so it fails this check as soon as anything it
    reads differs."""
    producer = lock_outputs(lock)
    memo: dict[str, bool] = {}

    def fresh(stage: str) -> bool:
        if stage not in memo:
            memo[stage] = False  # a cycle is never fresh
            rec = lock[stage]
            ok = all(lookup(params, k, _ABSENT) == v for k, v in rec.get("params", {}).get("params.yaml", {}).items())
            for dep in rec.get("deps", []) if ok else ():
                path, md5 = dep["path"], dep.get("md5")
                if path in producer:
                    upstream, out_md5 = producer[path]
                    ok = out_md5 == md5 and fresh(upstream)
                else:
                    ok = file_md5(path) == md5
                if not ok:
                    break
            memo[stage] = ok
        return memo[stage]
    return {stage for stage in lock if fresh(stage)}


@dataclass
class Experiment:
    """One experiment's params and the quantities its own stages produced."""
    name: str
    rev: str
    params: dict                                   # flat: {'seed': 0, 'data.url': ..., ...}
    values: dict = field(default_factory=dict)     # {(model, quantity): float}
    missing: dict = field(default_factory=dict)    # {(model, quantity): why it is absent}

    @property
    def seed(self):
        return self.params.get("seed")


def read_experiment(name: str, rev: str, read_bytes) -> Experiment:
    """An Experiment from the files of its commit; `read_bytes(path)` gives a file's bytes there
    (None when absent). UntrustedFileError (one line naming the file) when params.yaml, dvc.lock or
    a metrics file it reads is not data this study writes, or its reads pass READ_BUDGET."""
    from study.params import PARAMS_FILE

    read = _bounded_reads(read_bytes, READ_BUDGET)

    def md5(path):
        data = read(path)
        return None if data is None else hashlib.md5(data).hexdigest()

    params = load_yaml(read(PARAMS_FILE.as_posix()) or b"", PARAMS_FILE.as_posix()) or {}
    if not isinstance(params, dict):
        raise UntrustedFileError(f"{PARAMS_FILE}: a {type(params).__name__}, not a mapping of params")
    lock = _lock_stages(load_yaml(read("dvc.lock") or b"", "dvc.lock"))
    fresh = fresh_stages(lock, params, md5)
    outputs = lock_outputs(lock)
    exp = Experiment(name, rev, flatten(params))
    for model in MODELS:
        for key, _, file_of, where, _ in QUANTITIES:
            path = file_of(model).as_posix()
            stage, recorded = outputs.get(path, (None, None))
            data = read(path)
            if stage is None:
                exp.missing[model, key] = f"{path}: no stage has run that writes it"
            elif stage not in fresh:
                exp.missing[model, key] = f"{shown(stage)} did not run in this experiment (its {path} is older)"
            elif data is None:
                exp.missing[model, key] = f"{path} is not in this experiment's commit"
            elif hashlib.md5(data).hexdigest() != recorded:
                exp.missing[model, key] = f"{path} was changed after {shown(stage)} wrote it"
            else:
                dotted = ".".join(where).format(model=model)
                value = lookup(load_json(data, path), dotted)
                if isinstance(value, (int, float)) and math.isfinite(value):
                    exp.values[model, key] = float(value)
                else:
                    exp.missing[model, key] = f"{path} has no number at {dotted}"
    return exp


def _bounded_reads(read_bytes, budget: int):
    """`read_bytes` reading each path once, with UntrustedFileError once the bytes read add up to
    more than `budget` (a dvc.lock can list any file of its commit as a dep, many times)."""
    cache, spent = {}, [0]

    def read(path: str):
        if path not in cache:
            cache[path] = read_bytes(path)
            spent[0] += len(cache[path] or b"")
            if spent[0] > budget:
                raise UntrustedFileError(f"dvc.lock: the files it names add up to more than {budget >> 20} MiB")
        return cache[path]
    return read


def _lock_stages(lock) -> dict:
    """dvc.lock's `stages` ({} without a dvc.lock or stages), checked to have the shape
    fresh_stages and lock_outputs read; UntrustedFileError naming the first stage that does not."""
    lock = {} if lock is None else lock
    stages = lock.get("stages") or {} if isinstance(lock, dict) else None
    if not isinstance(stages, dict):
        raise UntrustedFileError("dvc.lock: expected a mapping with a `stages` mapping")
    if len(stages) > MAX_STAGES:
        raise UntrustedFileError(f"dvc.lock: {len(stages)} stages, more than {MAX_STAGES}")
    for stage, rec in stages.items():
        problem = _stage_problem(rec)
        if problem:
            raise UntrustedFileError(f"dvc.lock: stage {shown(stage)}: {problem}")
    return stages


def _stage_problem(rec) -> str | None:
    """Why a dvc.lock stage record lacks the shape fresh_stages reads (None when it has it)."""
    if not isinstance(rec, dict):
        return "not a mapping"
    params = rec.get("params", {})
    if not isinstance(params, dict) or not isinstance(params.get("params.yaml", {}), dict):
        return "`params` is not a mapping of files to mappings"
    for kind in ("deps", "outs"):
        entries = rec.get(kind, [])
        if not isinstance(entries, list):
            return f"`{kind}` is not a list"
        for entry in entries:
            path = entry.get("path") if isinstance(entry, dict) else None
            if not (isinstance(path, str) and path and "\0" not in path):
                return f"an entry of `{kind}` has no file path"
    return None


def load_experiments(repo: str = ".") -> tuple[list[Experiment], list[str]]:
    """read_experiments() of the experiments derived from the repo's HEAD (dvc.api.exp_show),
    each read at its own commit (dvc.api.DVCFileSystem)."""
    import dvc.api

    def reader_at(rev):
        fs = dvc.api.DVCFileSystem(repo, rev=rev)
        return lambda path: _read_or_none(fs, path)
    return read_experiments(dvc.api.exp_show(repo=repo), reader_at)


def read_experiments(rows: list[dict], reader_at) -> tuple[list[Experiment], list[str]]:
    """The finished experiments of exp_show's `rows`, each read by read_experiment with
    `reader_at(rev)`; and a line per experiment left out (queued, running, failed, or a file that
    is not data this study writes)."""
    exps, skipped = [], []
    for row in rows:
        if row.get("typ") in ("workspace", "baseline"):
            continue  # the workspace and the commit the experiments start from are not experiments
        name = row.get("Experiment") or row.get("rev")
        if row.get("State") not in (None, "Success"):
            skipped.append(f"{name}: {str(row.get('State')).lower()}, not counted")
            continue
        try:
            exps.append(read_experiment(name, row["rev"], reader_at(row["rev"])))
        except UntrustedFileError as e:
            skipped.append(f"{name}: {e}; not counted")
    return exps, skipped


def _read_or_none(fs, path: str, limit: int = MAX_READ_BYTES):
    """The file's bytes in the fs (None when absent), reading no more than `limit` bytes;
    UntrustedFileError when it is larger."""
    try:
        with fs.open(path, "rb") as f:
            data = f.read(limit + 1)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    if len(data) > limit:
        raise UntrustedFileError(f"{shown(path)}: larger than {limit >> 20} MiB")
    return data


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


def seed_variant(params: dict):
    """(label, the seed's test accuracy) if these training params are one of the seed's a-f
    variants (epochs and data sizes aside), else None."""
    recipe = {k: params.get(k) for k in SEED_RECIPE}
    recipe["dtype_policy"] = params.get("dtype_policy", "float32")  # experiments from before the key: float32
    if isinstance(recipe["augment"], bool):
        recipe["augment"] = AUGMENT_BOOLS[recipe["augment"]]
    for label, change, accuracy in SEED_TABLE:
        if recipe == SEED_RECIPE | change:
            return label, accuracy
    return None


def summarise_group(exps: list[Experiment], label: str) -> dict:
    """Per model describe() of each quantity, and paired() of center_loss - baseline per quantity,
    with counts of experiments that lack a quantity and why."""
    out = {"label": label, "seeds": [e.seed for e in exps], "experiments": [e.name for e in exps],
           "params": {k: v for k, v in exps[0].params.items() if k != "seed"},
           "models": {}, "difference": {}, "incomplete": {}}
    variant = seed_variant(exps[0].params)
    out["seed_variant"] = {"label": variant[0], "seed_test_accuracy": variant[1]} if variant else None
    for key, _, _, _, scale in QUANTITIES:
        for model in MODELS:
            vals = [e.values[model, key] for e in exps if (model, key) in e.values]
            out["models"].setdefault(model, {})[key] = describe(vals)
            lacking = [f"{e.name}: {e.missing[model, key]}" for e in exps if (model, key) in e.missing]
            if lacking:
                out["incomplete"][f"{model}.{key}"] = lacking
        both = [e for e in exps if all((m, key) in e.values for m in MODELS)]
        diff = paired([e.values[SECOND, key] - e.values[FIRST, key] for e in both])
        diff["verdict"] = verdict(diff, scale, " points" if scale == 100 else "")
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
             + " | ".join(f"{m} test cross-entropy" for m in MODELS) + " | the seed's single run |",
             "| --- " * (3 + 2 * len(MODELS)) + "|"]
    for g in summary:
        n_all, models = len(g["seeds"]), g["models"]
        seed = f"{g['seed_variant']['label']}: {g['seed_variant']['seed_test_accuracy']}" if g["seed_variant"] else ""
        cells = [_mean_sd(models[m]["test_accuracy"], n_all) for m in MODELS] + \
                [_mean_sd(models[m]["test_loss"], n_all, 3) for m in MODELS]
        seeds = md_text(", ".join(map(str, g["seeds"])))
        lines.append(f"| {md_text(g['label'])} | {n_all} ({seeds}) | " + " | ".join(cells) + f" | {seed} |")
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
