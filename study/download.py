"""Getting the archive: a private copy in a temp dir, its md5 computed over the bytes copied.

http(s) URLs stream to the copy with a progress bar, a per-read timeout and bounded retries on
transient errors only (5xx, 408, 429, connection errors, timeouts, short bodies; never on other
4xx or a wrong md5); file:// URLs and plain paths are copied. Either way what is later parsed is
exactly what was verified, even if the source changes meanwhile. Every user-fixable problem is a
one-line StageError naming data.url or data.md5; a problem of this machine's disk (reading the kept
copy, writing the private copy: ENOSPC, EFBIG, EACCES, EIO) is one naming the local file instead,
neither blamed on data.url nor attempted again, and it never deletes a good kept copy.
"""
from __future__ import annotations

import contextlib
import hashlib
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from study.errors import StageError

CHUNK = 1 << 20                         # bytes per read when downloading / copying
MAX_ARCHIVE_BYTES = 512 << 20           # the official archive is 163 MB
BACKOFF_S = 1.0                         # wait before retry k is k * BACKOFF_S seconds
USER_AGENT = "cifar10-dvc-study/1.0 (python urllib)"


class _Transient(Exception):
    """A download failure worth retrying; its text is the start of the final message."""


def local_error(doing: str, path: Path, e: OSError, hint: str = "") -> StageError:
    """A one-line StageError for a problem of this machine's disk: names the file and the OS error,
    not data.url (the source is fine, so no download is attempted again)."""
    return StageError(f"local disk: {doing} {path} failed ({e.strerror or e}){hint}")


class _Sink:
    """`path` opened for writing; an OSError from opening, writing or closing it (disk full, file
    too large, no permission, I/O error) is a local_error: the writes are told apart from the
    reads, whose OSErrors are the source's (a reset connection, an unreadable data.url file)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.file = self._local(open, self.path, "wb")

    def _local(self, op, *args):
        try:
            return op(*args)
        except OSError as e:
            raise local_error("writing", self.path, e) from None

    def write(self, chunk: bytes) -> None:
        self._local(self.file.write, chunk)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._local(self.file.close)  # close flushes the buffer: a full disk can show only here


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
    """Copy read(CHUNK) chunks into `dest` and return the md5 of exactly those bytes. An OSError
    from `read` propagates (the caller knows the source); one from writing is a local_error."""
    h, got = hashlib.md5(), 0
    with _Sink(dest) as out, _progress(total, url) as bar:
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
    """Copy a local archive to `dest`; return the md5 of the bytes copied (the ones parsed later).
    A file that cannot be read is data.url's problem; one that cannot be written, the disk's."""
    if not path.is_file():
        raise StageError(f"data.url: {path} {'is not a file' if path.exists() else 'not found'}")
    try:
        with open(path, "rb") as f:
            return _stream(f.read, dest, url, None)
    except OSError as e:
        raise StageError(f"data.url: reading {path} failed ({e.strerror or e})") from None


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


KEPT_NAME = "cifar-10-python-{md5}.tar.gz"
KEPT_TEMP_GLOB = ".cifar-10-python-*.tmp.gz"   # study.files.atomic_path's temp names for KEPT_NAME


def kept_archive(md5: str) -> Path:
    """Where a downloaded archive is kept for the next run on this machine: Keras's datasets
    folder ($KERAS_HOME/datasets, default ~/.keras/datasets, where keras.datasets keeps its own
    CIFAR-10 copy), named by its md5."""
    import os
    home = Path(os.environ["KERAS_HOME"]) if os.environ.get("KERAS_HOME") else Path.home() / ".keras"
    return home / "datasets" / KEPT_NAME.format(md5=md5.lower())


def remove_stale_temps(folder: Path) -> list[Path]:
    """Remove the temp files of kept archives in `folder` that no live process writes; return them.

    keep_copy holds an flock on its temp file until it is renamed, and the kernel drops a lock when
    its holder dies (kill -9 included), so a temp file whose lock can be taken was left by a killed
    run and is removed at once, while one being written, however slowly, is left alone (an age
    limit would do neither). A file caught between its creation and its writer's lock may go too:
    that writer then only fails to keep its copy (a warning); a partial copy is never kept."""
    import fcntl
    removed = []
    for tmp in sorted(Path(folder).glob(KEPT_TEMP_GLOB)):
        if tmp.is_symlink() or not tmp.is_file():  # a fifo would block open(); none of these is ours
            continue
        try:
            with open(tmp, "rb") as f:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                tmp.unlink()
            removed.append(tmp)
        except OSError:  # locked by a live writer, gone already, or not ours to remove
            continue
    return removed


def keep_copy(archive: Path, kept: Path) -> None:
    """Copy a verified archive to `kept`, atomically, its temp file locked while it is written (see
    remove_stale_temps). A folder that cannot be written only means no copy is kept: a one-line
    warning naming it, and the stage goes on."""
    import fcntl
    import shutil

    from study.files import atomic_path
    lock = None
    try:
        with atomic_path(kept) as tmp:
            lock = open(tmp, "rb")
            with contextlib.suppress(OSError):  # no locks on this file system: nothing is ever removed
                fcntl.flock(lock, fcntl.LOCK_EX)
            shutil.copyfile(archive, tmp)
    except OSError as e:
        print(f"warning: local disk: could not keep a copy of the archive at {kept} ({e.strerror or e}); "
              f"the next run downloads it again", file=sys.stderr)
    finally:
        if lock is not None:
            lock.close()  # after the rename, so a complete temp file is never seen unlocked


def _use_kept(kept: Path, md5: str, tmpdir: Path) -> Path | None:
    """A verified private copy of the kept archive in `tmpdir`, or None if there is none or it is
    damaged (another md5, or too large to be the archive): that one is deleted, to be downloaded
    again. A disk error reading or copying it is a local_error and leaves the kept copy alone."""
    if not kept.is_file():
        return None
    dest = Path(tmpdir) / kept.name
    if kept.stat().st_size <= MAX_ARCHIVE_BYTES:
        try:
            with open(kept, "rb") as f:
                got = _stream(f.read, dest, str(kept), None)
        except OSError as e:
            raise local_error("reading the kept copy", kept, e, "; it is left as is (delete it to "
                              "download the archive again)") from None
        if got == md5.lower():
            print(f"data.url: using the copy downloaded before, {kept} (md5 verified)", flush=True)
            return dest
        dest.unlink()
    try:
        kept.unlink(missing_ok=True)
    except OSError as e:  # the download still goes ahead; keep_copy then warns as well
        print(f"warning: local disk: could not delete the damaged copy {kept} ({e.strerror or e})",
              file=sys.stderr)
    return None


def fetch_archive_once(url: str, md5: str, tmpdir: Path, timeout: float, attempts: int) -> Path:
    """fetch_archive, downloading an https/http archive once per machine: a verified download is
    kept at kept_archive(md5), and later runs (other seeds, queued experiments in their own temp
    workspaces) copy and verify that instead. A kept copy with another md5 is deleted and the
    archive downloaded again; temp files a killed run left beside the kept copies are removed."""
    if not is_remote(url):
        return fetch_archive(url, md5, tmpdir, timeout, attempts)
    kept = kept_archive(md5)
    remove_stale_temps(kept.parent)
    archive = _use_kept(kept, md5, tmpdir)
    if archive is None:
        archive = fetch_archive(url, md5, tmpdir, timeout, attempts)
        keep_copy(archive, kept)
    return archive
