"""hash_source: data/source.json, and the downstream results removed only when the fingerprint
differs from the one fetch_data ran with (it runs on every `dvc repro`)."""
from __future__ import annotations

import hashlib
import json

import pytest
import yaml

from stages import hash_source
from study import paths
from tests.conftest import tiny_params
from tests.image_folders import class_tree, image_file


@pytest.fixture
def folder_workdir(tmp_path, monkeypatch):
    """chdir into a temp dir with params.yaml reading a 3-class folder; returns (params, images)."""
    images = class_tree(tmp_path / "images", 0, split_dirs={"train": 3, "test": 2})
    p = tiny_params()
    p["data"].update(url=str(images), md5=None)
    monkeypatch.chdir(tmp_path)
    return p, images


def _lock_with(md5: str | None) -> None:
    deps = [{"path": "data/source.json", "hash": "md5", "md5": md5, "size": 1}] if md5 else []
    (hash_source.LOCK).write_text(yaml.safe_dump({"schema": "2.0", "stages": {"fetch_data": {"cmd": "x", "deps": deps}}}))


def test_discards_downstream_results_only_when_the_fingerprint_is_new(folder_workdir, monkeypatch):
    params, images = folder_workdir
    calls = []
    monkeypatch.setattr(hash_source, "discard_downstream_results", lambda: calls.append(1))
    record = hash_source.main(params)
    assert json.loads(paths.SOURCE.read_text()) == record and record["images"] == 15
    assert calls == [1]                                   # no dvc.lock: fetch_data never ran
    _lock_with(hashlib.md5(paths.SOURCE.read_bytes()).hexdigest())
    hash_source.main(params)
    assert calls == [1]                                   # the same images: downstream results stay
    image_file(images / "train/ant/new.png", 77)
    hash_source.main(params)
    assert calls == [1, 1]                                # a new image: they describe other data


def test_an_archive_is_fingerprinted_by_its_url_and_md5(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = tiny_params()
    assert hash_source.main(p) == {"url": p["data"]["url"], "md5": p["data"]["md5"]}
    assert hash_source.fetch_data_ran_with() is None
