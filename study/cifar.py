"""CIFAR-10 python archive: fetch it safely, parse it without running its code, split it.

The archive (cifar-10-python.tar.gz) holds cifar-10-batches-py/{data_batch_1..5,
test_batch, batches.meta}: Python pickles of dicts with bytes keys, `data` a uint8
array of rows of 3072 = R plane, G plane, B plane (each 32x32, row-major).

Safety rules:
- downloads stream to a temp file (per-read timeout, bounded retries on transient
  errors only: 5xx, connection errors, timeouts, short bodies; never on 4xx or md5);
- the md5 is checked before anything reads the archive;
- pickles go through `RestrictedUnpickler`, which resolves only the few globals a
  CIFAR-10 batch needs, so an archive whose pickle would run code is refused even
  when its md5 matches;
- members are read in memory, never extracted to disk.
Every user-fixable problem raises StageError with one line naming the cause.
"""
from __future__ import annotations

import _compat_pickle
import gzip
import hashlib
import io
import math
import pickle
import pickletools
import re
import reprlib
import socket
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import numpy as np

from study.io import StageError

PREFIX = "cifar-10-batches-py/"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
MEMBERS = TRAIN_BATCHES + (TEST_BATCH, META)
CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck")
SIDE, CHANNELS = 32, 3
ROW = SIDE * SIDE * CHANNELS            # 3072 bytes per image in the archive
CHUNK = 1 << 20                         # bytes per read when downloading / hashing
MAX_ROWS = 10_000                       # images in one official batch
# Bounds that keep a hostile archive from costing unbounded memory or time. Measured on the
# official-format archives rebuilt from ../shared/data: a batch member is 30.9 MB in the Python 2
# form (the official one) and 44.7 MB in the Python 3 form (bytes as UTF-8 text), with 30,108
# and 90,152 pickle opcodes (3 and 9 per image); the tar unpacks to 185 MB and 268 MB.
MAX_ARCHIVE_BYTES = 512 << 20           # the official archive is 163 MB
MAX_MEMBER_BYTES = 64 << 20
MAX_UNPACKED_BYTES = 512 << 20
MAX_TAR_ENTRIES = 64
MAX_PICKLE_OPS = 16 * MAX_ROWS + 1_000  # up to 9 per image, and slack
BACKOFF_S = 1.0                         # wait before retry k is k * BACKOFF_S seconds
USER_AGENT = "cifar10-dvc-study/1.0 (python urllib)"


# ---------------------------------------------------------------- restricted unpickling

class RefusedGlobal(pickle.UnpicklingError):
    """The pickle asked for a global outside the allow-list (it would run code)."""


class _Refused(pickle.UnpicklingError):
    """An allowed global called with arguments or state outside what a CIFAR-10 batch holds."""


# Everything the two forms of the archive use: the official release (Python 2: byte strings
# as BINSTRING, numpy.core names) and Python 3's protocol 2 (bytes as _codecs.encode(str,
# 'latin1'), numpy._core names). Protocol 2 has no opcodes that read a length larger than
# what follows, and the ones below build only small objects from the stream's own bytes.
PICKLE_OPCODES = frozenset({
    "PROTO", "STOP", "MARK", "NONE", "NEWTRUE", "NEWFALSE", "BININT", "BININT1", "BININT2",
    "SHORT_BINSTRING", "BINSTRING", "BINUNICODE", "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2",
    "TUPLE3", "EMPTY_LIST", "APPEND", "APPENDS", "EMPTY_DICT", "SETITEM", "SETITEMS",
    "BINPUT", "LONG_BINPUT", "BINGET", "LONG_BINGET", "GLOBAL", "REDUCE", "BUILD"})
_PUTS = ("BINPUT", "LONG_BINPUT")
_DTYPE = re.compile(r"[biuf][1248]")  # plain numbers: no objects, strings, records or sub-arrays


def _prescan(data: bytes, where: str) -> None:
    """Walk the opcodes without building anything: refuse any outside PICKLE_OPCODES, more than
    MAX_PICKLE_OPS of them, or a memo index beyond the opcodes seen (it sizes the memo)."""
    n = 0
    try:
        for op, arg, _pos in pickletools.genops(data):  # reads each length from what is present
            n += 1
            if n > MAX_PICKLE_OPS:
                raise StageError(f"{where} has more than {MAX_PICKLE_OPS} pickle opcodes; "
                                 f"a CIFAR-10 batch of {MAX_ROWS} images needs fewer")
            if op.name not in PICKLE_OPCODES:
                raise StageError(f"{where} uses pickle opcode {op.name}, which a CIFAR-10 batch "
                                 "does not need (refusing it)")
            if op.name in _PUTS and arg > n:
                raise StageError(f"{where} pickle memo index {arg} is out of range")
    except StageError:
        raise
    except Exception as e:  # truncated arguments, unknown opcodes, bad UTF-8
        raise StageError(f"{where} is not a readable pickle ({type(e).__name__}: {e})") from None


class _Dtype:
    """`numpy.dtype(spec, align, copy)` of a plain number type, its state checked before use."""

    def __init__(self, spec, align=False, copy=True):
        spec = spec.decode("latin1") if isinstance(spec, bytes) else spec
        if not (isinstance(spec, str) and _DTYPE.fullmatch(spec)) or align:
            raise _Refused(f"numpy.dtype({_short(spec)}): only plain number types are allowed")
        self.dtype = np.dtype(spec)

    def __setstate__(self, state):
        # numpy writes (3, byteorder, None, None, None, -1, -1, 0); anything else would
        # describe records, sub-arrays or objects
        plain = isinstance(state, tuple) and len(state) == 8 and state[0] == 3 \
            and state[2:] == (None, None, None, -1, -1, 0)
        order = state[1] if plain else None
        order = order.decode("latin1") if isinstance(order, bytes) else order
        if order not in ("<", ">", "|", "="):
            raise _Refused(f"numpy.dtype state {_short(state)}: only plain number types are allowed")
        if order in "<>":
            self.dtype = self.dtype.newbyteorder(order)


class _Array:
    """What `_reconstruct(ndarray, (0,), b'b')` gives: the array exists once BUILD's state is checked."""

    def __init__(self):
        self.array = None

    def __setstate__(self, state):
        # (version 1, shape, dtype, fortran order, raw bytes): the shape must fit the bytes present
        if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1):
            raise _Refused(f"ndarray state {_short(state)} is not (1, shape, dtype, order, bytes)")
        _, shape, dtype, fortran, raw = state
        if not (isinstance(shape, tuple) and 1 <= len(shape) <= 2
                and all(type(d) is int and 0 <= d <= MAX_ROWS * ROW for d in shape)):
            raise _Refused(f"ndarray shape {_short(shape)}: expected 1 or 2 dimensions")
        if not isinstance(dtype, _Dtype) or not isinstance(raw, bytes) or type(fortran) not in (bool, int):
            raise _Refused("ndarray data that is not raw bytes of a plain number type")
        if math.prod(shape) * dtype.dtype.itemsize != len(raw):
            raise _Refused(f"ndarray of shape {shape} {dtype.dtype} with {len(raw)} bytes behind it")
        self.array = np.frombuffer(raw, dtype.dtype).reshape(shape, order="F" if fortran else "C")


def _short(value) -> str:
    """A repr that stays short whatever the pickle built."""
    return reprlib.repr(value)


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler for CIFAR-10 batches: find_class resolves only the globals the two forms of
    the archive use, each replaced by a checked stand-in that allocates only what the stream's
    own bytes justify (`_codecs.encode` within a byte budget, dtypes of plain numbers, arrays
    whose shape matches the bytes present). Anything else raises RefusedGlobal."""

    _NDARRAY = object()  # `numpy.ndarray` is only ever an argument of _reconstruct

    def __init__(self, file, budget: int):
        super().__init__(file, encoding="bytes")  # Python 2 str -> bytes (official keys are bytes)
        self._budget = budget
        allowed = {("_codecs", "encode"): self._encode, ("numpy", "ndarray"): self._NDARRAY,
                   ("numpy", "dtype"): _Dtype}
        for core in ("numpy.core", "numpy._core"):  # official archive: numpy.core; numpy >= 2: numpy._core
            allowed[(f"{core}.multiarray", "_reconstruct")] = self._reconstruct
        self._allowed = allowed

    def find_class(self, module, name):
        obj = self._allowed.get((module, name))
        if obj is None:  # named as Python 3 calls it (protocol 2 writes __builtin__.exec)
            module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
            raise RefusedGlobal(f"{_compat_pickle.IMPORT_MAPPING.get(module, module)}.{name}")
        return obj

    def _encode(self, text, encoding="utf-8", errors="strict"):
        """`_codecs.encode(str, 'latin1')`, as protocol 2 writes bytes; at most `budget` bytes in all."""
        if not isinstance(text, str) or str(encoding).lower().replace("_", "-") not in ("latin1", "latin-1") \
                or errors != "strict":
            raise RefusedGlobal("_codecs.encode with anything but (str, 'latin1')")
        self._budget -= len(text)
        if self._budget < 0:
            raise _Refused("more bytes decoded than the member holds")
        return text.encode("latin1")

    def _reconstruct(self, subtype, shape, typecode):
        if subtype is not self._NDARRAY or shape != (0,) or typecode != b"b":
            raise _Refused("_reconstruct with arguments other than (numpy.ndarray, (0,), b'b')")
        return _Array()


def _resolve(obj):
    """Top-level values of a batch dict: checked array stand-ins -> their numpy arrays."""
    if isinstance(obj, _Array):
        if obj.array is None:
            raise _Refused("an ndarray without its data")
        return obj.array
    if isinstance(obj, dict):
        return {k: _resolve(v) if isinstance(v, _Array) else v for k, v in obj.items()}
    return obj


def load_pickle(data: bytes, member: str):
    """Unpickle one archive member safely (see RestrictedUnpickler); StageError names what is wrong."""
    where = f"archive: {PREFIX}{member}"
    _prescan(data, where)
    try:
        return _resolve(RestrictedUnpickler(io.BytesIO(data), budget=len(data)).load())
    except RefusedGlobal as e:
        raise StageError(f"{where} pickle wants {e} which is not allowed "
                         "(refusing to run code from the archive)") from None
    except _Refused as e:
        raise StageError(f"{where}: {e} (refusing it)") from None
    except Exception as e:  # corrupt pickles raise anything from EOFError to TypeError
        raise StageError(f"{where} is not a readable pickle ({type(e).__name__}: {_short(str(e))})") from None


# ---------------------------------------------------------------- parsing and validation

def _str_keys(obj, member: str) -> dict:
    """A batch dict with bytes keys decoded to str (archives pickled by Python 3 may use str)."""
    if not isinstance(obj, dict):
        raise StageError(f"archive: {PREFIX}{member} holds a {type(obj).__name__}, expected a dict")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def rows_to_images(rows: np.ndarray) -> np.ndarray:
    """(N, 3072) rows of R, G, B planes -> (N, 32, 32, 3) uint8 images."""
    return np.ascontiguousarray(rows.reshape(-1, CHANNELS, SIDE, SIDE).transpose(0, 2, 3, 1))


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
            raise StageError(f"{where} has no '{key}' entry (keys: {_short(list(d))})")
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
        raise StageError(f"archive: {PREFIX}{META} label_names are {_short(names)}, "
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
            obj = load_pickle(raw, short)
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
        x[start:start + len(r)] = r.reshape(-1, CHANNELS, SIDE, SIDE).transpose(0, 2, 3, 1)
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


# ---------------------------------------------------------------- splits

def split_indices(y_train: np.ndarray, y_test: np.ndarray, data: dict, seed: int) -> dict[str, np.ndarray]:
    """Sorted indices {'train', 'val' (into the archive's train), 'test'}: stratified, seeded.

    `data` is params['data']: val_size held out first, then train_size / test_size
    subsets (None = all). Sizes the archive cannot supply raise StageError naming the key.
    """
    from sklearn.model_selection import train_test_split

    from study.data import stratified_subset
    n_train, n_test, k = len(y_train), len(y_test), len(CLASSES)
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
                             f"'{CLASSES[missing[0]]}'; every split needs every class (raise data.{key})")
    return idx


# ---------------------------------------------------------------- getting the archive

class _Transient(Exception):
    """A download failure worth retrying; its text is the start of the final message."""


def is_remote(url: str) -> bool:
    """True for http(s) URLs (downloaded), False for file:// URLs and plain paths."""
    return urlparse(url).scheme.lower() in ("http", "https")


def local_path(url: str) -> Path:
    """The file a file:// URL or plain path names."""
    if url.lower().startswith("file://"):
        return Path(url2pathname(urlparse(url).path))
    return Path(url).expanduser()


def _progress(total, url):
    """A tqdm bar on stderr (shown only on a terminal, so logs and tests get no bar)."""
    from tqdm import tqdm
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, disable=None,
                desc=Path(urlparse(url).path).name or "download", file=sys.stderr, leave=False)


def _stream(read, dest: Path, url: str, total: int | None) -> str:
    """Copy read(CHUNK) chunks into `dest` and return the md5 of exactly those bytes."""
    h, got = hashlib.md5(), 0
    with open(dest, "wb") as out, _progress(total, url) as bar:
        while chunk := read(CHUNK):
            got += len(chunk)
            if got > MAX_ARCHIVE_BYTES:
                raise StageError(f"data.url: {url} is larger than {MAX_ARCHIVE_BYTES >> 20} MB; "
                                 "the CIFAR-10 python archive is 163 MB")
            h.update(chunk)
            out.write(chunk)
            bar.update(len(chunk))
    if total is not None and got != total:  # http.client does not raise on a short body
        raise _Transient(f"data.url: download from {url} ended after {got} of {total} bytes")
    return h.hexdigest()


def _download_once(url: str, dest: Path, timeout: float) -> str:
    """One attempt: stream `url` to `dest`, return its md5; transient problems raise _Transient."""
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            total = int(resp.headers["Content-Length"]) if resp.headers.get("Content-Length") else None
            return _stream(resp.read1, dest, url, total)  # read1: what has arrived, so a stall is visible
    except urllib.error.HTTPError as e:  # subclass of URLError: test it first
        if e.code >= 500 or e.code in (408, 429):
            raise _Transient(f"data.url: HTTP {e.code} from {url}") from None
        raise StageError(f"data.url: HTTP {e.code} from {url}") from None
    except (TimeoutError, socket.timeout):
        raise _Transient(f"data.url: no response from {url} within {timeout:g} s") from None
    except urllib.error.URLError as e:
        if isinstance(e.reason, (TimeoutError, socket.timeout)):
            raise _Transient(f"data.url: no response from {url} within {timeout:g} s") from None
        if isinstance(e.reason, socket.gaierror):  # a typo in the host name: retrying won't help
            raise StageError(f"data.url: cannot resolve the host of {url} ({e.reason})") from None
        raise _Transient(f"data.url: cannot connect to {url} ({e.reason})") from None
    except (ConnectionError, OSError) as e:  # reset mid-body, http.client errors
        raise _Transient(f"data.url: download from {url} failed ({type(e).__name__}: {e})") from None


def download(url: str, dest: Path, timeout: float, attempts: int) -> str:
    """Stream `url` to `dest`, trying up to `attempts` times on transient errors; return its md5."""
    for attempt in range(1, attempts + 1):
        try:
            return _download_once(url, dest, timeout)
        except _Transient as e:
            if attempt == attempts:
                raise StageError(f"{e} ({attempts} attempt{'s' if attempts > 1 else ''})") from None
            print(f"warning: {e}; retrying ({attempt}/{attempts})", file=sys.stderr)
            time.sleep(BACKOFF_S * attempt)


def copy_local(path: Path, dest: Path, url: str) -> str:
    """Copy a local archive to `dest`; return the md5 of the bytes copied (the ones parsed later)."""
    if not path.is_file():
        raise StageError(f"data.url: {path} {'is not a file' if path.exists() else 'not found'}")
    try:
        with open(path, "rb") as f:
            return _stream(f.read, dest, url, None)
    except OSError as e:
        raise StageError(f"data.url: copying {path} failed ({e.strerror or e})") from None


def fetch_archive(url: str, md5: str, tmpdir: Path, timeout: float, attempts: int) -> Path:
    """A private copy of the archive in `tmpdir` (downloaded, or copied from a local path),
    its md5 computed over the very bytes copied and checked: what is parsed is what was verified,
    even if the source changes meanwhile."""
    source = Path(urlparse(url).path).name if is_remote(url) else local_path(url).name
    dest = Path(tmpdir) / (source or "archive.tar.gz")
    got = download(url, dest, timeout, attempts) if is_remote(url) else copy_local(local_path(url), dest, url)
    if got.lower() != md5.lower():
        raise StageError(f"data.md5: archive at {url} has md5 {got}, expected {md5.lower()}")
    return dest
