"""extract_activations -> tsne on tiny data: the files, their columns and the metrics; plots config."""
import json

import numpy as np
import pytest
import yaml

from study import paths
from study.errors import StageError
from study.model import ANALYSED_LAYERS
from study.params import validate
from study.tsne import knn_accuracy, silhouette
from tests.conftest import REPO
from tests.synthetic import CLASSES

METRIC_KEYS = {"knn_accuracy_2d", "knn_accuracy_3d", "knn_accuracy_features",
               "trustworthiness_2d", "silhouette_2d", "silhouette_features"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_points_tsv_has_header_and_class_names():
    text = __import__("stages.tsne", fromlist=["points_tsv"]).points_tsv(
        np.array([[1.5, -2.25], [3.0, 4.0]], np.float32), np.array([2, 0]), CLASSES)
    assert text == "x\ty\tclass\n1.5\t-2.25\tbird\n3\t4\tairplane\n"


def test_knn_k_larger_than_half_the_points_fails_naming_the_key():
    from stages.tsne import check_knn_k
    check_knn_k(30, 60)
    with pytest.raises(StageError, match=r"tsne.knn_k = 31 is not allowed; allowed: <= 30"):
        check_knn_k(31, 60)


def test_missing_activations_is_a_stage_error(workdir):
    from stages.tsne import main
    with pytest.raises(StageError, match=r"data/activations/baseline.npz: not found; run `dvc repro extract_activations@baseline`"):
        main(validate(workdir), "baseline")


def test_extract_then_tsne_writes_points_images_and_metrics(workdir):
    import keras
    from stages.extract_activations import main as extract_main
    from stages.tsne import main as tsne_main
    from study.model import build_model
    keras.utils.set_random_seed(0)
    paths.MODELS.mkdir(exist_ok=True)
    build_model(True).save(paths.model_file("center_loss"))   # untrained: enough to test the plumbing
    params = validate(workdir)
    extract_main(params, "center_loss")
    metrics = tsne_main(params, "center_loss")

    n = params["activations"]["n_samples"]
    for layer in ANALYSED_LAYERS:
        lines = paths.tsne_points("center_loss", layer).read_text().splitlines()
        assert lines[0].split("\t") == ["x", "y", "class"] and len(lines) == n + 1
        rows = [r.split("\t") for r in lines[1:]]
        assert np.isfinite(np.array([[float(a), float(b)] for a, b, _ in rows])).all()
        assert sorted({c for *_, c in rows}) == sorted(CLASSES)          # class names, all 10
        png = paths.tsne_image_3d("center_loss", layer).read_bytes()
        assert png.startswith(PNG_MAGIC) and len(png) > 20_000
        m = metrics[layer]
        assert set(m) == METRIC_KEYS
        # the 2D metrics are those of the points written (5 significant digits) with their classes
        points = np.array([[float(a), float(b)] for a, b, _ in rows])
        labels = np.array([CLASSES.index(c) for *_, c in rows])
        assert m["silhouette_2d"] == pytest.approx(silhouette(points, labels), abs=1e-3)
        assert abs(m["knn_accuracy_2d"] - knn_accuracy(points, labels, params["tsne"]["knn_k"],
                                                       params["seed"])) <= 2 / n
    # every layer's coordinates for the explorer: the 2D ones are the tsv's (to its 5 digits)
    coords = np.load(paths.tsne_embeddings("center_loss"))
    acts = np.load(paths.activations_file("center_loss"))
    assert np.array_equal(coords["index"], acts["index"])
    for layer in ANALYSED_LAYERS:
        rows = [r.split("\t") for r in paths.tsne_points("center_loss", layer).read_text().splitlines()[1:]]
        tsv = np.array([[float(a), float(b)] for a, b, _ in rows])
        assert coords[f"{layer}_2d"].shape == (n, 2) and coords[f"{layer}_3d"].shape == (n, 3)
        np.testing.assert_allclose(coords[f"{layer}_2d"], tsv, rtol=1e-4, atol=1e-4 * np.abs(tsv).max())
        assert np.ptp(coords[f"{layer}_3d"], axis=0).min() > 0                 # three real axes
    # surfaces only for conv layers
    assert paths.tsne_surface("center_loss", "conv2d").read_bytes().startswith(PNG_MAGIC)
    assert paths.tsne_surface("center_loss", "conv2d_4").exists()
    assert not paths.tsne_surface("center_loss", "dense").exists()
    assert json.loads(paths.tsne_details("center_loss").read_text()) == metrics
    assert json.loads(paths.tsne_metrics("center_loss").read_text()) == \
        {"center_loss": {layer: {"knn_accuracy_2d": m["knn_accuracy_2d"]} for layer, m in metrics.items()}}
    # the synthetic classes differ by colour and stripe: the softmax layer of even an untrained net
    # separates them far better than chance (0.1) in the 512-d features
    assert metrics["dense"]["knn_accuracy_features"] > 0.5


def test_dvc_yaml_plots_use_the_class_scatter_template():
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    plots = {}
    for entry in dvc["plots"]:   # an entry is a path string or {path or id: config}
        plots.update({entry: None} if isinstance(entry, str) else entry)
    for name in paths.MODEL_NAMES:
        for layer in ANALYSED_LAYERS:     # one chart per layer, titled with the model and layer
            spec = plots[str(paths.tsne_points(name, layer))]
            assert {k: spec[k] for k in ("template", "x", "y")} == {"template": "tsne_scatter", "x": "x", "y": "y"}
            assert spec["title"].startswith(f"{name}: 2D t-SNE of {layer} (")
        assert str(paths.tsne_image_3d(name, "x").parent) in plots
        assert str(paths.tsne_surface(name, "x").parent) in plots
    for name in ("extract_activations", "tsne"):
        assert dvc["stages"][name]["foreach"] == list(paths.MODEL_NAMES)
    # rerun scope: each stage declares exactly seed + its own section (so a t-SNE or Grad-CAM
    # param never makes extract_activations stale, and only t-SNE params make tsne stale)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for stage, section in (("extract_activations", "activations"), ("tsne", "tsne")):
        declared = dvc["stages"][stage]["do"]["params"]
        assert sorted(declared) == sorted(["seed"] + [f"{section}.{k}" for k in params[section]])


def test_template_colours_by_class_and_takes_dvc_data():
    text = (REPO / ".dvc" / "plots" / "tsne_scatter.json").read_text()
    t = json.loads(text)
    assert '"<DVC_METRIC_DATA>"' in text
    enc = t["spec"]["encoding"]
    assert enc["color"]["field"] == "class" and enc["color"]["type"] == "nominal"
    assert enc["x"]["field"] == "<DVC_METRIC_X>" and enc["y"]["field"] == "<DVC_METRIC_Y>"
    assert t["facet"]["column"]["field"] == "rev"    # revisions side by side in `dvc plots diff`


def test_a_collapsed_model_gets_one_line_from_tsne_not_a_crash(workdir):
    """Every weight zero but the softmax's bias: every analysed layer gives one vector for every
    image, as a training that diverged to one class does. The stages run as processes, so a
    signal exit (openTSNE's segfault on zero variance) fails the test instead of killing pytest."""
    import keras

    from study.model import build_model
    from tests.conftest import assert_one_line_error, stage_process
    model = build_model(True)
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    model.get_layer("dense_1").bias.assign(np.arange(10, dtype="float32"))
    paths.MODELS.mkdir(exist_ok=True)
    keras.saving.save_model(model, paths.model_file("center_loss"))
    from pathlib import Path
    r = stage_process(Path.cwd(), "extract_activations", "center_loss")
    assert r.returncode == 0, r.stderr                                  # activations of a collapsed model are data
    r = stage_process(Path.cwd(), "tsne", "center_loss")
    assert_one_line_error(r, r"error: data/activations/center_loss.npz: layer conv2d of models/center_loss.keras "
                             r"cannot be embedded: all 60 points are the same vector \(zero variance\); the model "
                             r"has collapsed .*lower learning_rate or a longer lr_warmup_epochs")
    assert not paths.tsne_dir("center_loss").exists()                   # nothing written


def test_non_finite_activations_are_named_before_embedding():
    from study.tsne import why_not_embeddable
    x = np.random.default_rng(0).normal(size=(50, 4))
    assert why_not_embeddable(x) is None
    x[[3, 7], 1] = np.nan
    assert why_not_embeddable(x) == "2 of 50 points have non-finite values"
    assert why_not_embeddable(np.ones((5, 3))) == "all 5 points are the same vector (zero variance)"
