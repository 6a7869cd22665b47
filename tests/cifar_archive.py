"""Tiny CIFAR-10 archives in the official python format, bad variants, and a loopback server.

Official layout: cifar-10-python.tar.gz holding cifar-10-batches-py/{data_batch_1..5,
test_batch, batches.meta}, each a pickled dict with bytes keys; `data` is uint8 rows of
3072 = R plane, G plane, B plane; `labels` a list of ints; batches.meta has label_names.
`numpy_names="old"` rewrites the pickles to say numpy.core.* as the official (numpy 1.x)
archive does; "new" keeps numpy._core.* as current numpy writes.
"""
from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import os
import pickle
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


def pickle_official(obj, numpy_names: str = "new") -> bytes:
    """Protocol-2 pickle (as the official archive); "old" rewrites numpy._core -> numpy.core names."""
    data = pickle.dumps(obj, protocol=2)
    if numpy_names == "old":
        # protocol 2 writes globals as text lines ("c<module>\n<name>\n"), so a rename is safe
        data = data.replace(b"cnumpy._core.", b"cnumpy.core.")
    return data


def official_members(n_train: int = 30, n_test: int = 10, seed: int = 0, numpy_names: str = "new"):
    """({member: pickle bytes}, source arrays {'x_train', 'y_train', 'x_test', 'y_test'})."""
    x_tr, y_tr = tiny_images(n_train, seed)
    x_te, y_te = tiny_images(n_test, seed + 1)
    members = {}
    for i, part in enumerate(np.array_split(np.arange(len(y_tr)), N_BATCHES)):
        members[f"data_batch_{i + 1}"] = pickle_official(
            batch_dict(f"training batch {i + 1} of 5", x_tr[part], y_tr[part]), numpy_names)
    members["test_batch"] = pickle_official(batch_dict("testing batch 1 of 1", x_te, y_te), numpy_names)
    members["batches.meta"] = pickle_official(meta_dict(), numpy_names)
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
