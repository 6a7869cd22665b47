"""The gradcam stage on tiny synthetic data: its outputs, its metrics, its one-line errors."""
import json
import subprocess
import sys

import pytest

from stages import gradcam
from study import paths
from study.errors import StageError
from study.params import load
from study.stage import model_name_arg
from tests.conftest import REPO

METRIC_KEYS = ["deletion_auc", "insertion_auc", "random_deletion_auc", "random_insertion_auc",
               "n_images"]


def save_model(name: str, seed: int = 0):
    """An untrained seed CNN saved where train_<name> would put it."""
    import keras
    from study.model import build_model
    keras.utils.set_random_seed(seed)
    paths.MODELS.mkdir(exist_ok=True)
    build_model(batch_norm=True).save(paths.model_file(name))


def test_stage_writes_grid_and_metrics(workdir):
    save_model("center_loss")
    metrics = gradcam.main(load(), "center_loss")
    out = paths.gradcam_dir("center_loss")
    on_disk = json.loads((out / "details.json").read_text())
    assert list(on_disk) == METRIC_KEYS and on_disk == metrics
    assert json.loads((out / "metrics.json").read_text()) == \
        {"center_loss": {k: metrics[k] for k in ("deletion_auc", "insertion_auc")}}
    assert on_disk["n_images"] == 10 * workdir["gradcam"]["images_per_class"]
    # the random baseline, recomputed here: the grid's images, the model's predictions, auc_steps, seed
    import keras
    from study.data import class_names, load_split, preprocess
    from study.faithfulness import auc, curves, random_rankings
    from study.gradcam import pick_images
    x, y = load_split("test")
    images = preprocess(x[pick_images(y, workdir["gradcam"]["images_per_class"], workdir["seed"],
                                      len(class_names())).ravel()])
    model = keras.saving.load_model(paths.model_file("center_loss"))
    predict = lambda batch: model(batch, training=False).numpy()       # noqa: E731
    rankings = random_rankings(len(images), 32 * 32, workdir["seed"])
    for mode in ("deletion", "insertion"):
        want = auc(curves(predict, images, rankings, predict(images).argmax(1), workdir["gradcam"]["auc_steps"],
                          mode)).mean()
        assert on_disk[f"random_{mode}_auc"] == pytest.approx(want, rel=1e-5)
    import matplotlib.image as mpimg
    grid = mpimg.imread(out / "grid.png")
    assert grid.ndim == 3 and grid.shape[0] > 400 and grid.shape[1] > 200   # 10 rows of panels
    assert not paths.gradcam_dir("baseline").exists()


def test_stage_output_is_reproducible(workdir):
    save_model("baseline")
    first = gradcam.main(load(), "baseline")
    assert gradcam.main(load(), "baseline") == first


@pytest.mark.parametrize("argv", [[], ["resnet"], ["baseline", "center_loss"]])
def test_bad_model_name_is_a_one_line_error(argv):
    with pytest.raises(StageError, match=r"allowed: exactly one of baseline, center_loss") as e:
        model_name_arg(argv)
    assert "\n" not in str(e.value)


def test_missing_model_says_what_to_run(workdir):
    with pytest.raises(StageError, match=r"models/baseline.keras: not found; run `dvc repro train_baseline`"):
        gradcam.main(load(), "baseline")


def test_too_many_images_per_class_fails_before_loading_the_model(workdir):
    import yaml
    workdir["gradcam"]["images_per_class"] = 11   # the synthetic test split has 10 per class
    (paths.Path("params.yaml")).write_text(yaml.safe_dump(workdir))
    with pytest.raises(StageError, match="gradcam.images_per_class = 11"):
        gradcam.main(load(), "baseline")                 # no model file: would fail later if reached


def test_cli_exits_1_with_one_line_on_stderr(workdir):
    r = subprocess.run([sys.executable, "-m", "stages.gradcam", "nope"], capture_output=True,
                       text=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0
    assert r.stderr.startswith("error: model name argument 'nope' is not allowed; "
                                "allowed: exactly one of baseline, center_loss")
    assert not paths.gradcam_dir("nope").exists()
