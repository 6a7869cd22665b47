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
import builtins
import hashlib
import io
import pickle
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
MAX_MEMBER_BYTES = 256 << 20            # an official batch is ~31 MB; refuse absurd members
BACKOFF_S = 1.0                         # wait before retry k is k * BACKOFF_S seconds
USER_AGENT = "cifar10-dvc-study/1.0 (python urllib)"


# ---------------------------------------------------------------- restricted unpickling

class RefusedGlobal(pickle.UnpicklingError):
    """The pickle asked for a global outside the allow-list (it would run code)."""


def _latin1_encode(text, encoding="utf-8", errors="strict"):
    """`_codecs.encode` as protocol-2 pickles use it for bytes, limited to latin-1."""
    if not isinstance(text, str) or str(encoding).lower().replace("_", "-") not in ("latin1", "latin-1"):
        raise RefusedGlobal("_codecs.encode with anything but (str, 'latin1')")
    return text.encode("latin1", errors)


def _allowed_globals() -> dict:
    """(module, name) -> object: everything a CIFAR-10 batch pickle may reference."""
    from numpy._core import multiarray, numeric
    allowed = {("builtins", n): getattr(builtins, n) for n in ("dict", "list", "bytes", "str", "int")}
    allowed[("_codecs", "encode")] = _latin1_encode  # protocol 2 writes bytes as encode(str, 'latin1')
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    for core in ("numpy.core", "numpy._core"):  # official archive: numpy.core; numpy >= 2: numpy._core
        allowed[(f"{core}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{core}.multiarray", "ndarray")] = np.ndarray
        allowed[(f"{core}.numeric", "_frombuffer")] = numeric._frombuffer  # protocol 5 arrays
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler whose find_class resolves only `_allowed_globals()`; anything else is refused."""

    _allowed = None

    def find_class(self, module, name):
        # Python 2 names (protocol 2 writes __builtin__.bytes) -> Python 3 names, as pickle's
        # own find_class does; the allow-list below is checked on the mapped names.
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if RestrictedUnpickler._allowed is None:
            RestrictedUnpickler._allowed = _allowed_globals()
        obj = RestrictedUnpickler._allowed.get((module, name))
        if obj is None:
            raise RefusedGlobal(f"{module}.{name}")
        return obj


def load_pickle(data: bytes, member: str):
    """Unpickle one archive member with RestrictedUnpickler; StageError names what is wrong."""
    try:
        # encoding="bytes": the official batches were pickled by Python 2 (str -> bytes keys)
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except RefusedGlobal as e:
        raise StageError(f"archive: {PREFIX}{member} pickle wants {e} which is not allowed "
                         "(refusing to run code from the archive)") from None
    except Exception as e:  # corrupt pickles raise anything from EOFError to TypeError
        raise StageError(f"archive: {PREFIX}{member} is not a readable pickle "
                         f"({type(e).__name__}: {e})") from None


# ---------------------------------------------------------------- parsing and validation

def _str_keys(obj, member: str) -> dict:
    """A batch dict with bytes keys decoded to str (archives pickled by Python 3 may use str)."""
    if not isinstance(obj, dict):
        raise StageError(f"archive: {PREFIX}{member} holds a {type(obj).__name__}, expected a dict")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def rows_to_images(rows: np.ndarray) -> np.ndarray:
    """(N, 3072) rows of R, G, B planes -> (N, 32, 32, 3) uint8 images."""
    return np.ascontiguousarray(rows.reshape(-1, CHANNELS, SIDE, SIDE).transpose(0, 2, 3, 1))


def parse_batch(obj, member: str, n_classes: int = len(CLASSES)) -> tuple[np.ndarray, np.ndarray]:
    """Validate one data batch dict; return (x uint8 (N, 32, 32, 3), y uint8 (N,))."""
    d = _str_keys(obj, member)
    where = f"archive: {PREFIX}{member}"
    for key in ("data", "labels"):
        if key not in d:
            raise StageError(f"{where} has no '{key}' entry (keys: {', '.join(map(str, d))})")
    data = d["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != ROW:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise StageError(f"{where}: data is {got}, expected uint8 (N, {ROW})")
    labels = np.asarray(d["labels"]) if isinstance(d["labels"], (list, np.ndarray)) else None
    if labels is None or labels.ndim != 1 or (labels.size and labels.dtype.kind not in "iu"):
        raise StageError(f"{where}: labels must be a list of integers")
    if len(labels) != len(data):
        raise StageError(f"{where}: {len(labels)} labels for {len(data)} images")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise StageError(f"{where}: labels span {labels.min()}..{labels.max()}, allowed 0..{n_classes - 1}")
    return rows_to_images(data), labels.astype(np.uint8)


def parse_meta(obj) -> list[str]:
    """Validate batches.meta; return its label_names, which must be the CIFAR-10 classes in order."""
    d = _str_keys(obj, META)
    names = d.get("label_names")
    if not isinstance(names, list) or not all(isinstance(n, (bytes, str)) for n in names):
        raise StageError(f"archive: {PREFIX}{META} has no list of label_names")
    names = [n.decode("latin1") if isinstance(n, bytes) else n for n in names]
    if tuple(names) != CLASSES:
        raise StageError(f"archive: {PREFIX}{META} label_names are {names}, "
                         f"expected the CIFAR-10 classes {list(CLASSES)}")
    return names


def _read_members(path: Path) -> dict[str, bytes]:
    """One pass over the tar.gz: the raw bytes of each expected member (nothing hits the disk)."""
    found: dict[str, bytes] = {}
    with tarfile.open(path, "r:gz") as tar:
        for m in tar:
            name = m.name.removeprefix("./")
            if not name.startswith(PREFIX) or name[len(PREFIX):] not in MEMBERS:
                continue  # e.g. the official readme.html
            short = name[len(PREFIX):]
            if short in found:
                raise StageError(f"archive: {name} appears twice")
            if not m.isfile() or m.size > MAX_MEMBER_BYTES:
                raise StageError(f"archive: {name} is not a regular file under {MAX_MEMBER_BYTES >> 20} MB")
            found[short] = tar.extractfile(m).read()
    missing = [n for n in MEMBERS if n not in found]
    if missing:
        raise StageError(f"archive: {path.name} lacks {', '.join(PREFIX + n for n in missing)}; "
                         "expected the CIFAR-10 python archive")
    return found


def read_archive(path: Path) -> dict:
    """Parse a verified archive: {'classes': [...], 'train': (x, y), 'test': (x, y)}."""
    try:
        raw = _read_members(Path(path))
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise StageError(f"archive: {Path(path).name} is not a readable tar.gz "
                         f"({type(e).__name__}: {e})") from None
    classes = parse_meta(load_pickle(raw.pop(META), META))
    parts = [parse_batch(load_pickle(raw.pop(b), b), b) for b in TRAIN_BATCHES]
    train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    test = parse_batch(load_pickle(raw.pop(TEST_BATCH), TEST_BATCH), TEST_BATCH)
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
    n_train, n_test, k = len(y_train), len(y_test), int(y_train.max()) + 1
    val, tr, te = data["val_size"], data["train_size"], data["test_size"]
    if val > n_train - k:  # stratify needs >= 1 image per class on both sides
        raise StageError(f"data.val_size = {val} is too large: the archive has {n_train} training "
                         f"images; allowed: <= {n_train - k}")
    if tr is not None and tr > n_train - val:
        raise StageError(f"data.train_size = {tr} is too large: {n_train - val} training images "
                         f"remain after data.val_size = {val}")
    if te is not None and te > n_test:
        raise StageError(f"data.test_size = {te} is too large: the archive has {n_test} test images")
    rest, held = train_test_split(np.arange(n_train), test_size=val, stratify=y_train, random_state=seed)
    rest = np.sort(rest)
    if tr is not None:
        rest = rest[stratified_subset(y_train[rest], tr, seed)]
    test = np.arange(n_test) if te is None else stratified_subset(y_test, te, seed)
    return {"train": rest, "val": np.sort(held), "test": test}


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


def md5_of(path: Path) -> str:
    """Hex md5 of a file, read in chunks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _progress(total, url):
    """A tqdm bar on stderr (shown only on a terminal, so logs and tests get no bar)."""
    from tqdm import tqdm
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, disable=None,
                desc=Path(urlparse(url).path).name or "download", file=sys.stderr, leave=False)


def _download_once(url: str, dest: Path, timeout: float) -> None:
    """One attempt: stream `url` to `dest`; transient problems raise _Transient, others StageError."""
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp, open(dest, "wb") as out:
            total = int(resp.headers["Content-Length"]) if resp.headers.get("Content-Length") else None
            got = 0
            with _progress(total, url) as bar:
                while chunk := resp.read1(CHUNK):  # what has arrived, so a stall is visible
                    out.write(chunk)
                    got += len(chunk)
                    bar.update(len(chunk))
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
    if total is not None and got != total:  # http.client does not raise on a short body
        raise _Transient(f"data.url: download from {url} ended after {got} of {total} bytes")


def download(url: str, dest: Path, timeout: float, attempts: int) -> None:
    """Stream `url` to `dest`, trying up to `attempts` times on transient errors."""
    for attempt in range(1, attempts + 1):
        try:
            return _download_once(url, dest, timeout)
        except _Transient as e:
            if attempt == attempts:
                raise StageError(f"{e} ({attempts} attempt{'s' if attempts > 1 else ''})") from None
            print(f"warning: {e}; retrying ({attempt}/{attempts})", file=sys.stderr)
            time.sleep(BACKOFF_S * attempt)


def fetch_archive(url: str, md5: str, tmpdir: Path, timeout: float, attempts: int) -> Path:
    """The verified archive: downloaded into `tmpdir` (http/https) or the local file itself."""
    if is_remote(url):
        path = Path(tmpdir) / (Path(urlparse(url).path).name or "archive.tar.gz")
        download(url, path, timeout, attempts)
    else:
        path = local_path(url)
        if not path.is_file():
            raise StageError(f"data.url: {path} {'is not a file' if path.exists() else 'not found'}")
    got = md5_of(path)
    if got.lower() != md5.lower():
        raise StageError(f"data.md5: archive at {url} has md5 {got}, expected {md5.lower()}")
    return path
