"""CIFAR-10 python archive: read its members (bounded), parse and validate them.

The archive (cifar-10-python.tar.gz) holds cifar-10-batches-py/{data_batch_1..5,
test_batch, batches.meta}: Python pickles of dicts with bytes keys, `data` a uint8
array of rows of 3072 = R plane, G plane, B plane (each 32x32, row-major).

The archive given here has been verified (study.download). Its tar is read as a stream
with caps on entries, member size and unpacked bytes; each member is unpickled by
study.safe_pickle as soon as it is read and never extracted to disk; batches are checked
for shape, dtype, labels, class names, and images that appear in two members.
Every user-fixable problem raises StageError with one line naming the cause.
"""
from __future__ import annotations

import gzip
import hashlib
import tarfile
import zlib
from pathlib import Path

import numpy as np

from study.errors import StageError
from study.safe_pickle import MAX_ROWS, ROW, load_pickle, short_repr

PREFIX = "cifar-10-batches-py/"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
MEMBERS = TRAIN_BATCHES + (TEST_BATCH, META)
CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck")
SIDE, CHANNELS = 32, 3                  # ROW = SIDE * SIDE * CHANNELS bytes per image
CHUNK = 1 << 20                         # bytes per read of the unpacked tar
# Bounds that keep a hostile archive from costing unbounded memory or time, with room above
# what either form of the official archive needs (docs/troubleshooting.md gives the sizes)
MAX_MEMBER_BYTES = 64 << 20
MAX_UNPACKED_BYTES = 512 << 20
MAX_TAR_ENTRIES = 64


# ---------------------------------------------------------------- parsing and validation

def _str_keys(obj, member: str) -> dict:
    """A batch dict with bytes keys decoded to str (archives pickled by Python 3 may use str)."""
    if not isinstance(obj, dict):
        raise StageError(f"archive: {PREFIX}{member} holds a {type(obj).__name__}, expected a dict")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def rows_to_images(rows: np.ndarray) -> np.ndarray:
    """(N, 3072) rows of R, G, B planes -> (N, 32, 32, 3) uint8 images (a view, no copy)."""
    return rows.reshape(-1, CHANNELS, SIDE, SIDE).transpose(0, 2, 3, 1)


def _labels(value, n: int, where: str, n_classes: int) -> np.ndarray:
    """A batch's labels, a flat list (or 1-D integer array) of n ints in 0..n_classes-1."""
    if isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "iu":
        labels = value.astype(np.int64)
    elif isinstance(value, list):
        bad = next((i for i, v in enumerate(value) if type(v) is not int), None)  # no recursion
        if bad is not None:
            raise StageError(f"{where}: labels must be a flat list of integers "
                             f"(item {bad} is a {type(value[bad]).__name__})")
        labels = np.array(value, dtype=np.int64) if len(value) <= n else None
    else:
        raise StageError(f"{where}: labels must be a list of integers")
    if labels is None or len(labels) != n:
        raise StageError(f"{where}: {len(value)} labels for {n} images")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise StageError(f"{where}: labels span {labels.min()}..{labels.max()}, allowed 0..{n_classes - 1}")
    return labels.astype(np.uint8)


def parse_batch(obj, member: str, n_classes: int = len(CLASSES)) -> tuple[np.ndarray, np.ndarray]:
    """Validate one data batch dict; return (rows uint8 (N, 3072), labels uint8 (N,))."""
    d = _str_keys(obj, member)
    where = f"archive: {PREFIX}{member}"
    for key in ("data", "labels"):
        if key not in d:
            raise StageError(f"{where} has no '{key}' entry (keys: {short_repr(list(d))})")
    data = d["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != ROW:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise StageError(f"{where}: data is {got}, expected uint8 (N, {ROW})")
    if not 1 <= len(data) <= MAX_ROWS:
        raise StageError(f"{where}: data holds {len(data)} images, allowed 1..{MAX_ROWS}")
    return data, _labels(d["labels"], len(data), where, n_classes)


def parse_meta(obj) -> list[str]:
    """Validate batches.meta; return its label_names, which must be the CIFAR-10 classes in order."""
    d = _str_keys(obj, META)
    names = d.get("label_names")
    if not isinstance(names, list) or len(names) != len(CLASSES) \
            or not all(isinstance(n, (bytes, str)) for n in names):
        raise StageError(f"archive: {PREFIX}{META} has no list of {len(CLASSES)} label_names")
    names = [n.decode("latin1") if isinstance(n, bytes) else n for n in names]
    if tuple(names) != CLASSES:
        raise StageError(f"archive: {PREFIX}{META} label_names are {short_repr(names)}, "
                         f"expected the CIFAR-10 classes {list(CLASSES)}")
    return names


class _CappedReader:
    """A file-like read() over the gunzipped archive that fails once MAX_UNPACKED_BYTES are read."""

    def __init__(self, f, name: str):
        self._f, self._name, self.total = f, name, 0

    def read(self, size=-1):
        data = self._f.read(CHUNK if size is None or size < 0 else min(size, CHUNK))
        self.total += len(data)
        if self.total > MAX_UNPACKED_BYTES:
            raise StageError(f"archive: {self._name} unpacks to more than {MAX_UNPACKED_BYTES >> 20} MB; "
                             "the CIFAR-10 python archive unpacks to ~180 MB")
        return data


def _parsed_members(path: Path) -> dict:
    """One streaming pass over the tar.gz: each expected member parsed as soon as it is read
    (so one raw member is in memory at a time, and nothing is extracted to disk).

    Returns {member: (rows, labels)} for the batches and {META: class names}."""
    parsed: dict = {}
    with gzip.open(path, "rb") as gz, tarfile.open(fileobj=_CappedReader(gz, path.name), mode="r|") as tar:
        for count, m in enumerate(tar, start=1):
            if count > MAX_TAR_ENTRIES:
                raise StageError(f"archive: {path.name} has more than {MAX_TAR_ENTRIES} entries; "
                                 "the CIFAR-10 python archive has 9")
            name = m.name.removeprefix("./")
            short = name[len(PREFIX):] if name.startswith(PREFIX) else None
            if short not in MEMBERS:
                continue  # e.g. the official readme.html
            if short in parsed:
                raise StageError(f"archive: {name} appears twice")
            if not m.isfile() or m.size > MAX_MEMBER_BYTES:
                raise StageError(f"archive: {name} is not a regular file under {MAX_MEMBER_BYTES >> 20} MB")
            raw = tar.extractfile(m).read()
            obj = load_pickle(raw, f"archive: {PREFIX}{short}")
            del raw
            parsed[short] = parse_meta(obj) if short == META else parse_batch(obj, short)
    missing = [n for n in MEMBERS if n not in parsed]
    if missing:
        raise StageError(f"archive: {path.name} lacks {', '.join(PREFIX + n for n in missing)}; "
                         "expected the CIFAR-10 python archive")
    return parsed


def check_no_duplicates(rows: dict[str, np.ndarray]) -> None:
    """Refuse an image that appears in two members (a batch copied under another name, or a
    test image also in training): the splits would silently overlap. Names both members."""
    seen: dict[bytes, tuple[str, int]] = {}
    clash: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for member, r in rows.items():
        for i in range(len(r)):
            key = hashlib.blake2b(r[i].tobytes(), digest_size=16).digest()
            first = seen.setdefault(key, (member, i))
            if first[0] != member:
                clash.setdefault((first[0], member), []).append((first[1], i))
    if clash:
        (a, b), pairs = next(iter(clash.items()))
        raise StageError(f"archive: {PREFIX}{b} repeats {len(pairs)} image(s) of {PREFIX}{a} "
                         f"(first: row {pairs[0][1]} = row {pairs[0][0]}); every image must appear once"
                         + (f"; {len(clash) - 1} more pair(s) of members overlap" if len(clash) > 1 else ""))


def _images(batches: list[np.ndarray]) -> np.ndarray:
    """Rows of several batches -> one (N, 32, 32, 3) uint8 array, filled batch by batch (one copy)."""
    x = np.empty((sum(len(r) for r in batches), SIDE, SIDE, CHANNELS), np.uint8)
    start = 0
    for r in batches:
        x[start:start + len(r)] = rows_to_images(r)
        start += len(r)
    return x


def read_archive(path: Path) -> dict:
    """Parse a verified archive: {'classes': [...], 'train': (x, y), 'test': (x, y)}."""
    path = Path(path)
    try:
        parsed = _parsed_members(path)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise StageError(f"archive: {path.name} is not a readable tar.gz "
                         f"({type(e).__name__}: {e})") from None
    classes = parsed.pop(META)
    check_no_duplicates({m: parsed[m][0] for m in TRAIN_BATCHES + (TEST_BATCH,)})
    y_train = np.concatenate([parsed[b][1] for b in TRAIN_BATCHES])
    train = (_images([parsed.pop(b)[0] for b in TRAIN_BATCHES]), y_train)
    test = (_images([parsed[TEST_BATCH][0]]), parsed[TEST_BATCH][1])
    for split, (_, y) in (("train", train), ("test", test)):
        counts = np.bincount(y, minlength=len(classes))
        if counts.min() < 2:  # a stratified split needs every class at least twice
            k = int(counts.argmin())
            raise StageError(f"archive: the {split} batches hold {counts[k]} image(s) of class "
                             f"'{classes[k]}'; every class needs at least 2")
    return {"classes": classes, "train": train, "test": test}
