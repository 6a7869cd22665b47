"""The splits: drawing them (fetch_data), reading the ones fetch_data wrote, and the one preprocessing step."""
from __future__ import annotations

import re
import reprlib

import numpy as np

from study import paths
from study.errors import StageError
from study.files import load_npz, read_json

FETCH_STAGE = "fetch_data"
MAX_CLASSES = 100    # class folders of one source (grids and legends stay readable)
CLASS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,39}")
NAME_RULE = "1-40 letters, digits, spaces, '_', '-', '.', starting with a letter or digit"
SPLITS = ("train", "val", "test")


def class_counts(y: np.ndarray, classes: list[str]) -> dict[str, int]:
    """{class name: number of images} of a label vector."""
    return dict(zip(classes, np.bincount(y, minlength=len(classes)).tolist()))


def fetch_info(data: dict, source: dict, splits: dict, classes: list[str]) -> dict:
    """The data/fetch.json record: data.url, what it held (`source`: kind, bytes read, files
    skipped), md5, image size, sizes and per-class counts of each split."""
    return {"url": data["url"], "md5": data["md5"] and data["md5"].lower(), "kind": source["kind"],
            "archive_bytes": source["bytes"], "skipped_files": source["skipped"],
            "image_size": data["image_size"], "sizes": {s: int(len(splits[s][1])) for s in SPLITS},
            "class_counts": {s: class_counts(splits[s][1], classes) for s in SPLITS}}


def load_split(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(x uint8 (N, S, S, 3), y uint8 (N,)) of 'train', 'val' or 'test' (S = data.image_size)."""
    path = {"train": paths.TRAIN, "val": paths.VAL, "test": paths.TEST}[name]
    arrays = load_npz(path, FETCH_STAGE, ("x", "y"))
    return arrays["x"], arrays["y"]


def check_class_names(names, source) -> list[str]:
    """`names` if it is a list of 2..MAX_CLASSES different CLASS_NAME strings, else a one-line
    StageError naming `source` and the stage that rebuilds it. Names reach file names, TSV cells,
    markdown, matplotlib text (where `$` starts mathtext) and the plots page's inline script (`</`)."""
    if not (isinstance(names, list) and 2 <= len(names) <= MAX_CLASSES and all(isinstance(n, str) for n in names)):
        raise StageError(f"{source}: expected a list of 2..{MAX_CLASSES} class names; "
                         f"run `dvc repro {FETCH_STAGE}` to rebuild it")
    bad = first_bad_name(names)
    if bad is not None or len(set(names)) != len(names):
        what = f"class name {reprlib.repr(bad)} is not allowed" if bad is not None else "class names repeat"
        raise StageError(f"{source}: {what}; allowed: different names of {NAME_RULE}; run `dvc repro {FETCH_STAGE}`")
    return names


def first_bad_name(names: list[str]) -> str | None:
    """The first of `names` that CLASS_NAME does not allow, or None."""
    return next((n for n in names if not CLASS_NAME.fullmatch(n)), None)


def class_names() -> list[str]:
    """The class names, index = label, checked (check_class_names)."""
    return check_class_names(read_json(paths.CLASSES, FETCH_STAGE), paths.CLASSES)


def preprocess(x):
    """uint8 images -> float32 in [0, 1], the input every model in the study takes (numpy or tf)."""
    if isinstance(x, np.ndarray):
        return x.astype(np.float32) / 255.0
    import tensorflow as tf
    return tf.cast(x, tf.float32) / 255.0


def stratified_subset(y: np.ndarray, n: int, seed: int, key: str = "subset size") -> np.ndarray:
    """Sorted indices of a seeded, class-stratified subset of size n (all indices if n >= len(y)).

    Stratifying needs at least one image of every class in the subset and in what is left
    out; a size that cannot give that is a one-line StageError naming `key` (the param)."""
    if n >= len(y):
        return np.arange(len(y))
    k = len(np.unique(y))
    if not k <= n <= len(y) - k:
        raise StageError(f"{key} = {n} is not allowed: a stratified subset of {len(y)} images needs at "
                         f"least one image per class in it and left out of it; allowed: {k}..{len(y) - k}, "
                         f"or {len(y)} for all")
    from sklearn.model_selection import train_test_split
    try:
        idx, _ = train_test_split(np.arange(len(y)), train_size=n, stratify=y, random_state=seed)
    except ValueError as e:  # e.g. a class with a single image
        raise StageError(f"{key} = {n}: no stratified subset of these {len(y)} images ({e})") from None
    return np.sort(idx)


def hold_out_test(x: np.ndarray, y: np.ndarray, data: dict, seed: int):
    """((x, y) to train on, (x, y) to test on) of one class tree: data.test_size images drawn
    stratified and seeded; a one-line StageError when data.test_size is null or does not fit."""
    n = data["test_size"]
    if n is None:
        raise StageError("data.test_size = null is not allowed for one class tree without train/ and test/; "
                         "allowed: the number of images to hold out for testing (drawn from every class)")
    if n > len(y) - 2 * len(np.unique(y)):
        raise StageError(f"data.test_size = {n} is too large: the folder holds {len(y)} images; allowed: "
                         f"<= {len(y) - 2 * len(np.unique(y))} (training needs >= 2 images per class)")
    test = stratified_subset(y, n, seed, "data.test_size")
    rest = np.setdiff1d(np.arange(len(y)), test)
    return (x[rest], y[rest]), (x[test], y[test])


def split_indices(y_train: np.ndarray, y_test: np.ndarray, classes: list[str], data: dict,
                  seed: int) -> dict[str, np.ndarray]:
    """Sorted indices {'train', 'val' (into the archive's train), 'test'}: stratified, seeded.

    `data` is params['data']: val_size held out first, then train_size / test_size
    subsets (None = all). Sizes the archive cannot supply raise StageError naming the key.
    """
    from sklearn.model_selection import train_test_split

    n_train, n_test, k = len(y_train), len(y_test), len(classes)
    val, tr, te = data["val_size"], data["train_size"], data["test_size"]
    if val > n_train - k:  # stratify needs >= 1 image per class on both sides
        raise StageError(f"data.val_size = {val} is too large: the archive has {n_train} training "
                         f"images; allowed: <= {n_train - k}")
    if tr is not None and tr > n_train - val:
        raise StageError(f"data.train_size = {tr} is too large: {n_train - val} training images "
                         f"remain after data.val_size = {val}")
    if te is not None and te > n_test:
        raise StageError(f"data.test_size = {te} is too large: the archive has {n_test} test images")
    try:
        rest, held = train_test_split(np.arange(n_train), test_size=val, stratify=y_train, random_state=seed)
    except ValueError as e:
        raise StageError(f"data.val_size = {val}: no stratified split of the {n_train} training images ({e})") from None
    rest = np.sort(rest)
    if tr is not None:
        rest = rest[stratified_subset(y_train[rest], tr, seed, "data.train_size")]
    test = np.arange(n_test) if te is None else stratified_subset(y_test, te, seed, "data.test_size")
    idx = {"train": rest, "val": np.sort(held), "test": test}
    for split, key, y in (("train", "train_size", y_train), ("val", "val_size", y_train), ("test", "test_size", y_test)):
        missing = sorted(set(range(k)) - set(np.unique(y[idx[split]]).tolist()))
        if missing:  # the archive is so unbalanced that stratifying left a class out
            raise StageError(f"data.{key} = {data[key]} leaves the {split} split without class "
                             f"'{classes[missing[0]]}'; every split needs every class (raise data.{key})")
    return idx
