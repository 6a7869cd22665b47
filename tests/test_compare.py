"""compare on tiny, well-formed fake inputs: every metric, the figures, the report, the errors."""
import json

import numpy as np
import pytest

from stages import compare
from study import paths
from study.compare import GRADCAM_KEYS, TSNE_KEYS, distance_ratio
from study.errors import StageError
from study.model import ANALYSED_LAYERS
from tests.synthetic import CLASSES

ACC = {"baseline": 0.70, "center_loss": 0.75}
TSNE = {"knn_accuracy_2d": 0.5, "knn_accuracy_3d": 0.55, "knn_accuracy_features": 0.6,
        "trustworthiness_2d": 0.9, "silhouette_2d": 0.1, "silhouette_features": 0.05}
CAM = {"deletion_auc": 0.2, "insertion_auc": 0.6, "random_deletion_auc": 0.3,
       "random_insertion_auc": 0.5, "n_images": 10}


def write_training(name: str, acc: float):
    """plots/train_<name>/ as the training writes it: 3 epochs of DVCLive curves, details.json, confusion matrix.

    Test predictions: class 0 all wrong (taken for class 1), every other class all right.
    """
    from dvclive import Live
    truth = [c for c in CLASSES for _ in range(2)]
    pred = [CLASSES[1] if t == CLASSES[0] else t for t in truth]
    with Live(str(paths.train_dir(name)), dvcyaml=None, save_dvc_exp=False, report=None) as live:
        for epoch in range(3):
            for split in ("train", "val"):
                live.log_metric(f"{split}/accuracy", 0.3 + 0.1 * epoch)
                live.log_metric(f"{split}/loss", 2.0 - 0.5 * epoch)
                if name == "center_loss":  # its loss is the total; cross-entropy is `ce`
                    live.log_metric(f"{split}/ce", 1.9 - 0.5 * epoch)
            live.log_metric("learning_rate", 0.001)
            live.next_step()
        live.summary["test"] = {"accuracy": acc, "loss": 1.0 - acc}
        live.log_sklearn_plot("confusion_matrix", truth, pred, name="confusion_matrix.json")
    paths.train_details(name).write_text(json.dumps(dict(live.summary)))   # the training's details.json


def write_inputs(inter_scale: dict):
    """Every file compare reads, for both models; dense features with class means spaced by inter_scale."""
    rng = np.random.default_rng(0)
    paths.FETCH_INFO.parent.mkdir(parents=True, exist_ok=True)
    paths.FETCH_INFO.write_text(json.dumps({"sizes": {"train": 1200, "val": 50, "test": 60}}))
    for name in paths.MODEL_NAMES:
        write_training(name, ACC[name])
        tsne_dir, cam_dir = paths.tsne_dir(name), paths.gradcam_dir(name)
        tsne_dir.mkdir(parents=True)
        (tsne_dir / "details.json").write_text(json.dumps({l: TSNE for l in ANALYSED_LAYERS}))
        cam_dir.mkdir(parents=True)
        (cam_dir / "details.json").write_text(json.dumps(CAM))
        y = np.repeat(np.arange(10), 6)
        centres = np.eye(10, 512) * inter_scale[name]          # class means, pairwise distance scale*sqrt(2)
        dense = (centres[y] + rng.normal(0, 0.1, (60, 512))).astype(np.float32)
        paths.activations_file(name).parent.mkdir(parents=True, exist_ok=True)
        np.savez(paths.activations_file(name), dense=dense, y=y, index=np.arange(60))
    paths.KMEANS_DIR.mkdir(parents=True)
    (paths.KMEANS_DIR / "details.json").write_text(json.dumps(
        {"nmi": 0.4, "ari": 0.3, "purity": 0.5, "inertia": 10.0,
         "centroid_to_class_mean": {"mean": 1.0, "per_class": {c: 1.0 for c in CLASSES}}}))


def test_compare_writes_every_metric_figure_and_report(workdir):
    write_inputs({"baseline": 1.0, "center_loss": 5.0})
    result = compare.main(workdir)
    m = json.loads((paths.COMPARE_DIR / "details.json").read_text())
    assert m == json.loads(json.dumps(result))
    assert set(m) == {"baseline", "center_loss", "kmeans_centroids", "difference", "settings"}
    diff = m["difference"]
    assert diff["test_accuracy"] == pytest.approx(0.05) and diff["test_loss"] == pytest.approx(-0.05)
    assert diff["dense_intra_inter_ratio"] == pytest.approx(
        m["center_loss"]["dense"]["intra_inter_ratio"] - m["baseline"]["dense"]["intra_inter_ratio"])
    assert diff["dense_kmeans_nmi"] == pytest.approx(0.0)
    # the headline: only the differences
    assert json.loads((paths.COMPARE_DIR / "metrics.json").read_text()) == {"difference": diff}
    assert m["kmeans_centroids"] == {"nmi": 0.4, "ari": 0.3, "purity": 0.5}
    for name in paths.MODEL_NAMES:
        mm = m[name]
        assert mm["test"] == pytest.approx({"accuracy": ACC[name], "loss": 1 - ACC[name]})
        assert mm["per_class_accuracy"] == {c: (0.0 if c == CLASSES[0] else 1.0) for c in CLASSES}
        assert set(mm["layers"]) == set(ANALYSED_LAYERS)
        assert mm["layers"]["dense"] == {k: TSNE[k] for k in TSNE_KEYS}
        assert mm["gradcam"] == {k: CAM[k] for k in GRADCAM_KEYS}
        assert mm["dense"]["kmeans_nmi"] == pytest.approx(1.0)   # well separated clusters
    # 6 points/class, noise sd 0.1 in 512 dims: intra ~ 0.1*sqrt(512*5/6) = 2.07; sample means are
    # sqrt(2*scale^2 + 2*512*0.01/6) apart: 1.93 (scale 1) and 7.19 (scale 5)
    assert m["baseline"]["dense"]["intra_inter_ratio"] == pytest.approx(2.07 / 1.93, rel=0.03)
    assert m["center_loss"]["dense"]["intra_inter_ratio"] == pytest.approx(2.07 / 7.19, rel=0.03)
    for png in ("curves.png", "confusion_matrices.png"):
        assert (paths.COMPARE_DIR / png).stat().st_size > 10_000


def test_report_links_figures_and_states_the_difference(workdir):
    workdir.update(whiten_init=True, dirac_init=False, alternating_flip=False, ema_momentum=0)
    write_inputs({"baseline": 1.0, "center_loss": 1.0})
    compare.main(workdir)
    report = (paths.COMPARE_DIR / "report.md").read_text()
    cl = workdir["center_loss"]
    assert report.startswith(f"# Baseline vs center loss (`{cl['variant']}`)\n")       # names the variant
    assert (f"Settings: center loss `{cl['variant']}` (lambda {cl['lambda']:g}, mu {cl['mu']:g}, alpha {cl['alpha']:g}, "
            f"init {cl['init']}); both models: {workdir['epochs']} epochs, {workdir['optimizer']} at learning rate "
            f"{workdir['learning_rate']:g} ({workdir['lr_schedule']}), batch {workdir['batch_size']}, augment "
            f"{workdir['augment']}, test views {workdir['tta']}, whiten_init, seed {workdir['seed']}; images: "
            "1,200 train, 50 validation, 60 test.") in report
    workdir["center_loss"] = dict(cl, variant="island", mu=0.25)
    compare.main(workdir)
    report = (paths.COMPARE_DIR / "report.md").read_text()
    assert report.startswith("# Baseline vs center loss (`island`)\n") and "mu 0.25," in report
    workdir.update(whiten_init=False, alternating_flip=True, ema_momentum=0.99, tta="none")
    compare.main(workdir)
    report = (paths.COMPARE_DIR / "report.md").read_text()
    assert f"augment {workdir['augment']}, test views none, alternating_flip, ema_momentum 0.99, seed" in report
    assert json.loads((paths.COMPARE_DIR / "details.json").read_text())["settings"]["center_loss"]["variant"] == "island"
    assert "center_loss is 5.00 percentage points higher than baseline" in report
    assert "cannot show whether the difference is significant" in report
    for name in paths.MODEL_NAMES:
        assert f"(../gradcam/{name}/grid.png)" in report
        for layer in ANALYSED_LAYERS:
            assert f"(../tsne/{name}/3d/{layer}.png)" in report
    assert "(curves.png)" in report and "(confusion_matrices.png)" in report
    assert "| airplane | 0.0000 | 0.0000 |" in report


def test_distance_ratio_on_known_points():
    x = np.array([[0, 1], [0, -1], [10, 1], [10, -1]], float)
    r = distance_ratio(x, np.array([0, 0, 1, 1]))
    assert r == pytest.approx({"intra": 1.0, "inter": 10.0, "intra_inter_ratio": 0.1})


def test_read_curve_handles_timestamp_columns(tmp_path):
    f = tmp_path / "loss.tsv"
    f.write_text("timestamp\tstep\tloss\n1\t0\t2.5\n2\t1\t1.5\n")
    steps, values = compare.read_curve(f, "train_baseline")
    assert list(steps) == [0, 1] and list(values) == [2.5, 1.5]


def test_missing_input_names_the_stage_to_run(workdir):
    write_inputs({"baseline": 1.0, "center_loss": 1.0})
    (paths.gradcam_dir("center_loss") / "details.json").unlink()
    with pytest.raises(StageError, match=r"gradcam/center_loss/details.json: not found; run `dvc repro gradcam@center_loss`"):
        compare.main(workdir)
    assert not (paths.COMPARE_DIR / "metrics.json").exists()


def test_center_loss_curve_is_its_cross_entropy_not_its_total_loss(workdir):
    write_inputs({"baseline": 1.0, "center_loss": 1.0})
    (paths.train_dir("center_loss") / "plots/metrics/val/ce.tsv").unlink()
    with pytest.raises(StageError, match=r"train_center_loss/plots/metrics/val/ce.tsv: not found"):
        compare.main(workdir)
