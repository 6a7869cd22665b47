"""The explorer page of the tiny pipeline (`pipeline_repo`: a real `dvc repro`), opened from file://
in headless Chromium driven over the DevTools protocol (tests/devtools.py) with real mouse input.

Needs /usr/bin/chromium (.ci/run installs it) and skips without it. Each test opens the page
afresh. Expected values come from the stage outputs, not from the page.
"""
import json
import re
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest

from study.model import ANALYSED_LAYERS
from tests.devtools import Page
from tests.test_plots_page import CHROMIUM, FLAGS

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(),
                                 reason=f"{CHROMIUM} not found (apt-get install -y chromium; .ci/run does)")]
WIDTH, HEIGHT = 1400, 1000
HOME = {"yaw": 0.6, "pitch": 0.35, "zoom": 1, "panX": 0, "panY": 0}


def png(data: bytes) -> np.ndarray:
    """(H, W, 3) float array of PNG bytes."""
    from PIL import Image
    return np.asarray(Image.open(BytesIO(data)).convert("RGB"), np.float64)


def changed(a: np.ndarray, b: np.ndarray) -> int:
    """Pixels of two same-sized screenshots that differ visibly (by more than 30 in some channel)."""
    assert a.shape == b.shape
    return int((np.abs(a - b).max(axis=2) > 30).sum())


@pytest.fixture(scope="module")
def outputs(pipeline_repo) -> dict:
    """The stage outputs the page is built from, read with numpy and json only."""
    root = Path(pipeline_repo)
    out = {"root": root, "page": root / "plots/explorer/index.html",
           "classes": json.loads((root / "data/classes.json").read_text()),
           "x_test": np.load(root / "data/test.npz")["x"]}
    for name in ("baseline", "center_loss"):
        out[name] = {"acts": dict(np.load(root / f"data/activations/{name}.npz")),
                     "tsne": dict(np.load(root / f"data/tsne/{name}.npz")),
                     "details": json.loads((root / f"plots/tsne/{name}/details.json").read_text())}
    return out


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    page = Page(CHROMIUM, FLAGS, tmp_path_factory.mktemp("chrome-profile"), WIDTH, HEIGHT)
    yield page
    page.close()


@pytest.fixture
def page(browser, outputs):
    """The explorer page freshly opened; fails the test on any console error it logs."""
    browser.open(outputs["page"].as_uri())
    yield browser
    assert browser.console_errors() == []
    assert browser.evaluate("window.explorerErrors") == []


def panel_box(page, i: int) -> dict:
    """The clip {x, y, width, height} of panel i's canvas, CSS px."""
    return page.evaluate(f"(function () {{ var r = window.explorer.panels[{i}].canvas.getBoundingClientRect();"
                         f" return {{x: r.left, y: r.top, width: r.width, height: r.height}}; }})()")


def centre(page, selector: str) -> tuple[float, float]:
    """The page coordinates of the centre of the element `selector` (to click it with the mouse)."""
    return tuple(page.evaluate(f"(function () {{ var r = document.querySelector({json.dumps(selector)})"
                               f".getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2]; }})()"))


def lonely_point(page, panel: int = 0) -> int:
    """A drawn point of `panel` whose nearest other drawn point is farthest on screen (unambiguous to hover)."""
    return page.evaluate(f"""(function () {{
      var p = window.explorer.panels[{panel}], best = -1, bestD = -1;
      p.drawn.forEach(function (i) {{
        var d = Infinity;
        p.drawn.forEach(function (j) {{ if (j !== i) {{ d = Math.min(d, Math.hypot(p.screen[i][0] - p.screen[j][0],
                                                                                 p.screen[i][1] - p.screen[j][1])); }} }});
        var s = p.screen[i];
        if (d > bestD && s[0] > 60 && s[1] > 60 && s[0] < p.width - 220 && s[1] < p.height - 140) {{ best = i; bestD = d; }}
      }});
      return best; }})()""")


def test_page_loads_from_file_with_no_network_request_and_draws_both_models(page, outputs):
    urls = page.requested_urls()
    folder = outputs["page"].parent.as_uri()
    assert urls[:2] == [outputs["page"].as_uri(), f"{folder}/data.js"], urls
    assert all(u.startswith(folder + "/") for u in urls), urls                  # file:// beside the page only
    assert page.evaluate("window.explorer.data.models") == ["baseline", "center_loss"]
    n = len(outputs["baseline"]["acts"]["index"])
    assert page.evaluate("window.explorer.panels.map(function (p) { return p.drawn.length; })") == [n, n]
    for i in (0, 1):
        shot = png(page.screenshot(panel_box(page, i)))
        assert (shot.std(axis=2) > 40).sum() > 5 * n                             # coloured points drawn


def test_dragging_one_panel_turns_both_with_equal_cameras(page):
    boxes = [panel_box(page, i) for i in (0, 1)]
    before = [png(page.screenshot(b)) for b in boxes]
    b = boxes[0]
    page.drag(b["x"] + b["width"] / 2, b["y"] + b["height"] / 2, 150, 60)
    after = [png(page.screenshot(b)) for b in boxes]
    for a, z in zip(before, after):
        assert changed(a, z) > 200                                              # both panels redrawn
    cams = page.evaluate("window.explorer.panels.map(function (p) { return p.camera; })")
    assert cams[0] == cams[1] and cams[0] != HOME
    assert cams[0]["yaw"] == pytest.approx(HOME["yaw"] + 150 * 0.01)
    # the 2D view: a drag moves (pans) both views the same way
    page.click(*centre(page, 'button[data-key="dim"][data-value="2"]'))
    page.drag(b["x"] + 100, b["y"] + 100, 40, -30)
    cams2 = page.evaluate("window.explorer.panels.map(function (p) { return p.camera; })")
    assert page.evaluate("window.explorer.state.dim") == 2
    assert cams2[0] == cams2[1] and (cams2[0]["panX"], cams2[0]["panY"]) == (40, -30)


def test_hovering_a_point_shows_its_test_image_true_class_and_both_predictions(page, outputs):
    i = lonely_point(page)
    acts = {m: outputs[m]["acts"] for m in ("baseline", "center_loss")}
    classes, test_index = outputs["classes"], int(acts["baseline"]["index"][i])
    page.mouse("mouseMoved", *page.evaluate(f"window.explorer.pagePoint(0, {i})"))
    tip = page.evaluate("document.getElementById('tooltip').innerText")
    assert page.evaluate("document.getElementById('tooltip').getAttribute('data-point')") == str(i)
    assert f"test image #{test_index}" in tip
    assert f"true class: {classes[int(acts['baseline']['y'][i])]}" in tip
    for name, a in acts.items():
        p = a["dense_1"][i]
        assert f"{name}: {classes[int(p.argmax())]} ({round(float(p.max()) * 100)}%)" in tip
    # the thumbnail shows that test image: wait for the sprite, then compare pixels (shown 3x, pixelated)
    page.evaluate("new Promise(function (ok) { var im = new Image(); im.onload = ok; im.src = 'sprite.jpg'; })")
    page.mouse("mouseMoved", *page.evaluate(f"window.explorer.pagePoint(0, {i})"))
    box = page.evaluate("(function () { var t = document.querySelector('#tooltip .thumb'), r = t.getBoundingClientRect();"
                        " return {x: r.left + t.clientLeft, y: r.top + t.clientTop, width: t.clientWidth,"
                        " height: t.clientHeight}; })()")                  # inside its border
    assert (box["width"], box["height"]) == (96, 96)
    shown = png(page.screenshot(box))[1::3, 1::3]                               # (32, 32, 3), one per image px
    assert np.abs(shown - outputs["x_test"][test_index]).mean() < 10
    other = outputs["x_test"][int(acts["baseline"]["index"][(i + 1) % len(acts["baseline"]["index"])])]
    assert np.abs(shown - other).mean() > 20                                    # control: not any image


def test_switching_the_layer_shows_that_layers_embeddings_and_metrics(page, outputs):
    assert page.evaluate("window.explorer.state.layer") == "dense"
    before = png(page.screenshot(panel_box(page, 0)))
    where = page.evaluate("window.explorer.pagePoint(0, 0)")
    page.click(*centre(page, 'button[data-key="layer"][data-value="conv2d"]'))
    assert page.evaluate("window.explorer.state.layer") == "conv2d"
    assert changed(png(page.screenshot(panel_box(page, 0))), before) > 200
    assert page.evaluate("window.explorer.pagePoint(0, 0)") != where
    headers = page.evaluate("window.explorer.panels.map(function (p) { return p.title.textContent + ' | ' + "
                            "p.metrics.textContent; })")
    for name, text in zip(("baseline", "center_loss"), headers):
        m = outputs[name]["details"]["conv2d"]
        assert text.startswith(f"{name}: 3D t-SNE of conv2d | ")
        assert f"kNN accuracy (3D, k = 5) {m['knn_accuracy_3d']:.3f}" in text
        assert f"trustworthiness (2D) {m['trustworthiness_2d']:.3f}" in text and f"silhouette (2D) {m['silhouette_2d']:.3f}" in text


def test_clicking_a_class_in_the_legend_hides_its_points_in_both_panels(page, outputs):
    y = outputs["baseline"]["acts"]["y"]
    i = lonely_point(page)
    k = int(y[i])
    before = png(page.screenshot(panel_box(page, 1)))
    page.click(*centre(page, f'#legend button[data-class="{k}"]'))
    drawn = page.evaluate("window.explorer.panels.map(function (p) { return p.drawn; })")
    for d in drawn:
        assert len(d) == len(y) - int((y == k).sum()) and k not in set(y[d].tolist())
    assert changed(png(page.screenshot(panel_box(page, 1))), before) > 5 * int((y == k).sum())
    assert page.evaluate(f"window.explorer.pagePoint(0, {i})") is None
    page.click(*centre(page, f'#legend button[data-class="{k}"]'))              # and back
    assert page.evaluate("window.explorer.panels[0].drawn.length") == len(y)


def test_colouring_by_correct_or_wrong_follows_each_models_prediction(page, outputs):
    page.click(*centre(page, 'button[data-key="colour"][data-value="correct"]'))
    for m, name in enumerate(("baseline", "center_loss")):
        acts = outputs[name]["acts"]
        top = page.evaluate(f"window.explorer.panels[{m}].drawn.slice(-1)[0]")   # drawn last: nothing covers it
        sx, sy = page.evaluate(f"window.explorer.panels[{m}].screen[{top}].slice(0, 2)")
        r, g, _, _ = page.evaluate(f"Array.from(window.explorer.panels[{m}].ctx.getImageData("
                                   f"Math.round({sx}), Math.round({sy}), 1, 1).data)")
        right = int(acts["dense_1"][top].argmax()) == int(acts["y"][top])
        assert (g > r) == right, (name, top, r, g)


def test_clicking_a_point_shows_it_in_both_models_with_sklearns_nearest_neighbours(page, outputs):
    from sklearn.neighbors import NearestNeighbors
    i = lonely_point(page)
    page.click(*page.evaluate(f"window.explorer.pagePoint(0, {i})"))
    assert page.evaluate("window.explorer.state.selected") == i
    data = page.evaluate("window.explorer.data")
    k = data["k"]
    for name in ("baseline", "center_loss"):
        coords = np.array(data["model"][name]["coords"]["dense"]["3d"]).reshape(-1, 3)
        dist, near = NearestNeighbors(n_neighbors=k + 2).fit(coords).kneighbors(coords[i:i + 1])
        want = [int(j) for j in near[0] if j != i][:k]
        assert dist[0][k] < dist[0][k + 1]                  # the k nearest are unambiguous (no tie at the k-th)
        shown = page.evaluate(f"Array.from(document.querySelectorAll('#selection .neighbours[data-model=\"{name}\"] "
                              f"figure')).map(function (f) {{ return +f.getAttribute('data-point'); }})")
        assert sorted(shown) == sorted(want)
        assert page.evaluate(f"window.explorer.neighbours({json.dumps(name)}, {i})") == want   # nearest first
    text = page.evaluate("document.getElementById('selection').innerText")
    assert f"test image #{int(outputs['baseline']['acts']['index'][i])}" in text


def test_the_page_data_is_the_stage_outputs_of_the_tiny_pipeline(outputs):
    from tests.test_explorer import read_page_data
    data = read_page_data(outputs["page"].parent)
    assert data["classes"] == outputs["classes"]
    for name in ("baseline", "center_loss"):
        acts, tsne, page = outputs[name]["acts"], outputs[name]["tsne"], data["model"][name]
        assert data["index"] == acts["index"].tolist() and data["label"] == acts["y"].tolist()
        for layer in ANALYSED_LAYERS:
            tsv = (outputs["root"] / f"plots/tsne/{name}/2d/{layer}.tsv").read_text().splitlines()[1:]
            for i in (0, 7, len(tsv) - 1):
                x, y, cls = tsv[i].split("\t")
                assert cls == outputs["classes"][data["label"][i]]
                assert page["coords"][layer]["2d"][2 * i:2 * i + 2] == pytest.approx(
                    [float(x), float(y)], abs=1e-3 * float(np.abs(tsne[f"{layer}_2d"]).max()))
                assert page["coords"][layer]["3d"][3 * i:3 * i + 3] == pytest.approx(
                    tsne[f"{layer}_3d"][i].tolist(), abs=5e-4 * float(np.abs(tsne[f"{layer}_3d"]).max()))
                assert page["predicted"][i] == int(acts["dense_1"][i].argmax())
    assert re.search(r"^explorer: done in ", (outputs["root"].parent / "repro.log").read_text(), re.M)
