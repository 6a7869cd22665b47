"""kmeans_centroids and train_center_loss stages on tiny synthetic data (real entry points)."""
import json
import shutil

import keras
import numpy as np
import pytest
import yaml

from stages import kmeans_centroids, train_center_loss
from study import paths
from study.data import load_split
from study.errors import StageError
from study.params import ParamsError, load
from study.train import evaluate_test

CURVES = ("train/loss", "train/ce", "train/intra", "train/inter", "train/accuracy",
          "train/intra_dist", "train/inter_dist", "val/loss", "val/ce", "val/intra",
          "val/inter", "val/accuracy", "val/intra_dist", "val/inter_dist")


def curve(name: str, key: str) -> np.ndarray:
    """The values column of a DVCLive curve plots/train_center_loss/plots/metrics/<key>.tsv."""
    path = paths.train_dir(name) / "plots" / "metrics" / f"{key}.tsv"
    rows = [line.split("\t") for line in path.read_text().splitlines()]
    col = rows[0].index(key.split("/")[-1])
    return np.array([float(r[col]) for r in rows[1:]])


def set_params(params, **center_loss):
    params["center_loss"].update(center_loss)
    with open("params.yaml", "w") as f:
        yaml.safe_dump(params, f, sort_keys=False)
    return load()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, baseline_dir):
    """The trained baseline (conftest's baseline_dir) plus kmeans_centroids run once on it."""
    root = tmp_path_factory.mktemp("trained")
    shutil.copytree(baseline_dir[0], root, dirs_exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        km = kmeans_centroids.main(load())
    return root, baseline_dir[1], km


@pytest.fixture
def stage_dir(workdir, trained):
    """`workdir` plus the baseline's and k-means' outputs (same params and data, so same files)."""
    for folder in ("models", "plots"):
        shutil.copytree(trained[0] / folder, folder)
    shutil.copy(trained[0] / "params.yaml", "params.yaml")   # baseline_dir's (Keras's initialisation)
    workdir.update(yaml.safe_load(open("params.yaml")))
    return workdir


@pytest.mark.parametrize("variant,init", [("center", "scratch"), ("island", "baseline"),
                                          ("contrastive", "scratch")])
def test_stages_end_to_end(stage_dir, trained, variant, init):
    km = trained[2]
    params = set_params(stage_dir, variant=variant, init=init, alpha=0.5)
    test = train_center_loss.main(params)

    # k-means outputs
    centroids = np.load(paths.CENTROIDS)["centroids"]
    assert centroids.shape == (10, 512) and centroids.dtype == np.float32
    saved = json.loads((paths.KMEANS_DIR / "details.json").read_text())
    assert saved == km and km["inertia"] > 0      # the metrics' values: tests/test_kmeans.py, known answers
    assert len(km["centroid_to_class_mean"]["per_class"]) == 10

    # the saved model is the plain CNN and predicts exactly what was tested before saving
    model = keras.saving.load_model(paths.model_file("center_loss"))
    assert isinstance(model, keras.Sequential) and model.get_layer("dense").units == 512
    metrics = json.loads((paths.train_dir("center_loss") / "metrics.json").read_text())
    assert metrics == {"center_loss": {"test": {"accuracy": test["accuracy"], "loss": test["loss"]}}}  # the headline only
    reloaded = evaluate_test(model, *load_split("test"), params["batch_size"], params["tta"])
    assert reloaded["accuracy"] == test["accuracy"]
    assert reloaded["loss"] == pytest.approx(test["loss"], rel=1e-5)
    np.testing.assert_array_equal(reloaded["pred"], test["pred"])

    # the centres started at the k-means centroids and moved (alpha = 0.5)
    centers = np.load(paths.CENTERS)
    assert centers.shape == (10, 512) and np.isfinite(centers).all()
    assert not np.allclose(centers, centroids)

    # curves: every term, and total = ce + lambda * intra + mu * inter each epoch
    for key in CURVES:
        assert len(curve("center_loss", key)) == params["epochs"], key
    lam, mu = params["center_loss"]["lambda"], params["center_loss"]["mu"]
    for split in ("train", "val"):
        total = curve("center_loss", f"{split}/ce") + lam * curve("center_loss", f"{split}/intra") \
            + mu * curve("center_loss", f"{split}/inter")
        np.testing.assert_allclose(curve("center_loss", f"{split}/loss"), total, rtol=1e-4)
    inter = curve("center_loss", "train/inter")
    assert (inter == 0).all() if variant == "center" else (inter > 0).all()
    assert (paths.train_dir("center_loss") / "plots" / "metrics" / "learning_rate.tsv").exists()
    assert (paths.train_dir("center_loss") / "plots" / "sklearn" / "confusion_matrix.json").exists()
    assert paths.summary_file("center_loss").read_text().count("dense_1") == 1


def test_mixed_bfloat16_trains_the_centres_in_float32(stage_dir):
    stage_dir["dtype_policy"] = "mixed_bfloat16"
    params = set_params(stage_dir, variant="contrastive", init="scratch", alpha=0.5)
    test = train_center_loss.main(params)
    centers = np.load(paths.CENTERS)
    assert centers.dtype == np.float32 and np.isfinite(centers).all()
    assert not np.allclose(centers, np.load(paths.CENTROIDS)["centroids"])
    model = keras.saving.load_model(paths.model_file("center_loss"))
    assert {layer.compute_dtype for layer in model.layers} == {"float32"}
    reloaded = evaluate_test(model, *load_split("test"), params["batch_size"], params["tta"])
    assert reloaded["accuracy"] == test["accuracy"] and np.isfinite(curve("center_loss", "train/loss")).all()


def test_zero_weights_reproduce_the_baseline(stage_dir, trained):
    """One builder, one recipe: lambda = mu = alpha = 0 from scratch trains exactly the baseline."""
    test = train_center_loss.main(set_params(stage_dir, variant="island", init="scratch",
                                             alpha=0.0, mu=0.0, **{"lambda": 0.0}))
    np.testing.assert_array_equal(np.load(paths.CENTERS), np.load(paths.CENTROIDS)["centroids"])
    ours = keras.saving.load_model(paths.model_file("center_loss")).get_weights()
    base = keras.saving.load_model(paths.model_file("baseline")).get_weights()
    for a, b in zip(ours, base):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert test["accuracy"] == trained[1]["accuracy"]
    assert test["loss"] == pytest.approx(trained[1]["loss"], rel=1e-5)
    np.testing.assert_allclose(curve("center_loss", "train/loss"), curve("baseline", "train/loss"),
                               rtol=1e-5)


def test_init_weights_baseline_copies_scratch_keeps(stage_dir):
    from study.model import build_model
    base = keras.saving.load_model(paths.model_file("baseline")).get_weights()
    for init, same in (("baseline", True), ("scratch", False)):
        model = build_model(stage_dir["batch_norm"])
        train_center_loss.init_weights(model, init)
        assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), base)) == same, init


def test_init_baseline_rejects_a_different_architecture(stage_dir):
    from study.model import build_model
    with pytest.raises(StageError, match="do not match this model"):
        train_center_loss.init_weights(build_model(batch_norm=False), "baseline")


def test_missing_inputs_fail_with_one_line(workdir):
    with pytest.raises(StageError, match=r"models/baseline.keras: not found; run `dvc repro train_baseline`"):
        kmeans_centroids.main(workdir)
    with pytest.raises(StageError, match=r"models/kmeans_centroids.npz: not found"):
        train_center_loss.main(workdir)


def test_bad_centroids_fail_before_training(workdir):
    paths.MODELS.mkdir(exist_ok=True)
    np.savez(paths.CENTROIDS, centroids=np.zeros((10, 64), np.float32))
    with pytest.raises(StageError, match=r"shape \(10, 64\).*expected finite \(10, 512\)"):
        train_center_loss.main(workdir)
    assert not paths.model_file("center_loss").exists()


def test_init_baseline_needs_the_baseline_model(workdir):
    paths.MODELS.mkdir(exist_ok=True)
    np.savez(paths.CENTROIDS, centroids=np.zeros((10, 512), np.float32))
    with pytest.raises(StageError, match="center_loss.init = baseline needs"):
        train_center_loss.main(set_params(workdir, init="baseline"))


@pytest.mark.parametrize("key,value,allowed", [("variant", "triplet", "center, island, contrastive"),
                                                ("init", "imagenet", "scratch, baseline"),
                                                ("alpha", 1.5, r"in \[0, 1\]"),
                                                ("lambda", -1, ">= 0")])
def test_bad_center_loss_params_are_named(workdir, key, value, allowed):
    with pytest.raises(ParamsError, match=rf"center_loss.{key} = .* allowed: .*{allowed}"):
        set_params(workdir, **{key: value})
