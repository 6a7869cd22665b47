"""The study's finished experiments as the summary reads them: each one's params and the numbers
it produced, read at its own commit through DVC's API, and counted only where the stage that wrote
a number ran in that experiment (its dvc.lock record matches the experiment's params, code and
upstream outputs). Experiments may come from other machines (`dvc exp pull`): every file is read
within bounds (study.untrusted), and an experiment with a file this study does not write is
listed as not counted, in one line.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

from study import paths
from study.model import FEATURE_LAYER
from study.untrusted import UntrustedFileError, load_json, load_yaml, shown

MODELS = paths.MODEL_NAMES            # ("baseline", "center_loss"): the pair of each seed
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
# Bounds on reading one experiment's commit (its dvc.lock may name any file, any number of times)
MAX_READ_BYTES = 16 << 20   # one file: our source files and metrics are KBs; data are stage outputs, never read
READ_BUDGET = 64 << 20      # all files of one experiment together
MAX_STAGES = 256            # dvc.lock stages (ours: 11); fresh_stages recurses once per upstream stage

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
