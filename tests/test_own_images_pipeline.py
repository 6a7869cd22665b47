"""The whole pipeline on your own images: a tiny folder of 3 class folders (PNG and JPEG, mixed
modes and sizes) through `dvc repro`; every stage follows the folder's classes."""
from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
import yaml

from tests.conftest import copy_project, dvc, git, stale, tiny_params
from tests.image_folders import CLASSES3, class_tree, image_file

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def folder_repo(tmp_path_factory):
    """A repo of this project whose `dvc repro` ran on a 3-class folder (train 20 + test 10 per class)."""
    root = tmp_path_factory.mktemp("own_images")
    images = class_tree(root / "images", 0, split_dirs={"train": 20, "test": 10})
    repo = copy_project(root / "repo")
    p = tiny_params()
    p["data"].update(url=str(images), md5=None, val_size=12, train_size=None, test_size=None, image_size=24)
    p["activations"].update(n_samples=24)
    p["tsne"].update(trust_samples=24, perplexity=5)
    p["gradcam"].update(images_per_class=2)
    (repo / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "own images")
    dvc(repo, "repro", timeout=1800)
    return repo


def test_models_have_one_unit_per_class_and_take_the_image_size(folder_repo):
    import keras
    for name in ("baseline", "center_loss"):
        model = keras.saving.load_model(folder_repo / f"models/{name}.keras", compile=False)
        assert model.output_shape == (None, 3) and model.input_shape == (None, 24, 24, 3)
        assert model.get_layer("dense_1").get_weights()[0].shape == (512, 3)
    assert np.load(folder_repo / "models/kmeans_centroids.npz")["centroids"].shape == (3, 512)


def test_every_stage_names_the_folder_classes(folder_repo):
    names = list(CLASSES3)
    assert json.loads((folder_repo / "data/classes.json").read_text()) == names
    for name in ("baseline", "center_loss"):
        rows = json.loads((folder_repo / f"plots/train_{name}/plots/sklearn/confusion_matrix.json").read_text())
        assert len(rows) == 30 and {r["actual"] for r in rows} == set(names)
        for layer in ("conv2d", "conv2d_4", "dense", "dense_1"):
            with open(folder_repo / f"plots/tsne/{name}/2d/{layer}.tsv") as f:
                got = [r["class"] for r in csv.DictReader(f, delimiter="\t")]
            assert len(got) == 24 and sorted(set(got)) == names
        assert json.loads((folder_repo / f"plots/gradcam/{name}/details.json").read_text())["n_images"] == 3 * 2
    kmeans = json.loads((folder_repo / "plots/kmeans_centroids/details.json").read_text())
    assert sorted(kmeans["centroid_to_class_mean"]["per_class"]) == names
    report = (folder_repo / "plots/compare/report.md").read_text()
    assert all(f"| {n} |" in report for n in names) and "airplane" not in report


def test_dvc_reruns_fetch_data_when_an_image_is_edited_added_or_removed_only(folder_repo):
    r = dvc(folder_repo, "repro")
    assert re.findall(r"Running stage '(.+)'", r.stdout) == ["hash_source"]     # unchanged: nothing else
    assert stale(folder_repo) == {}
    images = folder_repo.parent / "images"
    some = sorted((images / "train/ant").iterdir())[0]
    original = some.read_bytes()

    def stale_after_hash():  # the stages `dvc status` calls changed once the fingerprint is taken
        dvc(folder_repo, "repro", "hash_source")
        return set(stale(folder_repo))
    try:
        image_file(some, 4242)                                                   # edited
        assert "fetch_data" in stale_after_hash()            # and every stage after it
        some.write_bytes(original)
        assert "fetch_data" not in stale_after_hash()        # the same bytes again (the later stages' results
        image_file(images / "test/bee/new.png", 4243)        # were removed when the images changed)
        assert "fetch_data" in stale_after_hash()                                # added
        (images / "test/bee/new.png").unlink()
        some.unlink()                                                            # removed
        assert "fetch_data" in stale_after_hash()
    finally:
        some.write_bytes(original)
        (images / "test/bee/new.png").unlink(missing_ok=True)
    dvc(folder_repo, "repro")                  # the removed results come back from DVC's run cache
    assert stale(folder_repo) == {}
