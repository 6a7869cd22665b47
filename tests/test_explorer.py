"""The explorer stage and its helpers: the page's data against the stage outputs it is built from,
determinism, one-line errors; and (slow) the page itself in headless Chromium on the tiny pipeline."""
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from study import explorer as ex
from study import paths
from study.data import stratified_subset
from study.errors import StageError
from study.files import atomic_dir
from study.model import ANALYSED_LAYERS
from study.params import validate
from tests.synthetic import CLASSES

N_POINTS = 60


def fake_stage_outputs(root: Path, seed: int = 0) -> dict:
    """What extract_activations, tsne and fetch_data leave for the explorer (data/ from
    tests.synthetic.write_splits), small and random: class clusters in every embedding."""
    rng = np.random.default_rng(seed)
    y_test = np.load(root / paths.TEST)["y"]
    index = stratified_subset(y_test, N_POINTS, seed, "activations.n_samples")
    y = y_test[index]
    out = {}
    for m, name in enumerate(paths.MODEL_NAMES):
        logits = rng.normal(size=(N_POINTS, len(CLASSES))) + 3 * np.eye(len(CLASSES))[y]
        softmax = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)
        coords = {f"{layer}_{d}d": (rng.normal(size=(len(CLASSES), d))[y] * 20 * (m + 1)
                                    + rng.normal(size=(N_POINTS, d))).astype(np.float32)
                  for layer in ANALYSED_LAYERS for d in (2, 3)}
        for path, arrays in ((paths.activations_file(name), {"index": index, "y": y, "dense_1": softmax}),
                             (paths.tsne_embeddings(name), {"index": index, **coords})):
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            np.savez(root / path, **arrays)
        details = {layer: {"knn_accuracy_2d": 0.5 + 0.1 * i, "knn_accuracy_3d": 0.55 + 0.1 * i,
                           "trustworthiness_2d": 0.9, "silhouette_2d": 0.1 * i - m / 10}
                   for i, layer in enumerate(ANALYSED_LAYERS)}
        (root / paths.tsne_details(name)).parent.mkdir(parents=True, exist_ok=True)
        (root / paths.tsne_details(name)).write_text(json.dumps(details))
        out[name] = {"softmax": softmax, "coords": coords, "details": details}
    return {"index": index, "y": y, "models": out}


def read_page_data(folder: Path) -> dict:
    """The data.js of a written page, parsed."""
    text = (folder / ex.DATA).read_text()
    prefix = "window.EXPLORER_DATA = "
    assert text.startswith(prefix) and text.endswith(";\n")
    return json.loads(text[len(prefix):-2])


def test_round_sig_keeps_digits_of_the_largest_magnitude():
    assert ex.round_sig(np.array([[123.456, -0.01234], [7.0, 99.99]])) == [123.5, -0.0, 7.0, 100.0]
    assert ex.round_sig(np.array([0.0123456, 0.5])) == [0.0123, 0.5]
    assert ex.round_sig(np.zeros(3)) == [0.0, 0.0, 0.0]
    x = np.random.default_rng(0).normal(scale=10, size=1000)
    assert 10 <= np.abs(x).max() < 100                                        # so 4 digits = 2 decimals
    err = np.abs(np.array(ex.round_sig(x)) - x)
    assert err.max() <= 0.005 + 1e-12 and err.max() > 0.004


def test_predictions_are_the_argmax_and_its_probability():
    pred, conf = ex.predictions(np.array([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]]))
    assert pred == [1, 0] and conf == [0.7, 0.6]


def test_sprite_sheet_puts_image_i_in_row_i_div_cols_and_column_i_mod_cols():
    images = np.random.default_rng(0).integers(0, 256, size=(11, 32, 32, 3), dtype=np.uint8)
    sheet = ex.sprite_sheet(images)
    assert ex.sprite_columns(11) == 4 and sheet.shape == (3 * 32, 4 * 32, 3)
    for i in (0, 3, 4, 10):
        r, c = divmod(i, 4)
        assert np.array_equal(sheet[r * 32:(r + 1) * 32, c * 32:(c + 1) * 32], images[i])
    assert not sheet[2 * 32:, 3 * 32:].any()                                  # the 12th cell is empty


def test_jpeg_sprite_is_deterministic_and_close_to_the_images():
    from io import BytesIO

    from PIL import Image
    from tests.synthetic import synthetic_images
    sheet = ex.sprite_sheet(synthetic_images(3, 0)[0])
    a, b = ex.encode_jpeg(sheet), ex.encode_jpeg(sheet.copy())
    assert a == b and a.startswith(b"\xff\xd8")
    decoded = np.asarray(Image.open(BytesIO(a)).convert("RGB"), np.float64)
    assert np.abs(decoded - sheet).mean() < 6                                 # quality 90, no subsampling
    assert np.abs(decoded - np.roll(sheet, 32, axis=1)).mean() > 20           # control: another image


def test_page_html_inlines_the_script_and_loads_nothing_from_the_network():
    html = ex.page_html(ex.TEMPLATE.read_text(), ex.SCRIPT.read_text())
    assert ex.SCRIPT_TOKEN not in html and "window.explorer = {" in html
    assert re.findall(r'(?:src|href)="([^"]*)"', html) == ["data:,", "data.js"]   # the icon, the data
    assert "http://" not in html and "https://" not in html
    with pytest.raises(ValueError, match="EXPLORER_SCRIPT"):
        ex.page_html("<html></html>", "")
    assert "<\\/script>" in ex.page_html(ex.SCRIPT_TOKEN, "s = '</script>';")


def test_the_page_data_is_the_stage_outputs(workdir):
    from stages.explorer import main
    fake = fake_stage_outputs(Path.cwd())
    data = main(validate(workdir))
    assert read_page_data(paths.EXPLORER_DIR) == data
    assert data["classes"] == CLASSES and data["k"] == workdir["tsne"]["knn_k"] and data["default_layer"] == "dense"
    assert data["index"] == fake["index"].tolist() and data["label"] == fake["y"].tolist()
    for name, m in fake["models"].items():
        page = data["model"][name]
        for i in (0, 17, N_POINTS - 1):
            assert page["predicted"][i] == int(m["softmax"][i].argmax())
            assert page["confidence"][i] == pytest.approx(m["softmax"][i].max(), abs=5e-4)
            for layer in ANALYSED_LAYERS:
                for d in (2, 3):
                    want = m["coords"][f"{layer}_{d}d"]
                    got = page["coords"][layer][f"{d}d"][i * d:(i + 1) * d]
                    np.testing.assert_allclose(got, want[i], atol=5e-4 * np.abs(want).max())
        assert page["metrics"] == m["details"]
    x_test = np.load(paths.TEST)["x"]
    from PIL import Image
    sprite = np.asarray(Image.open(paths.EXPLORER_DIR / ex.SPRITE).convert("RGB"), np.float64)
    cols = data["sprite"]["columns"]
    for i in (0, 17, N_POINTS - 1):
        r, c = divmod(i, cols)
        cell = sprite[r * 32:(r + 1) * 32, c * 32:(c + 1) * 32]
        assert np.abs(cell - x_test[fake["index"][i]]).mean() < 8             # image i is test image index[i]
    assert sorted(p.name for p in paths.EXPLORER_DIR.iterdir()) == ["data.js", "index.html", "sprite.jpg"]


def test_the_same_inputs_give_byte_identical_files(workdir):
    from stages.explorer import main
    fake_stage_outputs(Path.cwd())
    main(validate(workdir))
    first = {p.name: p.read_bytes() for p in paths.EXPLORER_DIR.iterdir()}
    shutil.rmtree(paths.EXPLORER_DIR)
    main(validate(workdir))
    assert {p.name: p.read_bytes() for p in paths.EXPLORER_DIR.iterdir()} == first
    fake_stage_outputs(Path.cwd(), seed=1)                                    # control: other inputs
    main(validate(workdir))
    assert (paths.EXPLORER_DIR / ex.DATA).read_bytes() != first[ex.DATA]


@pytest.mark.parametrize("breakage, message", [
    (lambda: paths.tsne_embeddings("center_loss").unlink(),
     r"data/tsne/center_loss.npz: not found; run `dvc repro tsne@center_loss` first"),
    (lambda: paths.activations_file("baseline").unlink(),
     r"data/activations/baseline.npz: not found; run `dvc repro extract_activations@baseline` first"),
    (lambda: paths.tsne_details("baseline").unlink(),
     r"plots/tsne/baseline/details.json: not found; run `dvc repro tsne@baseline` first"),
    (lambda: _resave(paths.tsne_embeddings("baseline"), drop="dense_3d"),
     r"data/tsne/baseline.npz: lacks dense_3d; run `dvc repro tsne@baseline` to rebuild it"),
    (lambda: _resave(paths.tsne_embeddings("baseline"), index=lambda i: i[::-1]),
     r"data/tsne/baseline.npz: its points are not the test images of data/activations/baseline.npz; "
     r"run `dvc repro tsne@baseline`"),
    (lambda: [_resave(f("center_loss"), index=lambda i: i + 1)            # both of a model, consistently
              for f in (paths.activations_file, paths.tsne_embeddings)],
     r"data/activations/center_loss.npz: holds other test images than data/activations/baseline.npz; "
     r"run `dvc repro extract_activations@center_loss`"),
    (lambda: _resave(paths.activations_file("baseline"), dense_1=lambda p: p[:, :5]),
     r"data/activations/baseline.npz: does not match data/test.npz and data/classes.json \(10 classes\); "
     r"run `dvc repro extract_activations@baseline`"),
])
def test_missing_or_stale_inputs_are_one_line_errors_and_nothing_is_written(workdir, breakage, message):
    from stages.explorer import main
    fake_stage_outputs(Path.cwd())
    breakage()
    with pytest.raises(StageError, match=f"^{message}$"):
        main(validate(workdir))
    assert not paths.EXPLORER_DIR.exists()


def _resave(path: Path, drop: str | None = None, **change) -> None:
    """Rewrite an .npz without `drop` and with each array named in `change` mapped by its function."""
    with np.load(path) as f:
        arrays = {k: change[k](f[k]) if k in change else f[k] for k in f.files if k != drop}
    np.savez(path, **arrays)


def test_a_missing_input_is_one_line_from_the_process(workdir):
    from tests.conftest import assert_one_line_error, stage_process
    fake_stage_outputs(Path.cwd())
    paths.tsne_embeddings("baseline").unlink()
    r = stage_process(Path.cwd(), "explorer")
    assert_one_line_error(r, r"error: data/tsne/baseline.npz: not found; run `dvc repro tsne@baseline` first")
    assert not paths.EXPLORER_DIR.exists()


def test_atomic_dir_replaces_the_folder_whole_or_not_at_all(tmp_path):
    target = tmp_path / "page"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "new.txt").write_text("half")
            raise RuntimeError("interrupted")
    assert [p.name for p in target.iterdir()] == ["old.txt"]
    with atomic_dir(target) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["page"]                   # no temp folder left


def test_thumbnails_of_another_side_are_resized_into_the_sprite_cells():
    from study.explorer import CELL, sprite_sheet
    from study.image_decode import resize
    rng = np.random.default_rng(1)
    small = rng.integers(0, 256, (3, 24, 24, 3), dtype=np.uint8)
    sheet = sprite_sheet(small)
    assert sheet.shape == (2 * CELL, 2 * CELL, 3)
    assert np.array_equal(sheet[CELL:2 * CELL, :CELL], resize(small[2], CELL))   # image 2: row 1, column 0
