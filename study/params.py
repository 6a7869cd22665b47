"""The one loader of params.yaml: every key checked for type, range and allowed values.

`load()` returns the params as nested dicts. Any problem raises ParamsError whose
message is one line naming the key, the value and what is allowed, e.g.
    params.yaml: optimizer = 'adagrad' is not allowed; allowed: adam, sgd, rmsprop
Stages call `load()` first, before any heavy work.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import yaml

PARAMS_FILE = Path("params.yaml")


class ParamsError(ValueError):
    """A params.yaml value is missing, unknown, of the wrong type or out of range."""


def _choice(*allowed):
    def check(v):
        if v not in allowed:
            return "allowed: " + ", ".join(allowed)
    return check


def _int(lo=None, hi=None, null=False):
    def check(v):
        if v is None and null:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            return ("an integer or null" if null else "an integer") + _range_text(lo, hi)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            return "an integer" + _range_text(lo, hi) + (" or null" if null else "")
    return check


def _float(lo=None, hi=None, lo_open=False):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return "a finite number" + _range_text(lo, hi, lo_open)
        if lo is not None and (v < lo or (lo_open and v == lo)):
            return "a number" + _range_text(lo, hi, lo_open)
        if hi is not None and v > hi:
            return "a number" + _range_text(lo, hi, lo_open)
    return check


def _range_text(lo, hi, lo_open=False):
    if lo is not None and hi is not None:
        return f" in {'(' if lo_open else '['}{lo}, {hi}]"
    if lo is not None:
        return f" {'>' if lo_open else '>='} {lo}"
    if hi is not None:
        return f" <= {hi}"
    return ""


def _bool(v):
    if not isinstance(v, bool):
        return "true or false"


def _md5(v):
    if not (isinstance(v, str) and re.fullmatch(r"[0-9a-fA-F]{32}", v)):
        return "32 hex digits (the archive's md5)"


def _url(v):
    if not (isinstance(v, str) and v.strip()):
        return "an http(s):// URL, a file:// URL or a local path"
    scheme = v.split("://", 1)[0].lower() if "://" in v else ""
    if scheme not in ("", "http", "https", "file"):
        return "an http(s):// URL, a file:// URL or a local path"


# Every key params.yaml may hold, with its check. A check returns None when the
# value is fine, else a text saying what is allowed.
SCHEMA = {
    "seed": _int(0, 2**31 - 1),
    "optimizer": _choice("adam", "sgd", "rmsprop"),
    "learning_rate": _float(0, 10, lo_open=True),
    "lr_schedule": _choice("none", "step", "cosine"),
    "lr_step_epochs": _int(1),
    "lr_step_factor": _float(0, 1, lo_open=True),
    "epochs": _int(1),
    "batch_size": _int(1),
    "batch_norm": _bool,
    "augment": _bool,
    "data.url": _url,
    "data.md5": _md5,
    "data.val_size": _int(10, 49_000),
    "data.train_size": _int(10, 49_990, null=True),
    "data.test_size": _int(10, 10_000, null=True),
    "data.timeout": _float(0, 3600, lo_open=True),
    "data.retries": _int(1, 20),
    "kmeans.n_init": _int(1),
    "kmeans.max_iter": _int(1),
    "center_loss.variant": _choice("center", "island", "contrastive"),
    "center_loss.init": _choice("scratch", "baseline"),
    "center_loss.lambda": _float(0),
    "center_loss.mu": _float(0),
    "center_loss.alpha": _float(0, 1),
    "activations.n_samples": _int(10, 10_000),
    "activations.pca_dims": _int(2, 4096),
    "activations.batch_size": _int(1),
    "activations.surface_images": _int(1, 16),
    "tsne.perplexity": _float(1, 500),
    "tsne.early_exaggeration_iter": _int(0, 10_000),
    "tsne.n_iter": _int(50),
    "tsne.knn_k": _int(1, 100),
    "tsne.trust_samples": _int(20, 10_000),
    "gradcam.images_per_class": _int(1, 20),
    "gradcam.auc_steps": _int(2, 1024),
}


def _flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def validate(params: dict) -> dict:
    """Check a params dict against SCHEMA and cross-key rules; return it unchanged."""
    if not isinstance(params, dict):
        raise ParamsError(f"{PARAMS_FILE}: expected a mapping of keys, got {type(params).__name__}")
    flat = _flatten(params)
    for key in flat:
        if key not in SCHEMA:
            raise ParamsError(f"{PARAMS_FILE}: unknown key {key!r}; known keys: " + ", ".join(SCHEMA))
    for key, check in SCHEMA.items():
        if key not in flat:
            raise ParamsError(f"{PARAMS_FILE}: missing key {key!r}")
        problem = check(flat[key])
        if problem:
            raise ParamsError(f"{PARAMS_FILE}: {key} = {flat[key]!r} is not allowed; allowed: "
                              + problem.removeprefix("allowed: "))
    d = params["data"]
    if d["train_size"] is not None and d["train_size"] + d["val_size"] > 50_000:
        raise ParamsError(f"{PARAMS_FILE}: data.train_size + data.val_size = "
                          f"{d['train_size'] + d['val_size']} is not allowed; allowed: <= 50000")
    n_test = d["test_size"] if d["test_size"] is not None else 10_000
    if params["activations"]["n_samples"] > n_test:
        raise ParamsError(f"{PARAMS_FILE}: activations.n_samples = {params['activations']['n_samples']} "
                          f"is not allowed; allowed: <= the test split size ({n_test})")
    a = params["activations"]
    for key, limit, what in (("pca_dims", a["n_samples"], "activations.n_samples"),
                             ("pca_dims", a["batch_size"], "activations.batch_size")):
        if a[key] > limit:  # IncrementalPCA needs >= n_components rows in total and per batch
            raise ParamsError(f"{PARAMS_FILE}: activations.{key} = {a[key]} is not allowed; "
                              f"allowed: <= {what} ({limit})")
    return params


def load(path: str | Path = PARAMS_FILE) -> dict:
    """Read and validate params.yaml (the only config; `dvc exp run -S` edits it)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found; run from the repository root") from None
    try:
        params = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    return validate(params)
