"""Your own images (study.image_folder, study.sources, fetch_data on class folders): layouts,
modes and sizes read as Keras would, and every bad input refused by the stage in one line,
exit 1, with no output left."""
from __future__ import annotations

import json
import os
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from study import paths
from study.image_decode import MAX_PIXELS, decode
from study.image_folder import read_images
from tests.conftest import assert_one_line_error, stage_process, tiny_params
from tests.image_folders import CLASSES3, class_tree, image_file

OUTPUTS = [paths.TRAIN, paths.VAL, paths.TEST, paths.CLASSES, paths.FETCH_INFO]


def folder_params(url, **data) -> dict:
    """tiny_params() reading `url` (a folder: md5 null), with small splits for 3 classes."""
    p = tiny_params()
    p["data"].update({"url": str(url), "md5": None, "val_size": 6, "train_size": None, "test_size": None, **data})
    p["activations"].update(n_samples=10)
    p["tsne"].update(trust_samples=20)  # >= n_samples: all of them
    return p


def fetch(root: Path, url, **data):
    """Run fetch_data as a user does (a subprocess in root, params.yaml written there)."""
    (root / "params.yaml").write_text(yaml.safe_dump(folder_params(url, **data), sort_keys=False))
    return stage_process(root, "fetch_data")


def assert_refused(root: Path, url, pattern: str, **data) -> None:
    """fetch_data exits 1 with one `error:` line matching pattern, and leaves no output."""
    r = fetch(root, url, **data)
    assert_one_line_error(r, "error: " + pattern)
    assert [p for p in OUTPUTS if (root / p).exists()] == []


@pytest.fixture
def good(tmp_path):
    """A valid train/ + test/ folder of the 3 classes (8 + 4 images each)."""
    return class_tree(tmp_path / "images", 0, split_dirs={"train": 8, "test": 4})


def test_split_layout_gives_classes_from_folder_names_and_labels_in_order(tmp_path, good):
    r = fetch(tmp_path, good)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / paths.CLASSES).read_text()) == list(CLASSES3)
    info = json.loads((tmp_path / paths.FETCH_INFO).read_text())
    assert info["sizes"] == {"train": 18, "val": 6, "test": 12} and info["kind"] == "class folders"
    assert info["md5"] is None and info["skipped_files"] == 0 and info["image_size"] == 32
    test = np.load(tmp_path / paths.TEST)
    assert test["x"].shape == (12, 32, 32, 3) and np.bincount(test["y"]).tolist() == [4, 4, 4]
    # the test split is test/, pixel for pixel: the first image of test/bee (label 1)
    want = decode((good / "test/bee/000.png").read_bytes() if (good / "test/bee/000.png").exists()
                  else (good / "test/bee/000.jpg").read_bytes(), "x", 32)
    assert any(np.array_equal(want, img) for img in test["x"][test["y"] == 1])


def test_single_tree_draws_test_size_and_skips_other_files_with_a_count(tmp_path):
    root = class_tree(tmp_path / "images", 12)
    (root / "notes.txt").write_text("not an image")
    (root / "ant" / ".DS_Store").write_bytes(b"\0")
    r = fetch(tmp_path, root, test_size=12, image_size=16)
    assert r.returncode == 0, r.stderr
    assert "skipped 2 file(s) that are not .jpg, .jpeg or .png" in r.stderr
    info = json.loads((tmp_path / paths.FETCH_INFO).read_text())
    assert info["sizes"] == {"train": 18, "val": 6, "test": 12} and info["skipped_files"] == 2
    assert info["class_counts"]["test"] == {"ant": 4, "bee": 4, "cat": 4}
    x = np.load(tmp_path / paths.TRAIN)["x"]
    assert x.shape == (18, 16, 16, 3)
    every = {np.load(tmp_path / p)["x"][i].tobytes() for p in (paths.TRAIN, paths.VAL, paths.TEST)
             for i in range(len(np.load(tmp_path / p)["y"]))}
    assert len(every) == 36  # all images, each in one split


def test_archives_read_as_the_folder_does(tmp_path, good):
    want = read_images(good, 32, "f")
    with tarfile.open(tmp_path / "a.tar.gz", "w:gz") as tf:
        tf.add(good, "mydata")            # a wrapping folder is allowed
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as zf:
        for p in sorted(good.rglob("*")):
            zf.write(p, p.relative_to(good).as_posix())
    for archive in ("a.tar.gz", "a.zip"):
        got = read_images(tmp_path / archive, 32, "a")
        assert got["classes"] == want["classes"]
        for s in ("train", "test"):
            assert np.array_equal(got[s][0], want[s][0]) and np.array_equal(got[s][1], want[s][1])


# --- bad inputs: one line, exit 1, no outputs ---

def test_corrupt_image_is_named(tmp_path, good):
    (good / "train/bee/003.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert_refused(tmp_path, good, r"train/bee/003.png: not a readable JPEG or PNG image \(.*\)")


def test_other_format_with_an_image_name_is_named(tmp_path, good):
    from PIL import Image
    Image.new("RGB", (8, 8)).save(good / "train/bee/gif.png", format="GIF")
    assert_refused(tmp_path, good, r"train/bee/gif.png: not a readable JPEG or PNG image \(a GIF file\)")


def test_empty_class_folder(tmp_path, good):
    (good / "test/dog").mkdir()
    (good / "test/dog/readme.txt").write_text("soon")
    assert_refused(tmp_path, good, r"data.url: class folder test/dog holds no .jpg, .jpeg or .png image; .*")


def test_fewer_than_two_classes(tmp_path):
    root = class_tree(tmp_path / "one", 6, classes=("ant",))
    assert_refused(tmp_path, root, r"data.url: 1 class folder\(s\) with images \(ant\); allowed: 2..100 classes")


def test_class_missing_from_test(tmp_path, good):
    for p in (good / "test/cat").iterdir():
        p.unlink()
    (good / "test/cat").rmdir()
    assert_refused(tmp_path, good, r"data.url: class 'cat' is in train/ but not in test/; every class needs images in both")


def test_classes_too_small_for_the_split(tmp_path, good):
    assert_refused(tmp_path, good, r"data.val_size = 30 is too large: .*", val_size=30)
    tree_root = class_tree(tmp_path / "tree", 4)
    assert_refused(tmp_path, tree_root, r"data.test_size = 10 is too large: the folder holds 12 images; allowed: <= 6 .*",
                   test_size=10)
    assert_refused(tmp_path, tree_root, r"data.test_size = null is not allowed for one class tree .*")


def test_image_over_the_pixel_bound(tmp_path, good):
    from PIL import Image
    side = int(MAX_PIXELS ** 0.5) + 1
    Image.new("1", (side, side)).save(good / "train/ant/huge.png")  # a few KB on disk
    assert_refused(tmp_path, good, rf"train/ant/huge.png: {side} x {side} pixels; allowed: at most 50,000,000 per image")


def test_symlink_leading_outside_the_folder(tmp_path, good):
    outside = image_file(tmp_path / "elsewhere.png", 5)
    os.symlink(outside, good / "train/ant/link.png")
    assert_refused(tmp_path, good, r"data.url: train/ant/link.png is a link leading outside the folder; .*")


def test_archive_members_leading_outside(tmp_path, good):
    for name, kind in (("dots.tar", "file"), ("link.tar", "symlink")):
        archive = tmp_path / name
        with tarfile.open(archive, "w") as tf:
            tf.add(good, ".")
            if kind == "file":
                tf.add(next((good / "train/ant").iterdir()), "train/ant/../../../evil.jpg")
            else:
                info = tarfile.TarInfo("train/ant/evil.png")
                info.type, info.linkname = tarfile.SYMTYPE, "../../../../etc/passwd"
                tf.addfile(info)
        md5 = __import__("hashlib").md5(archive.read_bytes()).hexdigest()
        (tmp_path / "params.yaml").write_text(yaml.safe_dump({**folder_params(archive), "data": {
            **folder_params(archive)["data"], "md5": md5}}, sort_keys=False))
        r = stage_process(tmp_path, "fetch_data")
        assert_one_line_error(r, r"error: data.url \(.*\): member .* leads outside the archive; .*")
        assert [p for p in OUTPUTS if (tmp_path / p).exists()] == []


def test_duplicate_across_train_and_test(tmp_path, good):
    src = sorted((good / "train/bee").iterdir())[0]
    (good / f"test/ant/copy{src.suffix}").write_bytes(src.read_bytes())
    assert_refused(tmp_path, good, rf"data.url: test/ant/copy{src.suffix} repeats train/bee/{src.name} .*")


def test_md5_must_match_the_kind_of_source(tmp_path, good):
    assert_refused(tmp_path, good, r"data.md5: 0{32} names an archive, but data.url .* is a folder; allowed: null for a folder",
                   md5="0" * 32)
    (tmp_path / "file.tar").write_bytes(b"x")
    assert_refused(tmp_path, tmp_path / "file.tar", r"data.url: .*file.tar is not a folder, and data.md5 is null; .*")
