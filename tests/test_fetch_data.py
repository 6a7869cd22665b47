"""fetch_data: good archives (http, file://, plain path, old and new numpy pickles) give the
expected arrays and stratified seeded splits; every failure (md5, truncation, 404, 500, a
server that never answers, malicious / malformed pickles, sizes the archive lacks) raises a
one-line StageError naming the cause and leaves no output and no temp file behind."""
from __future__ import annotations

import errno
import io
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import pytest
import yaml

from stages import fetch_data
from study import cifar, download, paths, sources
from study.errors import StageError
from study.params import load
from tests.cifar_archive import (CLASSES, FORMS, bad_dtype_batch, bad_label_batch, bad_shape_batch, batch_dict,
                                 batch_pickle, build_archive, full_size_members, malicious_pickle, md5_file,
                                 meta_dict, official_members, pickle_official, py2_array, tiny_images, write_bomb,
                                 write_tar_gz)
from tests.conftest import REPO, assert_one_line_error, run_measured, stage_process, tiny_params, tree
from tests.test_safe_pickle import hostile_pickles

OUTPUT_FILES = [paths.TRAIN, paths.VAL, paths.TEST, paths.CLASSES, paths.FETCH_INFO]


@pytest.fixture
def fetchdir(tmp_path, monkeypatch):
    """chdir into an empty temp dir; downloads' temp dir is a watched subdir. Yields tmp_path."""
    monkeypatch.chdir(tmp_path)
    dl = tmp_path / "dl_tmp"
    dl.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(dl))
    monkeypatch.setattr(download, "BACKOFF_S", 0.05)  # keep retry tests fast
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


@pytest.mark.parametrize("form", FORMS)
def test_reads_every_form_of_the_pickles(fetchdir, form):
    members, src = official_members(form=form)
    raw = members["data_batch_1"]
    # the forms are real: Python 2 wrote byte strings as BINSTRING, Python 3 as _codecs.encode
    assert (b"_codecs" in raw) == (form != "py2")
    assert (b"numpy.core.multiarray" in raw) == (form != "py3")
    md5 = write_tar_gz(fetchdir / "a.tar.gz", members)
    run_fetch(fetchdir, url=str(fetchdir / "a.tar.gz"), md5=md5, val_size=30, train_size=None)
    out = load_outputs(fetchdir)
    assert len(out["train"][1]) + len(out["val"][1]) == 300
    xs = np.concatenate([out["train"][0], out["val"][0]])
    assert sorted(source_rows(xs)) == sorted(source_rows(src["x_train"]))


def test_python2_form_is_what_keras_strict_loader_reads(tmp_path):
    # Keras' own load_batch allows only numpy.ndarray, numpy.dtype and _reconstruct: the fixture's
    # default form passes it, as the official release does; Python 3's protocol 2 does not.
    from keras.src.datasets.cifar import load_batch
    members, src = official_members()
    (tmp_path / "b").write_bytes(members["data_batch_1"])
    x, y = load_batch(str(tmp_path / "b"))
    assert x.shape == (60, 3, 32, 32) and len(y) == 60
    (tmp_path / "c").write_bytes(official_members(form="py3")[0]["data_batch_1"])
    with pytest.raises(pickle.UnpicklingError, match="Refusing to deserialize `_codecs.encode`"):
        load_batch(str(tmp_path / "c"))


def test_file_url_relative_and_absolute_paths(fetchdir, cifar_server):
    (fetchdir / "mirror").mkdir()
    local = fetchdir / "mirror" / "c.tar.gz"
    local.write_bytes(cifar_server.archive_bytes)
    md5 = cifar_server.md5
    digests = []
    for url in (local.as_uri(), str(local), "mirror/c.tar.gz"):
        info = run_fetch(fetchdir, url=url, md5=md5.upper())
        assert info["url"] == url and info["md5"] == md5 and info["sizes"]["train"] == 200
        digests.append(md5_file(fetchdir / paths.TRAIN))
    assert len(set(digests)) == 1  # same archive and seed -> byte-identical outputs
    assert local.read_bytes() == cifar_server.archive_bytes  # source left untouched


def test_split_is_seeded(fetchdir, cifar_server):
    def val_digest(seed):
        p = tiny_params()
        p["seed"] = seed
        p["data"].update(url=cifar_server.archive_url, md5=cifar_server.md5)
        (fetchdir / "params.yaml").write_text(yaml.safe_dump(p))
        fetch_data.main(load(fetchdir / "params.yaml"))
        return md5_file(fetchdir / paths.VAL), md5_file(fetchdir / paths.TRAIN)
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
               url=str(cut), md5=md5_file(cut))


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
               url=str(fetchdir / "x.tar.gz"), md5=md5_file(fetchdir / "x.tar.gz"))


@pytest.mark.parametrize("data,match", [
    ({"val_size": 291}, r"^data.val_size = 291 is too large: the archive has 300 training images; allowed: <= 290$"),
    ({"val_size": 50, "train_size": 251}, r"^data.train_size = 251 is too large: 250 training images remain"),
    ({"test_size": 101}, r"^data.test_size = 101 is too large: the archive has 100 test images$"),
])
def test_sizes_the_archive_lacks_name_the_key(fetchdir, cifar_server, data, match):
    data = {"train_size": None, **data}
    fail_fetch(fetchdir, match, url=cifar_server.archive_url, md5=cifar_server.md5, **data)


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
    download.kept_archive(cifar_server.md5).unlink()   # else the kept copy serves this md5, url unused
    url = cifar_server.url_for("/status/404/proc")
    _write_params(tmp_path, url=url, md5=cifar_server.md5)
    bad = subprocess.run(cmd, cwd=tmp_path, env=_stage_env(), capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1
    assert bad.stderr == f"error: data.url: HTTP 404 from {url}\n"
    assert list((tmp_path / "data").iterdir()) == []


def _start_stalled_fetch(root: Path, cifar_server, sys_tmp: Path, tag: str) -> subprocess.Popen:
    """Start the stage on a download that stalls after a third; return once part of it is on disk."""
    _write_params(root, url=cifar_server.url_for(f"/stall/{tag}"), md5=cifar_server.md5, timeout=60)
    proc = subprocess.Popen([sys.executable, "-m", "stages.fetch_data"], cwd=root, env=_stage_env(sys_tmp),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the download goes to data/.tmp-fetch_data-*/, not the system temp
        if [f for f in (root / "data").glob(".tmp-fetch_data-*/*") if f.stat().st_size > 0]:
            return proc
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("the download never started")


@pytest.mark.parametrize("sig,code,line", [
    (signal.SIGTERM, 128 + signal.SIGTERM, "error: interrupted by SIGTERM before the stage finished; "
                                           "`dvc repro` runs it again\n"),
    (signal.SIGINT, 1, "error: interrupted by Ctrl-C (SIGINT) before the stage finished; "
                       "`dvc repro` runs it again\n"),
])
def test_interrupted_download_leaves_nothing(tmp_path, cifar_server, sig, code, line):
    sys_tmp = tmp_path / "systmp"
    sys_tmp.mkdir()
    proc = _start_stalled_fetch(tmp_path, cifar_server, sys_tmp, f"sig{sig}")
    try:
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == code
    assert err == line
    assert list(sys_tmp.iterdir()) == []
    assert list((tmp_path / "data").iterdir()) == []


def test_kill_9_leaves_its_temp_dir_under_data_and_the_next_run_removes_it(tmp_path, cifar_server):
    sys_tmp = tmp_path / "systmp"
    sys_tmp.mkdir()
    proc = _start_stalled_fetch(tmp_path, cifar_server, sys_tmp, "kill9")
    proc.kill()  # SIGKILL: no handler runs
    proc.wait(timeout=30)
    left = list((tmp_path / "data").glob(".tmp-fetch_data-*"))
    assert len(left) == 1 and list(sys_tmp.iterdir()) == []  # nothing in the system temp dir
    assert "data/.tmp-*" in (REPO / ".gitignore").read_text() and "data/.tmp-*" in (REPO / ".dvcignore").read_text()
    _write_params(tmp_path, url=cifar_server.archive_url, md5=cifar_server.md5)
    code, _, err, _ = _fetch_process(tmp_path, sys_tmp)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == sorted(p.name for p in OUTPUT_FILES)
    assert list(sys_tmp.iterdir()) == []


def test_local_archive_changed_after_the_check_does_not_change_the_result(fetchdir, monkeypatch):
    # the md5 is computed over the bytes that are parsed: a source replaced between the check and
    # the parse (by another process, a sync client, an attacker) cannot slip in other data
    good_md5, src = build_archive(fetchdir / "a.tar.gz", seed=0)
    other = fetchdir / "other.tar.gz"
    build_archive(other, seed=5)
    real_read = sources.read_archive

    def swap_then_read(path):
        os.replace(other, fetchdir / "a.tar.gz")  # the source changes after the md5 check
        return real_read(path)

    monkeypatch.setattr(sources, "read_archive", swap_then_read)
    run_fetch(fetchdir, url="a.tar.gz", md5=good_md5, val_size=30, train_size=None)
    out = load_outputs(fetchdir)
    np.testing.assert_array_equal(out["test"][0], src["x_test"])  # the verified archive's images
    assert md5_file(fetchdir / "a.tar.gz") != good_md5            # while the source did change
    assert list((fetchdir / "dl_tmp").iterdir()) == []


# ---------------------------------------------------------------- silently wrong data refused

def test_batch_duplicated_under_another_name_is_refused(fetchdir):
    members, _ = official_members()
    md5 = write_tar_gz(fetchdir / "dup.tar.gz", {**members, "data_batch_4": members["data_batch_2"]})
    _refused_in_one_line(fetchdir, "dup.tar.gz", md5,
                         "error: archive: cifar-10-batches-py/data_batch_4 repeats 60 image(s) of "
                         "cifar-10-batches-py/data_batch_2 (first: row 0 = row 0); every image must appear once")


def test_test_images_in_the_training_batches_are_refused(fetchdir):
    x_tr, y_tr = tiny_images(30, 0)
    x_te, y_te = tiny_images(10, 1)
    x_te[[3, 7]] = x_tr[[100, 250]]  # two test images copied from data_batch_2 and data_batch_5
    members = {f"data_batch_{i + 1}": pickle_official(batch_dict("b", x_tr[p], y_tr[p]))
               for i, p in enumerate(np.array_split(np.arange(300), 5))}
    members["test_batch"] = pickle_official(batch_dict("t", x_te, y_te))
    members["batches.meta"] = pickle_official(meta_dict())
    md5 = write_tar_gz(fetchdir / "leak.tar.gz", members)
    _refused_in_one_line(fetchdir, "leak.tar.gz", md5,
                         "error: archive: cifar-10-batches-py/test_batch repeats 1 image(s) of "
                         "cifar-10-batches-py/data_batch_2 (first: row 3 = row 40); every image must appear once; "
                         "1 more pair(s) of members overlap")


def _refused_in_one_line(root: Path, archive: str, md5: str, line: str) -> None:
    """The stage, as a process, refuses `archive` with exactly `line`, exit 1, leaving nothing."""
    _write_params(root, url=archive, md5=md5)
    r = stage_process(root, "fetch_data", sys_tmp=root / "dl_tmp")
    assert_one_line_error(r, re.escape(line))
    assert tree(root) == {} and list((root / "dl_tmp").iterdir()) == []


def _fetch_process(root: Path, tmpdir: Path, timeout: float = 300):
    """`python -m stages.fetch_data` in root with TMPDIR=tmpdir: (exit code, stdout, stderr, peak MB)."""
    return run_measured("stages.fetch_data", root, _stage_env(tmpdir), timeout=timeout)


def _hostile_archives() -> dict:
    """{name: (write(path) -> md5, pattern of the error line)}: archives of a few MB at most."""
    cases = {f"pickle_{name}": (lambda path, data=data: build_archive(path, replace={"data_batch_1": data})[0],
                                pattern) for name, (data, pattern) in hostile_pickles().items()}
    members = official_members()[0]
    cases["unpacks_to_600_MB"] = (lambda path: write_bomb(path, members, {"readme.html": 600 << 20}),
                                  r"unpacks to more than 512 MB")
    cases["thousands_of_entries"] = (lambda path: write_bomb(path, members, {}, extra_entries=5_000),
                                     r"has more than 64 entries")
    cases["member_of_70_MB"] = (lambda path: write_bomb(path, {k: v for k, v in members.items() if k != "data_batch_2"},
                                                        {"data_batch_2": 70 << 20}),
                                r"data_batch_2 is not a regular file under 64 MB")
    return cases


@pytest.mark.parametrize("name", sorted(_hostile_archives()))
def test_hostile_archive_fails_in_one_line_in_bounded_memory(tmp_path, name):
    write, pattern = _hostile_archives()[name]
    sys_tmp = tmp_path / "systmp"
    sys_tmp.mkdir()
    md5 = write(tmp_path / "evil.tar.gz")
    assert (tmp_path / "evil.tar.gz").stat().st_size < 8 << 20
    _write_params(tmp_path, url="evil.tar.gz", md5=md5)
    code, out, err, peak_mb = _fetch_process(tmp_path, sys_tmp)
    assert code == 1
    assert re.fullmatch(rf"error: archive: .*{pattern}.*\n", err), err
    assert peak_mb < 200, f"peak RSS {peak_mb:.0f} MB"  # each asks for >= 600 MB; these peak at ~60 MB
    assert list((tmp_path / "data").iterdir()) == [] and list(sys_tmp.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("form", ["py2", "py3"])
def test_full_size_archive_fetches_under_1_GB(tmp_path, form):
    # as large as the official archive (60,000 images; random pixels, so it does not compress):
    # the whole stage stays under ~1 GB of RSS
    md5 = write_tar_gz(tmp_path / "full.tar.gz", full_size_members(form))
    sys_tmp = tmp_path / "systmp"
    sys_tmp.mkdir()
    _write_params(tmp_path, url="full.tar.gz", md5=md5, val_size=5000, train_size=None, test_size=None)
    code, out, err, peak_mb = _fetch_process(tmp_path, sys_tmp)
    assert code == 0, err
    info = json.loads((tmp_path / paths.FETCH_INFO).read_text())
    assert info["sizes"] == {"train": 45_000, "val": 5_000, "test": 10_000}
    assert peak_mb < 1024, f"peak RSS {peak_mb:.0f} MB"
    assert list(sys_tmp.iterdir()) == [] and not list((tmp_path / "data").glob(".tmp-*"))


# ---------------------------------------------------------------- user errors: one line, nothing left

_ROWS2 = py2_array((2, 3072), np.arange(2 * 3072, dtype=np.uint8).tobytes())
_LABEL_CASES = {
    "nested": pickle.EMPTY_LIST + pickle.MARK + pickle.EMPTY_LIST + pickle.BININT1 + b"\x01" + pickle.APPEND
              + pickle.BININT1 + b"\x02" + pickle.APPENDS,                               # [[1], 2]
    "self_referencing": pickle.EMPTY_LIST + pickle.BINPUT + b"\x00" + pickle.MARK + pickle.BINGET + b"\x00"
                        + pickle.BININT1 + b"\x01" + pickle.APPENDS,                     # L = [L, 1]
    "deeply_nested": pickle.EMPTY_LIST * 50_000 + pickle.APPEND * 49_999,              # [[[[...]]]], 50,000 deep
}


@pytest.mark.parametrize("labels", sorted(_LABEL_CASES))
def test_label_lists_that_are_not_flat_are_one_line(tmp_path, labels):
    md5, _ = build_archive(tmp_path / "a.tar.gz", replace={"data_batch_3": batch_pickle(_ROWS2, _LABEL_CASES[labels])})
    _write_params(tmp_path, url="a.tar.gz", md5=md5)
    sys_tmp = tmp_path / "systmp"
    sys_tmp.mkdir()
    r = stage_process(tmp_path, "fetch_data", sys_tmp=sys_tmp)
    assert_one_line_error(r, r"error: archive: cifar-10-batches-py/data_batch_3: labels must be a flat list "
                             r"of integers \(item 0 is a list\)")
    assert tree(tmp_path) == {} and list(sys_tmp.iterdir()) == []


@pytest.mark.parametrize("data,line", [
    # the tiny archive: 300 training images (val 50 leaves 250), 100 test images, 10 classes
    ({"test_size": 95}, r"error: data.test_size = 95 is not allowed: a stratified subset of 100 images needs at "
                        r"least one image per class in it and left out of it; allowed: 10\.\.90, or 100 for all"),
    ({"train_size": 245}, r"error: data.train_size = 245 is not allowed: .* allowed: 10\.\.240, or 250 for all"),
    ({"val_size": 295}, r"error: data.val_size = 295 is too large: the archive has 300 training images; allowed: <= 290"),
])
def test_split_sizes_that_leave_a_class_out_are_one_line(tmp_path, cifar_server, data, line):
    _write_params(tmp_path, url=cifar_server.archive_url, md5=cifar_server.md5, **data)
    sys_tmp = tmp_path / "systmp"
    sys_tmp.mkdir()
    r = stage_process(tmp_path, "fetch_data", sys_tmp=sys_tmp)
    assert_one_line_error(r, line)
    assert tree(tmp_path) == {} and list(sys_tmp.iterdir()) == []


def test_an_output_folder_that_is_a_file_is_one_line(tmp_path, cifar_server):
    _write_params(tmp_path, url=cifar_server.archive_url, md5=cifar_server.md5)
    (tmp_path / "data").write_text("not a folder")
    r = stage_process(tmp_path, "fetch_data")
    assert_one_line_error(r, r"error: data/train.npz: Not a directory")
    assert (tmp_path / "data").read_text() == "not a folder"


# ---------------------------------------------------------------- one download per machine

def test_a_download_is_kept_once_per_machine_and_reused(tmp_path, monkeypatch, cifar_server, capsys):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    url = cifar_server.publish("kept.tar.gz", cifar_server.archive_path.read_bytes())
    first, second = tmp_path / "exp1", tmp_path / "exp2"           # two experiments' workspaces
    for root in (first, second):
        root.mkdir()
        monkeypatch.chdir(root)
        run_fetch(root, url=url, md5=cifar_server.md5)
    assert cifar_server.hits("/files/kept.tar.gz") == 1            # downloaded once
    assert "using the copy downloaded before" in capsys.readouterr().out
    kept = download.kept_archive(cifar_server.md5)
    assert kept.parent == Path(os.environ["KERAS_HOME"]) / "datasets"
    assert kept.read_bytes() == cifar_server.archive_path.read_bytes()
    for f in OUTPUT_FILES:
        if f.name != "fetch.json":
            assert (first / f).read_bytes() == (second / f).read_bytes()
    assert json.loads((second / paths.FETCH_INFO).read_text())["url"] == url   # the study's source


def test_a_damaged_kept_copy_is_downloaded_again(tmp_path, monkeypatch, cifar_server):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    url = cifar_server.publish("again.tar.gz", cifar_server.archive_path.read_bytes())
    kept = download.kept_archive(cifar_server.md5)
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"truncated")
    monkeypatch.chdir(tmp_path)
    run_fetch(tmp_path, url=url, md5=cifar_server.md5)
    assert cifar_server.hits("/files/again.tar.gz") == 1
    assert kept.read_bytes() == cifar_server.archive_path.read_bytes()


def test_a_local_archive_is_not_copied_to_the_machine_cache(fetchdir, cifar_server):
    run_fetch(fetchdir, url=str(cifar_server.archive_path), md5=cifar_server.md5)
    assert not download.kept_archive(cifar_server.md5).parent.exists()


# ---------------------------------------------------------------- local disk errors; the cache's temp files

def _put_kept(md5: str, data: bytes) -> Path:
    """`data` as the kept copy of `md5`, as an earlier run on this machine leaves it; returns its path."""
    kept = download.kept_archive(md5)
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_bytes(data)
    return kept


def _cache_files() -> list[str]:
    """Names of the files in the kept archives' folder, hidden temp files included."""
    folder = download.kept_archive("0" * 32).parent
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


_WITH_FILE_LIMIT = """
import resource, runpy, signal, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
runpy.run_module("stages.fetch_data", run_name="__main__", alter_sys=True)
"""


def _fetch_with_file_limit(root: Path, sys_tmp: Path, max_bytes: int) -> subprocess.CompletedProcess:
    """The stage as a process whose files cannot grow past `max_bytes`: a write beyond that fails
    with a real EFBIG (File too large), as on a file system or quota that is too small."""
    return subprocess.run([sys.executable, "-c", _WITH_FILE_LIMIT, str(max_bytes)], cwd=root,
                          env=_stage_env(sys_tmp), capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("source", ["kept_copy", "http_download", "local_file"])
def test_a_disk_error_writing_the_copy_is_local_not_retried_and_keeps_the_kept_copy(tmp_path, cifar_server, source):
    archive, md5 = cifar_server.archive_bytes, cifar_server.md5
    name = f"efbig-{source}.tar.gz"
    url = cifar_server.publish(name, archive)
    kept = download.kept_archive(md5)
    if source == "kept_copy":
        _put_kept(md5, archive)
    elif source == "local_file":
        (tmp_path / name).write_bytes(archive)
        url = name
    sys_tmp = tmp_path / "systmp"
    sys_tmp.mkdir()
    _write_params(tmp_path, url=url, md5=md5, retries=3)
    r = _fetch_with_file_limit(tmp_path, sys_tmp, len(archive) // 2)
    copy = kept.name if source == "kept_copy" else name
    assert_one_line_error(r, rf"error: local disk: writing data/\.tmp-fetch_data-\w+/{re.escape(copy)} "
                             r"failed \(File too large\)")
    assert "retrying" not in r.stderr
    assert cifar_server.hits(f"/files/{name}") == {"kept_copy": 0, "http_download": 1, "local_file": 0}[source]
    assert _cache_files() == ([kept.name] if source == "kept_copy" else [])
    if source == "kept_copy":
        assert md5_file(kept) == md5          # a good kept copy survives a disk error
    assert list((tmp_path / "data").iterdir()) == [] and list(sys_tmp.iterdir()) == []


class _FailingDisk(io.RawIOBase):
    """A file whose every read fails as on a failing disk (EIO)."""

    def readable(self):
        return True

    def readinto(self, b):
        raise OSError(errno.EIO, os.strerror(errno.EIO))


def test_an_unreadable_kept_copy_is_local_and_left_in_place(fetchdir, cifar_server, monkeypatch):
    url = cifar_server.publish("eio.tar.gz", cifar_server.archive_bytes)
    kept = _put_kept(cifar_server.md5, cifar_server.archive_bytes)
    real_open = open

    def open_failing_kept(path, mode="r", *args, **kw):
        if Path(path) == kept and "r" in mode:
            return io.BufferedReader(_FailingDisk())
        return real_open(path, mode, *args, **kw)

    monkeypatch.setattr(download, "open", open_failing_kept, raising=False)  # study.download's open() only
    msg = fail_fetch(fetchdir, "^local disk: ", url=url, md5=cifar_server.md5, retries=3)
    assert msg == (f"local disk: reading the kept copy {kept} failed (Input/output error); "
                   "it is left as is (delete it to download the archive again)")
    assert cifar_server.hits("/files/eio.tar.gz") == 0
    assert _cache_files() == [kept.name] and md5_file(kept) == cifar_server.md5


def test_control_a_reset_connection_is_still_blamed_on_data_url_and_retried(fetchdir, cifar_server, monkeypatch):
    # the same kind of exception (an OSError) as the disk errors above, from the network side
    import http.client

    def reset(self, n=-1):
        raise ConnectionResetError(errno.ECONNRESET, os.strerror(errno.ECONNRESET))

    monkeypatch.setattr(http.client.HTTPResponse, "read1", reset)
    url = cifar_server.publish("reset.tar.gz", cifar_server.archive_bytes)
    msg = fail_fetch(fetchdir, "^data.url: ", url=url, md5=cifar_server.md5, retries=3)
    assert msg == (f"data.url: download from {url} failed (ConnectionResetError: [Errno {errno.ECONNRESET}] "
                   f"{os.strerror(errno.ECONNRESET)}) (3 attempts)")
    assert cifar_server.hits("/files/reset.tar.gz") == 3
    assert _cache_files() == []


def test_a_cache_that_cannot_be_written_only_warns_and_leaves_no_temp_file(fetchdir, cifar_server, monkeypatch,
                                                                          capsys):
    def copy_part_then_disk_full(src, dst, **kw):
        Path(dst).write_bytes(Path(src).read_bytes()[:1000])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(shutil, "copyfile", copy_part_then_disk_full)
    url = cifar_server.publish("nospace.tar.gz", cifar_server.archive_bytes)
    info = run_fetch(fetchdir, url=url, md5=cifar_server.md5)
    assert info["sizes"] == {"train": 200, "val": 50, "test": 100}
    kept = download.kept_archive(cifar_server.md5)
    assert capsys.readouterr().err == (f"warning: local disk: could not keep a copy of the archive at {kept} "
                                       "(No space left on device); the next run downloads it again\n")
    assert kept.parent.is_dir() and _cache_files() == []


_KILLED_WHILE_KEEPING = """
import os, runpy, shutil, signal
from pathlib import Path

def copy_half_then_die(src, dst, **kw):  # kill -9 halfway through the copy into the cache
    data = Path(src).read_bytes()
    with open(dst, "wb") as f:
        f.write(data[: len(data) // 2])
    os.kill(os.getpid(), signal.SIGKILL)

shutil.copyfile = copy_half_then_die
runpy.run_module("stages.fetch_data", run_name="__main__", alter_sys=True)
"""


def test_kill_9_while_keeping_a_copy_leaves_a_temp_file_the_next_run_removes(tmp_path, cifar_server):
    md5, n = cifar_server.md5, len(cifar_server.archive_bytes)
    url = cifar_server.publish("kill9-keep.tar.gz", cifar_server.archive_bytes)
    sys_tmp = tmp_path / "systmp"
    sys_tmp.mkdir()
    _write_params(tmp_path, url=url, md5=md5)
    killed = subprocess.run([sys.executable, "-c", _KILLED_WHILE_KEEPING], cwd=tmp_path, env=_stage_env(sys_tmp),
                            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    kept = download.kept_archive(md5)
    [left] = _cache_files()                   # a partial copy under a temp name, never the kept name
    assert fnmatch(left, download.KEPT_TEMP_GLOB) and left.startswith(f".{kept.name[:-len('.gz')]}.")
    assert (kept.parent / left).stat().st_size == n // 2
    r = stage_process(tmp_path, "fetch_data", sys_tmp=sys_tmp)
    assert r.returncode == 0, r.stderr
    assert _cache_files() == [kept.name] and md5_file(kept) == md5
    assert cifar_server.hits("/files/kill9-keep.tar.gz") == 2
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == sorted(p.name for p in OUTPUT_FILES)
    assert list(sys_tmp.iterdir()) == []


def test_only_unlocked_temp_files_of_kept_archives_are_removed(tmp_path):
    import fcntl
    names = {"dead": ".cifar-10-python-aa.tar.k1x2.tmp.gz", "live": ".cifar-10-python-bb.tar.k3x4.tmp.gz",
             "kept": "cifar-10-python-cc.tar.gz", "keras": "cifar-10-batches-py.tar.gz", "other": ".x.k5.tmp.gz"}
    for n in names.values():
        (tmp_path / n).write_bytes(b"partial")
    (tmp_path / ".cifar-10-python-dd.tar.k6.tmp.gz").mkdir()   # not a file: left alone
    with open(tmp_path / names["live"], "rb") as writer:        # as keep_copy holds it while it writes
        fcntl.flock(writer, fcntl.LOCK_EX)                      # (flock: per open file, so also in-process)
        assert download.remove_stale_temps(tmp_path) == [tmp_path / names["dead"]]
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == sorted(
        n for k, n in names.items() if k != "dead")
    assert download.remove_stale_temps(tmp_path) == [tmp_path / names["live"]]  # unlocked: the only difference


def test_a_copy_being_kept_is_not_removed_by_another_runs_cleanup(fetchdir, cifar_server, monkeypatch):
    real_copy, seen = shutil.copyfile, []

    def copy_while_another_run_starts(src, dst, **kw):
        real_copy(src, dst)
        seen.append((_cache_files(), download.remove_stale_temps(Path(dst).parent)))
        return dst

    monkeypatch.setattr(shutil, "copyfile", copy_while_another_run_starts)
    url = cifar_server.publish("live.tar.gz", cifar_server.archive_bytes)
    run_fetch(fetchdir, url=url, md5=cifar_server.md5)
    [(during, removed)] = seen
    assert len(during) == 1 and fnmatch(during[0], download.KEPT_TEMP_GLOB) and removed == []
    kept = download.kept_archive(cifar_server.md5)
    assert _cache_files() == [kept.name] and md5_file(kept) == cifar_server.md5
