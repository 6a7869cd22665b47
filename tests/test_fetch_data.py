"""fetch_data: good archives (http, file://, plain path, old and new numpy pickles) give the
expected arrays and stratified seeded splits; every failure (md5, truncation, 404, 500, a
server that never answers, malicious / malformed pickles, sizes the archive lacks) raises a
one-line StageError naming the cause and leaves no output and no temp file behind."""
from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from stages import fetch_data
from study import cifar, paths
from study.io import StageError
from study.params import load
from tests.cifar_archive import (CLASSES, bad_dtype_batch, bad_label_batch, bad_shape_batch,
                                 build_archive, malicious_pickle, meta_dict, official_members,
                                 pickle_official, write_tar_gz)
from tests.conftest import REPO, tiny_params

OUTPUT_FILES = [paths.TRAIN, paths.VAL, paths.TEST, paths.CLASSES, paths.FETCH_INFO]


@pytest.fixture
def fetchdir(tmp_path, monkeypatch):
    """chdir into an empty temp dir; downloads' temp dir is a watched subdir. Yields tmp_path."""
    monkeypatch.chdir(tmp_path)
    dl = tmp_path / "dl_tmp"
    dl.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(dl))
    monkeypatch.setattr(cifar, "BACKOFF_S", 0.05)  # keep retry tests fast
    return tmp_path


def run_fetch(root: Path, **data) -> dict:
    """Write tiny params.yaml with `data` overrides into root, then run the stage in-process."""
    p = tiny_params()
    p["data"].update(data)
    (root / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    return fetch_data.main(load(root / "params.yaml"))


def assert_clean(root: Path) -> None:
    """No stage output, no staging dir in data/, no download temp file."""
    assert [p for p in OUTPUT_FILES if (root / p).exists()] == []
    assert not (root / "data").exists() or list((root / "data").iterdir()) == []
    assert list((root / "dl_tmp").iterdir()) == []


def fail_fetch(root: Path, match: str, **data) -> str:
    """Run the stage expecting a StageError matching `match`; check it left nothing; return it."""
    with pytest.raises(StageError, match=match) as e:
        run_fetch(root, **data)
    msg = str(e.value)
    assert "\n" not in msg
    assert_clean(root)
    return msg


def load_outputs(root: Path) -> dict:
    """{split: (x, y)} plus 'classes' and 'info' from data/."""
    out = {}
    for s, p in (("train", paths.TRAIN), ("val", paths.VAL), ("test", paths.TEST)):
        with np.load(root / p) as f:
            out[s] = (f["x"], f["y"])
    out["classes"] = json.loads((root / paths.CLASSES).read_text())
    out["info"] = json.loads((root / paths.FETCH_INFO).read_text())
    return out


def source_rows(x: np.ndarray) -> dict[bytes, int]:
    """{image bytes: index}: find where each output image came from (images are unique)."""
    return {img.tobytes(): i for i, img in enumerate(x)}


# ---------------------------------------------------------------- good archives

def test_http_archive_gives_expected_arrays_and_stratified_splits(fetchdir, cifar_server):
    info = run_fetch(fetchdir, url=cifar_server.archive_url, md5=cifar_server.md5)
    out = load_outputs(fetchdir)
    src = cifar_server.source
    assert out["classes"] == CLASSES
    # tiny params: val 50 held out of 300, then 200 of the remaining 250, all 100 test images
    assert {s: out[s][0].shape for s in ("train", "val", "test")} == {
        "train": (200, 32, 32, 3), "val": (50, 32, 32, 3), "test": (100, 32, 32, 3)}
    for s in ("train", "val", "test"):
        assert out[s][0].dtype == np.uint8 and out[s][1].dtype == np.uint8
        assert np.bincount(out[s][1], minlength=10).tolist() == [{"train": 20, "val": 5, "test": 10}[s]] * 10
    # every image is the archive's own pixels with its own label; train and val are disjoint
    where = source_rows(src["x_train"])
    tr = [where[img.tobytes()] for img in out["train"][0]]
    va = [where[img.tobytes()] for img in out["val"][0]]
    assert set(tr).isdisjoint(va) and len(set(tr)) == 200 and len(set(va)) == 50
    np.testing.assert_array_equal(out["train"][1], src["y_train"][tr])
    np.testing.assert_array_equal(out["val"][1], src["y_train"][va])
    assert tr == sorted(tr)  # archive order kept
    np.testing.assert_array_equal(out["test"][0], src["x_test"])
    np.testing.assert_array_equal(out["test"][1], src["y_test"])
    assert info == out["info"]
    assert info["md5"] == cifar_server.md5 and info["url"] == cifar_server.archive_url
    assert info["archive_bytes"] == len(cifar_server.archive_bytes)
    assert info["sizes"] == {"train": 200, "val": 50, "test": 100}
    assert info["class_counts"]["val"] == dict.fromkeys(CLASSES, 5)
    assert sorted(p.name for p in (fetchdir / "data").iterdir()) == sorted(p.name for p in OUTPUT_FILES)
    assert list((fetchdir / "dl_tmp").iterdir()) == []  # the downloaded archive is gone


def test_rows_to_images_reads_r_g_b_planes_row_major():
    row = np.concatenate([np.full(1024, 10), np.full(1024, 20), np.full(1024, 30)]).astype(np.uint8)
    row[1] = 11      # R plane, pixel (0, 1)
    row[1024 + 32] = 21  # G plane, pixel (1, 0)
    img = cifar.rows_to_images(row[None])[0]
    assert img.shape == (32, 32, 3)
    assert img[0, 0].tolist() == [10, 20, 30]
    assert img[0, 1].tolist() == [11, 20, 30] and img[1, 0].tolist() == [10, 21, 30]


@pytest.mark.parametrize("numpy_names", ["old", "new"])
def test_reads_old_and_new_numpy_pickles(fetchdir, numpy_names):
    members, src = official_members(numpy_names=numpy_names)
    raw = members["data_batch_1"]
    # the rewrite is real: the official archive's names vs current numpy's
    assert (b"numpy.core.multiarray" in raw) == (numpy_names == "old")
    assert (b"numpy._core.multiarray" in raw) == (numpy_names == "new")
    md5 = write_tar_gz(fetchdir / "a.tar.gz", members)
    run_fetch(fetchdir, url=str(fetchdir / "a.tar.gz"), md5=md5, val_size=30, train_size=None)
    out = load_outputs(fetchdir)
    assert len(out["train"][1]) + len(out["val"][1]) == 300
    xs = np.concatenate([out["train"][0], out["val"][0]])
    assert sorted(source_rows(xs)) == sorted(source_rows(src["x_train"]))


def test_file_url_relative_and_absolute_paths(fetchdir, cifar_server):
    (fetchdir / "mirror").mkdir()
    local = fetchdir / "mirror" / "c.tar.gz"
    local.write_bytes(cifar_server.archive_bytes)
    md5 = cifar_server.md5
    digests = []
    for url in (local.as_uri(), str(local), "mirror/c.tar.gz"):
        info = run_fetch(fetchdir, url=url, md5=md5.upper())
        assert info["url"] == url and info["md5"] == md5 and info["sizes"]["train"] == 200
        digests.append(cifar.md5_of(fetchdir / paths.TRAIN))
    assert len(set(digests)) == 1  # same archive and seed -> byte-identical outputs
    assert local.read_bytes() == cifar_server.archive_bytes  # source left untouched


def test_split_is_seeded(fetchdir, cifar_server):
    def val_digest(seed):
        p = tiny_params()
        p["seed"] = seed
        p["data"].update(url=cifar_server.archive_url, md5=cifar_server.md5)
        (fetchdir / "params.yaml").write_text(yaml.safe_dump(p))
        fetch_data.main(load(fetchdir / "params.yaml"))
        return cifar.md5_of(fetchdir / paths.VAL), cifar.md5_of(fetchdir / paths.TRAIN)
    a, b, c = val_digest(0), val_digest(0), val_digest(1)
    assert a == b and a[0] != c[0] and a[1] != c[1]


def test_retry_recovers_from_one_transient_error(fetchdir, cifar_server):
    info = run_fetch(fetchdir, url=cifar_server.url_for("/flaky/recover"), md5=cifar_server.md5, retries=3)
    assert cifar_server.hits("/flaky/recover") == 2 and info["sizes"]["test"] == 100


# ---------------------------------------------------------------- failures leave nothing

def test_wrong_md5(fetchdir, cifar_server):
    msg = fail_fetch(fetchdir, "^data.md5: ", url=cifar_server.archive_url, md5="0" * 32)
    assert msg == (f"data.md5: archive at {cifar_server.archive_url} has md5 {cifar_server.md5}, "
                   f"expected {'0' * 32}")


def test_failure_removes_stale_outputs(fetchdir, cifar_server):
    run_fetch(fetchdir, url=cifar_server.archive_url, md5=cifar_server.md5)
    assert all((fetchdir / p).exists() for p in OUTPUT_FILES)
    fail_fetch(fetchdir, "data.md5", url=cifar_server.archive_url, md5="f" * 32)


def test_truncated_download_is_retried_then_fails(fetchdir, cifar_server):
    path = "/truncated/t1"
    n = len(cifar_server.archive_bytes)
    msg = fail_fetch(fetchdir, "^data.url: download from ", url=cifar_server.url_for(path),
                     md5=cifar_server.md5, retries=2)
    assert msg.endswith(f"ended after {n // 2} of {n} bytes (2 attempts)")
    assert cifar_server.hits(path) == 2


def test_truncated_archive_file(fetchdir, cifar_server):
    cut = fetchdir / "cut.tar.gz"
    cut.write_bytes(cifar_server.archive_bytes[: len(cifar_server.archive_bytes) // 2])
    fail_fetch(fetchdir, "^data.md5: archive at .* expected " + cifar_server.md5,
               url=str(cut), md5=cifar_server.md5)
    os.remove(cut)
    # with the md5 of the cut file itself it gets past the check and the reader names the problem
    cut.write_bytes(cifar_server.archive_bytes[: len(cifar_server.archive_bytes) // 2])
    fail_fetch(fetchdir, r"^archive: cut.tar.gz is not a readable tar.gz \(",
               url=str(cut), md5=cifar.md5_of(cut))


def test_http_404_is_not_retried(fetchdir, cifar_server):
    url = cifar_server.url_for("/status/404/t")
    msg = fail_fetch(fetchdir, "HTTP 404", url=url, md5=cifar_server.md5, retries=3)
    assert msg == f"data.url: HTTP 404 from {url}"
    assert cifar_server.hits("/status/404/t") == 1


def test_http_500_is_retried_boundedly(fetchdir, cifar_server):
    url = cifar_server.url_for("/status/500/t")
    msg = fail_fetch(fetchdir, "HTTP 500", url=url, md5=cifar_server.md5, retries=3)
    assert msg == f"data.url: HTTP 500 from {url} (3 attempts)"
    assert cifar_server.hits("/status/500/t") == 3


def test_server_that_never_answers_times_out(fetchdir, cifar_server):
    url = cifar_server.url_for("/hang/t")
    t0 = time.monotonic()
    msg = fail_fetch(fetchdir, "no response", url=url, md5=cifar_server.md5, timeout=1, retries=2)
    elapsed = time.monotonic() - t0
    assert msg == f"data.url: no response from {url} within 1 s (2 attempts)"
    assert cifar_server.hits("/hang/t") == 2
    assert 2 <= elapsed < 10  # two 1-s timeouts, then it gives up


def test_missing_local_file(fetchdir):
    fail_fetch(fetchdir, r"^data.url: .*nope.tar.gz not found$", url="nope.tar.gz", md5="0" * 32)
    fail_fetch(fetchdir, r"^data.url: .*nope.tar.gz not found$",
               url=(fetchdir / "nope.tar.gz").as_uri(), md5="0" * 32)


@pytest.mark.parametrize("kind,global_name", [
    ("numpy_runstring", "numpy.testing._private.utils.runstring"),
    ("exec", "builtins.exec"),
    ("system", f"{os.system.__module__}.system"),
])
def test_malicious_pickle_is_refused_and_runs_nothing(fetchdir, tmp_path_factory, kind, global_name):
    # the payload is real: plain pickle would create the file
    probe = tmp_path_factory.mktemp("probe") / "pwned"
    pickle.loads(malicious_pickle(probe, kind))
    assert probe.exists()
    target = fetchdir / "pwned"
    md5, _ = build_archive(fetchdir / "evil.tar.gz", replace={"data_batch_1": malicious_pickle(target, kind)})
    msg = fail_fetch(fetchdir, "refusing to run code", url=str(fetchdir / "evil.tar.gz"), md5=md5)
    assert msg == (f"archive: cifar-10-batches-py/data_batch_1 pickle wants {global_name} "
                   "which is not allowed (refusing to run code from the archive)")
    assert not target.exists()


@pytest.mark.parametrize("replace,drop,match", [
    ({"data_batch_2": bad_shape_batch()}, (),
     r"^archive: cifar-10-batches-py/data_batch_2: data is uint8 \(20, 3000\), expected uint8 \(N, 3072\)$"),
    ({"test_batch": bad_dtype_batch()}, (), r"^archive: cifar-10-batches-py/test_batch: data is float32"),
    ({"data_batch_3": bad_label_batch(bad=10)}, (), r"data_batch_3: labels span 0..10, allowed 0..9$"),
    ({"data_batch_3": bad_label_batch(bad=-1)}, (), r"data_batch_3: labels span -1..9, allowed 0..9$"),
    ({"batches.meta": pickle_official(meta_dict(CLASSES[::-1]))}, (), r"batches.meta label_names are \['truck'"),
    ({"data_batch_4": pickle_official([1, 2, 3])}, (), r"data_batch_4 holds a list, expected a dict$"),
    ({"data_batch_5": b"not a pickle"}, (), r"data_batch_5 is not a readable pickle"),
    ({}, ("data_batch_5", "test_batch"), r"lacks cifar-10-batches-py/data_batch_5, cifar-10-batches-py/test_batch;"),
])
def test_malformed_archive_is_named(fetchdir, replace, drop, match):
    md5, _ = build_archive(fetchdir / "bad.tar.gz", replace=replace, drop=drop)
    fail_fetch(fetchdir, match, url=str(fetchdir / "bad.tar.gz"), md5=md5)


def test_not_a_tarball(fetchdir):
    (fetchdir / "x.tar.gz").write_bytes(b"<html>a login page</html>")
    fail_fetch(fetchdir, r"^archive: x.tar.gz is not a readable tar.gz",
               url=str(fetchdir / "x.tar.gz"), md5=cifar.md5_of(fetchdir / "x.tar.gz"))


@pytest.mark.parametrize("data,match", [
    ({"val_size": 291}, r"^data.val_size = 291 is too large: the archive has 300 training images; allowed: <= 290$"),
    ({"val_size": 50, "train_size": 251}, r"^data.train_size = 251 is too large: 250 training images remain"),
    ({"test_size": 101}, r"^data.test_size = 101 is too large: the archive has 100 test images$"),
])
def test_sizes_the_archive_lacks_name_the_key(fetchdir, cifar_server, data, match):
    data = {"train_size": None, **data}
    fail_fetch(fetchdir, match, url=cifar_server.archive_url, md5=cifar_server.md5, **data)


# ---------------------------------------------------------------- restricted unpickler

def test_unpickler_allows_exactly_what_batches_need():
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    obj = {b"data": arr, b"labels": [1, 2], b"s": np.uint8(7), b"e": b"", b"b": b"xy"}
    for proto in (2, 4, 5):
        got = cifar.load_pickle(pickle.dumps(obj, protocol=proto), "m")
        np.testing.assert_array_equal(got[b"data"], arr)
        assert got[b"labels"] == [1, 2] and got[b"s"] == 7 and got[b"e"] == b"" and got[b"b"] == b"xy"
    with pytest.raises(StageError, match="wants collections.OrderedDict"):
        cifar.load_pickle(pickle.dumps(__import__("collections").OrderedDict(a=1), protocol=2), "m")
    # _codecs.encode is allowed only as protocol 2 uses it (latin1); other codecs are refused
    evil = b"c_codecs\nencode\n(Vabc\nVrot13\ntR."
    with pytest.raises(StageError, match="wants _codecs.encode with anything but"):
        cifar.load_pickle(evil, "m")


# ---------------------------------------------------------------- as a process

def _stage_env(tmpdir: Path | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    return env


def _write_params(root: Path, **data) -> None:
    p = tiny_params()
    p["data"].update(data)
    (root / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))


def test_stage_process_success_and_one_line_failure(tmp_path, cifar_server):
    _write_params(tmp_path, url=cifar_server.archive_url, md5=cifar_server.md5)
    cmd = [sys.executable, "-m", "stages.fetch_data"]
    ok = subprocess.run(cmd, cwd=tmp_path, env=_stage_env(), capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads((tmp_path / paths.FETCH_INFO).read_text())["sizes"] == {"train": 200, "val": 50, "test": 100}
    url = cifar_server.url_for("/status/404/proc")
    _write_params(tmp_path, url=url, md5=cifar_server.md5)
    bad = subprocess.run(cmd, cwd=tmp_path, env=_stage_env(), capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1
    assert bad.stderr == f"error: data.url: HTTP 404 from {url}\n"
    assert list((tmp_path / "data").iterdir()) == []


def test_interrupted_download_leaves_nothing(tmp_path, cifar_server):
    dl = tmp_path / "dl"
    dl.mkdir()
    _write_params(tmp_path, url=cifar_server.url_for("/stall/proc"), md5=cifar_server.md5, timeout=60)
    proc = subprocess.Popen([sys.executable, "-m", "stages.fetch_data"], cwd=tmp_path, env=_stage_env(dl),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        partial = []
        while not partial and time.monotonic() < deadline:  # wait until part of the archive is on disk
            partial = [f for f in dl.rglob("*") if f.is_file() and f.stat().st_size > 0]
            time.sleep(0.1)
        assert partial, "the download never started"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM
    assert list(dl.iterdir()) == []
    assert not (tmp_path / "data").exists() or list((tmp_path / "data").iterdir()) == []
