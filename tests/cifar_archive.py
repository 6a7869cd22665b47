"""Tiny CIFAR-10 archives in the official python format, bad variants, and a loopback server.

Official layout: cifar-10-python.tar.gz holding cifar-10-batches-py/{data_batch_1..5,
test_batch, batches.meta}, each a pickled dict with bytes keys; `data` is uint8 rows of
3072 = R plane, G plane, B plane; `labels` a list of ints; batches.meta has label_names.

Pickle forms (`form=`):
- "py2" (default): as the official release was written, by Python 2: protocol 2 with byte
  strings as BINSTRING opcodes, no `_codecs.encode`, numpy.core names. What users download.
- "py3": Python 3's protocol 2 with numpy 2 (bytes as `_codecs.encode(str, 'latin1')`,
  numpy._core names), as a user re-pickling the data today would write it.
- "py3-numpy1": the same with numpy 1.x's numpy.core names.
"""
from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import os
import pickle
import struct
import tarfile
import threading
from pathlib import Path

import numpy as np

from tests.synthetic import CLASSES

PREFIX = "cifar-10-batches-py/"
N_BATCHES = 5
GOOD_NAME = "cifar-10-python.tar.gz"


def tiny_images(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(x uint8 (10n, 32, 32, 3) random pixels, y uint8) in shuffled order; every image unique."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.repeat(np.arange(10, dtype=np.uint8), n_per_class))
    x = rng.integers(0, 256, size=(len(y), 32, 32, 3), dtype=np.uint8)
    return x, y


def images_to_rows(x: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 3) -> (N, 3072) rows: R plane, G plane, B plane (the official layout)."""
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2).reshape(len(x), 3072))


def batch_dict(label: str, x: np.ndarray, y: np.ndarray) -> dict:
    """One batch as the official archive pickles it (bytes keys, labels a list of ints)."""
    return {b"batch_label": label.encode(), b"labels": [int(v) for v in y],
            b"data": images_to_rows(x), b"filenames": [f"img_{i:05d}.png".encode() for i in range(len(y))]}


def meta_dict(names=CLASSES) -> dict:
    """batches.meta as in the official archive."""
    return {b"num_cases_per_batch": 10000, b"num_vis": 3072, b"label_names": [n.encode() for n in names]}


class Py2Pickler(pickle._Pickler):
    """Protocol 2 as Python 2 wrote it: str and bytes as BINSTRING, numpy.core module names."""

    def save_bytes(self, obj):
        n = len(obj)
        self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj if n < 256 else
                   pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    def save_str(self, obj):
        self.save_bytes(obj.encode("latin1"))

    def save_global(self, obj, name=None):
        name = name or obj.__qualname__
        module = pickle.whichmodule(obj, name)
        if module.startswith("numpy._core"):
            module = "numpy.core" + module[len("numpy._core"):]
        self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode())
        self.memoize(obj)

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[bytes] = save_bytes
    dispatch[str] = save_str


FORMS = ("py2", "py3", "py3-numpy1")


def pickle_official(obj, form: str = "py2") -> bytes:
    """obj pickled in one of FORMS (see the module docstring)."""
    if form == "py2":
        f = io.BytesIO()
        Py2Pickler(f, protocol=2).dump(obj)
        return f.getvalue()
    data = pickle.dumps(obj, protocol=2)
    if form == "py3-numpy1":
        # protocol 2 writes globals as text lines ("c<module>\n<name>\n"), so a rename is safe
        data = data.replace(b"cnumpy._core.", b"cnumpy.core.")
    elif form != "py3":
        raise ValueError(form)
    return data


def official_members(n_train: int = 30, n_test: int = 10, seed: int = 0, form: str = "py2"):
    """({member: pickle bytes}, source arrays {'x_train', 'y_train', 'x_test', 'y_test'})."""
    x_tr, y_tr = tiny_images(n_train, seed)
    x_te, y_te = tiny_images(n_test, seed + 1)
    members = {}
    for i, part in enumerate(np.array_split(np.arange(len(y_tr)), N_BATCHES)):
        members[f"data_batch_{i + 1}"] = pickle_official(
            batch_dict(f"training batch {i + 1} of 5", x_tr[part], y_tr[part]), form)
    members["test_batch"] = pickle_official(batch_dict("testing batch 1 of 1", x_te, y_te), form)
    members["batches.meta"] = pickle_official(meta_dict(), form)
    return members, {"x_train": x_tr, "y_train": y_tr, "x_test": x_te, "y_test": y_te}


def write_tar_gz(path: Path, members: dict[str, bytes]) -> str:
    """Write members under cifar-10-batches-py/ into a deterministic tar.gz; return its md5."""
    path = Path(path)
    with open(path, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(PREFIX + name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return md5_file(path)


def build_archive(path: Path, *, replace: dict | None = None, drop=(), **kw):
    """Write a tiny official archive (kw as official_members), with members replaced or dropped.

    Returns (md5, source arrays)."""
    members, source = official_members(**kw)
    members.update(replace or {})
    for name in drop:
        members.pop(name)
    return write_tar_gz(path, members), source


def md5_file(path: Path) -> str:
    """Hex md5 of a file."""
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


# ---------------------------------------------------------------- bad variants

class _Payload:
    """Pickles as `func(*args)`: what a hostile archive does to run code on load."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def malicious_pickle(target: Path, kind: str = "numpy_runstring") -> bytes:
    """A batch-shaped pickle whose loading with plain pickle creates the file `target`.

    kind: "numpy_runstring" (numpy.testing exec helper), "exec" (builtins.exec),
    "system" (os.system). The payload sits inside an otherwise valid batch dict."""
    code = f"open({str(target)!r}, 'w').close()"
    if kind == "numpy_runstring":
        from numpy.testing._private.utils import runstring
        payload = _Payload(runstring, (code, {}))
    elif kind == "exec":
        payload = _Payload(exec, (code,))
    elif kind == "system":
        payload = _Payload(os.system, (f"touch '{target}'",))
    else:
        raise ValueError(kind)
    x, y = tiny_images(1, 99)
    d = batch_dict("training batch 1 of 5", x, y)
    d[b"batch_label"] = payload
    return pickle.dumps(d, protocol=2)


def raw_pickle(*ops: bytes) -> bytes:
    """A hand-written protocol-2 pickle: PROTO 2, the given opcode bytes, STOP."""
    return b"\x80\x02" + b"".join(ops) + b"."


def py2_array(shape: tuple, raw: bytes, dtype: bytes = b"u1") -> bytes:
    """Opcodes (no PROTO/STOP) that rebuild an ndarray as the official pickles do: _reconstruct,
    then BUILD with (1, shape, dtype, False, raw) -- with any shape and bytes, to lie with."""
    def string(b):
        return (pickle.SHORT_BINSTRING + bytes([len(b)]) + b if len(b) < 256
                else pickle.BINSTRING + struct.pack("<i", len(b)) + b)
    ints = b"".join(pickle.BININT + struct.pack("<i", d) for d in shape)
    return (b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + pickle.BININT1 + b"\x00"
            + pickle.TUPLE1 + string(b"b") + pickle.TUPLE3 + pickle.REDUCE
            + pickle.MARK + pickle.BININT1 + b"\x01" + pickle.MARK + ints + pickle.TUPLE
            + b"cnumpy\ndtype\n" + string(dtype) + pickle.NEWFALSE + pickle.NEWTRUE + pickle.TUPLE3
            + pickle.REDUCE + pickle.MARK + pickle.BININT1 + b"\x03" + string(b"|") + pickle.NONE * 3
            + (pickle.BININT + struct.pack("<i", -1)) * 2 + pickle.BININT1 + b"\x00" + pickle.TUPLE
            + pickle.BUILD + pickle.NEWFALSE + string(raw) + pickle.TUPLE + pickle.BUILD)


def batch_pickle(data_ops: bytes, labels_ops: bytes) -> bytes:
    """A batch dict {b'data': <data_ops>, b'labels': <labels_ops>} from raw opcodes."""
    return raw_pickle(pickle.EMPTY_DICT + pickle.MARK + pickle.SHORT_BINSTRING + b"\x04data" + data_ops
                      + pickle.SHORT_BINSTRING + b"\x06labels" + labels_ops + pickle.SETITEMS)


def int_list(values) -> bytes:
    """Opcodes of a list of small ints."""
    return pickle.EMPTY_LIST + pickle.MARK + b"".join(pickle.BININT1 + bytes([v]) for v in values) + pickle.APPENDS


def bad_shape_batch(n: int = 20, row: int = 3000) -> bytes:
    """A batch whose data rows are `row` bytes wide instead of 3072."""
    return pickle_official({b"data": np.zeros((n, row), np.uint8), b"labels": [i % 10 for i in range(n)]})


def bad_dtype_batch(n: int = 20) -> bytes:
    """A batch whose data is float32 (a converted, not an official, archive)."""
    return pickle_official({b"data": np.zeros((n, 3072), np.float32), b"labels": [i % 10 for i in range(n)]})


def bad_label_batch(n: int = 20, bad: int = 10) -> bytes:
    """A batch whose last label is `bad` (outside 0..9)."""
    return pickle_official({b"data": np.zeros((n, 3072), np.uint8),
                            b"labels": [i % 10 for i in range(n - 1)] + [bad]})


# ---------------------------------------------------------------- loopback server

class _Handler(http.server.BaseHTTPRequestHandler):
    """Routes: /<GOOD_NAME>, /files/<name>, /status/<code>/<tag>, /flaky/<tag> (503 once, then
    the archive), /truncated/<tag> (announces the archive, sends half), /hang/<tag> (never
    answers), /stall/<tag> (sends a third of the archive, then goes silent)."""

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        srv: CifarServer = self.server.owner
        hit = srv.count(self.path)
        parts = self.path.strip("/").split("/")
        good = srv.archive_bytes
        if parts == [GOOD_NAME] or (parts[0] == "flaky" and hit > 1):
            self._send(200, good)
        elif parts[0] == "files" and parts[-1] in srv.files:
            self._send(200, srv.files[parts[-1]])
        elif parts[0] == "status":
            self._send(int(parts[1]), b"error page")
        elif parts[0] == "flaky":
            self._send(503, b"busy")
        elif parts[0] == "truncated":
            self._send(200, good[: len(good) // 2], length=len(good))
        elif parts[0] == "hang":
            srv.stop_event.wait(120)
        elif parts[0] == "stall":
            self._send(200, good[: len(good) // 3], length=len(good))
            srv.stop_event.wait(120)
        else:
            self._send(404, b"not found")

    def _send(self, code: int, body: bytes, length: int | None = None):
        self.send_response(code)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = True


class CifarServer:
    """A loopback HTTP server (own thread) serving a tiny good archive and error endpoints.

    Attributes: url (base), archive_url, md5, archive_bytes, source (the arrays in the
    archive: x_train/y_train 30 per class, x_test/y_test 10 per class); url_for(path),
    hits(path), publish(name, data) -> URL. Use as a context manager; exit stops it cleanly."""

    def __init__(self, root: Path, n_train: int = 30, n_test: int = 10):
        root = Path(root)
        self.archive_path = root / GOOD_NAME
        self.md5, self.source = build_archive(self.archive_path, n_train=n_train, n_test=n_test)
        self.archive_bytes = self.archive_path.read_bytes()
        self.files: dict[str, bytes] = {}
        self.stop_event = threading.Event()
        self._hits: dict[str, int] = {}
        self._lock = threading.Lock()
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.owner = self
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self.archive_url = f"{self.url}/{GOOD_NAME}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()  # release /hang and /stall handlers
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)

    def url_for(self, path: str) -> str:
        """Absolute URL of a server path like '/status/404/x'."""
        return self.url + path

    def count(self, path: str) -> int:
        """Record a request for `path`; return how many it has had, this one included."""
        with self._lock:
            self._hits[path] = self._hits.get(path, 0) + 1
            return self._hits[path]

    def hits(self, path: str) -> int:
        """How many requests `path` has had."""
        with self._lock:
            return self._hits.get(path, 0)

    def publish(self, name: str, data: bytes) -> str:
        """Serve `data` at /files/<name>; return its URL."""
        self.files[name] = data
        return self.url_for(f"/files/{name}")


class _Zeros(io.RawIOBase):
    """A file of n zero bytes that is never held in memory (for tar members of any size)."""

    def __init__(self, n: int):
        self.left = n

    def readable(self):
        return True

    def readinto(self, b):
        k = min(len(b), self.left)
        b[:k] = bytes(k)
        self.left -= k
        return k


def write_bomb(path: Path, members: dict[str, bytes], zero_members: dict[str, int], extra_entries: int = 0) -> str:
    """A tar.gz of `members`, plus members of n zero bytes (compressing ~1000:1) and `extra_entries`
    empty files, written streaming at gzip level 1; returns its md5."""
    path = Path(path)
    with open(path, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0, compresslevel=1) as gz, \
            tarfile.open(fileobj=gz, mode="w") as tar:
        for name, n in zero_members.items():
            info = tarfile.TarInfo(name if "/" in name else PREFIX + name)
            info.size, info.mode = n, 0o644
            tar.addfile(info, io.BufferedReader(_Zeros(n), buffer_size=1 << 20))
        for i in range(extra_entries):
            tar.addfile(tarfile.TarInfo(f"extra/{i}"), io.BytesIO(b""))
        for name, data in members.items():
            info = tarfile.TarInfo(PREFIX + name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return md5_file(path)


def full_size_members(form: str = "py2", seed: int = 0) -> dict[str, bytes]:
    """Members of an archive as large as the official one: 5 x 10,000 + 10,000 random images."""
    members, _ = official_members(n_train=5_000, n_test=1_000, seed=seed, form=form)
    return members
