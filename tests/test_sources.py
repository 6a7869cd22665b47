"""study.sources: which reader an archive gets, CIFAR-10 resized like your own images, and the
fingerprint by which hash_source lets DVC see a folder's images change."""
from __future__ import annotations

import io
import os
import tarfile
import zipfile

import numpy as np

from study.sources import fingerprint, is_cifar_archive, resize_all
from tests.cifar_archive import build_archive
from tests.image_folders import class_tree, image_file


def test_fingerprint_changes_with_an_edit_an_addition_or_a_removal_only(tmp_path):
    good = class_tree(tmp_path / "images", 0, split_dirs={"train": 3, "test": 2})
    def fp():
        return fingerprint({"url": str(good), "md5": None})["md5"]
    first = fp()
    assert fp() == first
    some = next((good / "train/ant").iterdir())
    os.utime(some, (1, 1))                        # touched, same bytes: unchanged
    assert fp() == first
    image_file(some, 999)                         # edited
    edited = fp()
    image_file(good / "train/ant/new.png", 998)   # added
    added = fp()
    (good / "train/ant/new.png").unlink()         # removed again
    assert len({first, edited, added}) == 3 and fp() == edited
    assert fingerprint({"url": "https://example.org/a.tar.gz", "md5": "0" * 32}) == \
        {"url": "https://example.org/a.tar.gz", "md5": "0" * 32}



def test_cifar_archives_are_told_from_class_folder_archives(tmp_path):
    build_archive(tmp_path / "cifar.tar.gz", n_train=2, n_test=1)
    good = class_tree(tmp_path / "images", 2)
    with tarfile.open(tmp_path / "folders.tar.gz", "w:gz") as tf:
        tf.add(good, ".")
    with zipfile.ZipFile(tmp_path / "folders.zip", "w") as zf:
        zf.writestr("ant/x.png", b"")
    (tmp_path / "junk.tar.gz").write_bytes(b"neither tar nor zip")
    assert [is_cifar_archive(tmp_path / n) for n in ("cifar.tar.gz", "folders.tar.gz", "folders.zip", "junk.tar.gz")] \
        == [True, False, False, True]  # junk goes to the CIFAR reader, whose message names the archive


def test_resize_all_is_the_folder_readers_resize():
    from study.image_decode import decode
    from PIL import Image
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    assert resize_all(x, 32) is x                                   # the CIFAR path at 32: untouched
    out = resize_all(x, 24)
    buf = io.BytesIO()
    Image.fromarray(x[1]).save(buf, format="PNG")
    assert out.shape == (3, 24, 24, 3) and np.array_equal(out[1], decode(buf.getvalue(), "x", 24))
