"""The real CIFAR-10 images read as class folders give the pixels and labels that the official-
format archive built from them holds: ../shared/data/cifar10-jpg.tar.gz (train/<class>/*.jpg,
test/<class>/*.jpg) through study.image_folder, against make_cifar10_archive.py's own reading
of the same files. Skips where ../shared/ is absent (a user's clone)."""
from __future__ import annotations

import hashlib
import importlib.util
import tarfile

import numpy as np
import pytest

from tests.conftest import REPO

SHARED = REPO.parent / "shared" / "data"
JPG = SHARED / "cifar10-jpg.tar.gz"
SCRIPT = SHARED / "make_cifar10_archive.py"
PER_CLASS = {"train": 20, "test": 10}   # 300 files of the 60,000


@pytest.fixture(scope="module")
def sample_tar(tmp_path_factory):
    """The first PER_CLASS files of each class and split of the real JPEG copy, as a tar.gz."""
    if not (JPG.exists() and SCRIPT.exists()):
        pytest.skip(f"{JPG} and {SCRIPT.name} are not here (they are beside this project only on "
                    "the developers' machines)")
    out = tmp_path_factory.mktemp("cifar_jpg") / "sample.tar.gz"
    taken: dict[tuple[str, str], int] = {}
    with tarfile.open(JPG) as src, tarfile.open(out, "w:gz") as dst:
        for m in src:
            parts = m.name.split("/")
            if m.isfile() and len(parts) == 3 and taken.get((parts[0], parts[1]), 0) < PER_CLASS[parts[0]]:
                taken[(parts[0], parts[1])] = taken.get((parts[0], parts[1]), 0) + 1
                dst.addfile(m, src.extractfile(m))
    return out


def _keys(x, y, names):
    """The sorted multiset of (pixels, class name) of a split: order-free, as the archive shuffles."""
    return sorted(hashlib.blake2b(img.tobytes() + names[k].encode(), digest_size=16).digest() for img, k in zip(x, y))


def test_real_cifar_folders_give_the_archives_pixels_and_labels(sample_tar):
    from study.image_folder import read_images
    spec = importlib.util.spec_from_file_location("make_cifar10_archive", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    ours = read_images(sample_tar, 32, "sample")
    assert ours["classes"] == script.CLASSES            # sorted folder names = the official label order
    with tarfile.open(sample_tar) as tar:
        for split in ("train", "test"):
            _, images, labels = script.read_split(tar, split)
            assert len(labels) == 10 * PER_CLASS[split]
            assert _keys(*ours[split], ours["classes"]) == _keys(images, labels, script.CLASSES)
    # the control: one pixel off is seen
    x, y = ours["test"]
    x = x.copy()
    x[0, 0, 0, 0] ^= 1
    with tarfile.open(sample_tar) as tar:
        _, images, labels = script.read_split(tar, "test")
    assert _keys(x, y, ours["classes"]) != _keys(images, labels, script.CLASSES)
    assert np.array_equal(np.bincount(y), [PER_CLASS["test"]] * 10)
