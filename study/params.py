"""The one loader of params.yaml: every key checked for type, range and allowed values.

`load()` returns the params as nested dicts. Any problem raises ParamsError whose
message is one line naming the key, the value and what is allowed, e.g.
    params.yaml: optimizer = 'adagrad' is not allowed; allowed: adam, sgd, rmsprop
Stages call `load()` first, before any heavy work.
"""
from __future__ import annotations

import math
import re
import reprlib
import sys
from pathlib import Path
from urllib.parse import urlparse


PARAMS_FILE = Path("params.yaml")
MAX_BYTES = 1 << 20       # params.yaml is a page of text; anything larger is not ours


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


def _finite(v) -> bool:
    """A finite int or float; an int too large for a float (400 digits) is not."""
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def _float(lo=None, hi=None, lo_open=False):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not _finite(v):
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


AUGMENTS = ("none", "rotate_flip", "crop_flip")
MAX_DEVICES = 64


def _devices(v):
    if v not in ("auto", "cpu") and (isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_DEVICES):
        return f"auto, cpu or a number of devices in [1, {MAX_DEVICES}]"


def _augment(v):
    if not (isinstance(v, bool) or v in AUGMENTS):
        return "allowed: " + ", ".join(AUGMENTS) + " (true = rotate_flip, false = none)"


def _md5(v):
    if not (v is None or isinstance(v, str) and re.fullmatch(r"[0-9a-fA-F]{32}", v)):
        return "32 hex digits (the archive's md5), or null for a local folder of class folders"


def _url(v):
    if not (isinstance(v, str) and v.strip()) or any(ord(c) < 32 or ord(c) == 127 for c in v):
        return "an http(s):// URL, a file:// URL or a local path"
    scheme = v.split("://", 1)[0].lower() if "://" in v else ""
    if scheme not in ("", "http", "https", "file"):
        return "an http(s):// URL, a file:// URL or a local path"


# The tricks for fewer epochs and the value of each that leaves it off (the recipe without it)
TRICKS_OFF = {"whiten_init": False, "dirac_init": False, "alternating_flip": False, "ema_momentum": 0}

# Every key params.yaml may hold, with its check. A check returns None when the
# value is fine, else a text saying what is allowed.
SCHEMA = {
    "seed": _int(0, 2**31 - 1),
    "optimizer": _choice("adam", "sgd", "rmsprop"),
    "learning_rate": _float(0, 10, lo_open=True),
    "weight_decay": _float(0, 1),    # decoupled (Keras optimizers' weight_decay): w -= lr * wd * w
    "label_smoothing": _float(0, 0.5),
    "lr_schedule": _choice("none", "step", "cosine", "onecycle"),
    "lr_warmup_epochs": _float(0, 1_000),
    "lr_step_epochs": _int(1, 1_000),
    "lr_step_factor": _float(0, 1, lo_open=True),
    "epochs": _int(1, 1_000),         # upper bounds on counts catch typos (5000 for 50) before hours of work
    "batch_size": _int(1, 50_000),   # <= the 50,000 training images
    "batch_norm": _bool,
    "fused_batch_norm": _bool,
    "augment": _augment,
    "tta": _choice("none", "flip", "flip_shift"),
    "alternating_flip": _bool,
    "ema_momentum": _float(0, 0.9999),
    "whiten_init": _bool,
    "dirac_init": _bool,
    "devices": _devices,
    "dtype_policy": _choice("auto", "float32", "mixed_bfloat16"),
    "data.url": _url,
    "data.md5": _md5,
    "data.image_size": _int(8, 512),   # >= 8: three 2x2 poolings leave >= 1 pixel
    "data.val_size": _int(2, 10_000_000),
    "data.train_size": _int(2, 10_000_000, null=True),
    "data.test_size": _int(2, 10_000_000, null=True),
    "data.timeout": _float(0, 3600, lo_open=True),
    "data.retries": _int(1, 20),
    "kmeans.n_init": _int(1, 100),
    "kmeans.max_iter": _int(1, 10_000),
    "center_loss.variant": _choice("center", "island", "contrastive"),
    "center_loss.init": _choice("scratch", "baseline"),
    "center_loss.lambda": _float(0),
    "center_loss.mu": _float(0),
    "center_loss.alpha": _float(0, 1),
    "activations.n_samples": _int(10, 10_000),
    "activations.pca_dims": _int(2, 4096),
    "activations.batch_size": _int(1, 10_000),
    "activations.surface_images": _int(1, 16),
    "tsne.perplexity": _float(1, 500),
    "tsne.early_exaggeration_iter": _int(0, 10_000),
    "tsne.n_iter": _int(50, 10_000),
    "tsne.early_exaggeration_iter_3d": _int(0, 10_000),
    "tsne.n_iter_3d": _int(50, 10_000),
    "tsne.knn_k": _int(1, 100),
    "tsne.trust_samples": _int(20, 10_000),
    "gradcam.images_per_class": _int(1, 20),
    "gradcam.auc_steps": _int(2, 1024),
}


def _sections() -> set[str]:
    """The section names of SCHEMA ('data', 'kmeans', ...)."""
    return {k.split(".", 1)[0] for k in SCHEMA if "." in k}


def _show(value) -> str:
    """repr of a value, cut short: a huge or self-referencing value still gives one short line."""
    return _REPR.repr(value)


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 200
_REPR.maxlist = _REPR.maxdict = _REPR.maxtuple = 8
_REPR.maxlevel = 3


def _flatten(params: dict) -> dict:
    """{'data': {'url': u}, 'seed': 0} -> {'data.url': u, 'seed': 0}; sections nest one level only."""
    sections, out = _sections(), {}
    for key, value in params.items():
        if isinstance(value, dict):
            if key not in sections:
                raise ParamsError(f"{PARAMS_FILE}: unknown section {_show(key)}; known sections: "
                                  + ", ".join(sorted(sections)))
            out.update({f"{key}.{k}": v for k, v in value.items()})
        elif key in sections:
            raise ParamsError(f"{PARAMS_FILE}: {key} = {_show(value)} is not allowed; allowed: a section "
                              f"of keys ({', '.join(k for k in SCHEMA if k.startswith(key + '.'))})")
        else:
            out[key] = value
    return out


def validate(params: dict) -> dict:
    """Check a params dict against SCHEMA and cross-key rules; return it, with `augment`'s
    true/false (the original study's on/off switch) spelled as their names (rotate_flip/none)."""
    if not isinstance(params, dict):
        raise ParamsError(f"{PARAMS_FILE}: expected a mapping of keys, got {type(params).__name__}")
    flat = _flatten(params)
    for key in flat:
        if key not in SCHEMA:
            raise ParamsError(f"{PARAMS_FILE}: unknown key {_show(key)}; known keys: " + ", ".join(SCHEMA))
    for key, check in SCHEMA.items():
        if key not in flat:
            raise ParamsError(f"{PARAMS_FILE}: missing key {key!r}")
        problem = check(flat[key])
        if problem:
            raise ParamsError(f"{PARAMS_FILE}: {key} = {_show(flat[key])} is not allowed; allowed: "
                              + problem.removeprefix("allowed: "))
    n, bs = params["devices"], params["batch_size"]
    if not isinstance(n, str) and bs % n:  # n replicas (GPUs, or logical CPU devices); auto is checked when training
        raise ParamsError(f"{PARAMS_FILE}: batch_size = {bs} is not allowed with devices = {n}; allowed: a multiple "
                          f"of {n} (each device takes an equal share of every batch)")
    if isinstance(params["augment"], bool):
        params["augment"] = AUGMENTS[1] if params["augment"] else AUGMENTS[0]
    d, a = params["data"], params["activations"]
    if d["md5"] is None and urlparse(d["url"]).scheme.lower() in ("http", "https"):
        raise ParamsError(f"{PARAMS_FILE}: data.md5 = null is not allowed for an http(s) data.url; allowed: "
                          "the archive's md5 (null only for a local folder of class folders)")
    if d["test_size"] is not None and a["n_samples"] > d["test_size"]:
        raise ParamsError(f"{PARAMS_FILE}: activations.n_samples = {a['n_samples']} is not allowed; "
                          f"allowed: <= data.test_size ({d['test_size']})")
    for key, limit, what in (("pca_dims", a["n_samples"], "activations.n_samples"),
                             ("pca_dims", a["batch_size"], "activations.batch_size")):
        if a[key] > limit:  # IncrementalPCA needs >= n_components rows in total and per batch
            raise ParamsError(f"{PARAMS_FILE}: activations.{key} = {a[key]} is not allowed; "
                              f"allowed: <= {what} ({limit})")
    return params


def check_against_data(params: dict, n_test: int, n_classes: int) -> None:
    """The params that the data's size bounds, checked once it is known (fetch_data, and each
    training before it starts): activations.n_samples <= the test split, and tsne.trust_samples
    either all of them or a stratified subset that leaves one image per class out."""
    a, t = params["activations"], params["tsne"]
    if a["n_samples"] > n_test:
        raise ParamsError(f"{PARAMS_FILE}: activations.n_samples = {a['n_samples']} is not allowed; "
                          f"allowed: <= the test split size ({n_test})")
    if a["n_samples"] - n_classes < t["trust_samples"] < a["n_samples"]:
        raise ParamsError(f"{PARAMS_FILE}: tsne.trust_samples = {t['trust_samples']} is not allowed; allowed: "
                          f"<= {a['n_samples'] - n_classes} (a stratified subsample of activations.n_samples "
                          f"leaves one image per class out) or >= {a['n_samples']} (all)")


def _read_text(path: Path) -> str:
    """The file's text; every way it can be unreadable is a one-line ParamsError."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found; run from the repository root") from None
    except IsADirectoryError:
        raise ParamsError(f"{path}: is a directory; expected the params file (YAML text)") from None
    except OSError as e:
        raise ParamsError(f"{path}: cannot be read ({e.strerror})") from None
    return decode(raw, path, MAX_BYTES, "; expected the params file (YAML text)")


def decode(raw: bytes, path, max_bytes: int, hint: str = "") -> str:
    """UTF-8 text of a file's bytes (at most max_bytes); else a one-line ParamsError naming it."""
    if len(raw) > max_bytes:
        raise ParamsError(f"{path}: larger than {max_bytes >> 10} KiB{hint}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ParamsError(f"{path}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start})") from None


def parse(text: str, path: str | Path = PARAMS_FILE):
    """YAML text -> Python values exactly as DVC reads params (ruamel.yaml's safe loader, YAML 1.2:
    `1e-05` is a number, `010` is 10, `1:30` a string); ParamsError on anything unreadable,
    including a key given twice and an integer too long for Python to convert."""
    from ruamel.yaml import YAML
    from ruamel.yaml.constructor import DuplicateKeyError
    from ruamel.yaml.error import YAMLError
    try:
        return YAML(typ="safe").load(text)
    except DuplicateKeyError as e:
        key = re.search(r'duplicate key "(.*?)" with value', str(e.problem))
        raise ParamsError(f"{path}: key {_show(key.group(1) if key else '?')} is given twice "
                          f"(line {e.problem_mark.line + 1}); keep one") from None
    except YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ParamsError(f"{path}: not valid YAML ({' '.join(str(what).split())[:200]}{where})") from None
    except RecursionError:
        raise ParamsError(f"{path}: nested too deeply to be a params file") from None
    except ValueError as e:  # an integer longer than Python converts, an impossible date (2001-13-45)
        if "integer string conversion" in str(e):
            raise ParamsError(f"{path}: holds an integer of more than {sys.get_int_max_str_digits()} digits; "
                              f"not a params file value") from None
        raise ParamsError(f"{path}: a value cannot be read ({' '.join(str(e).split())[:200]})") from None


def load(path: str | Path = PARAMS_FILE) -> dict:
    """Read and validate params.yaml (the only config; `dvc exp run -S` edits it)."""
    path = Path(path)
    return validate(parse(_read_text(path), path))
