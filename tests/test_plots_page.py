"""The offline `dvc plots show` page, opened in headless Chromium: every plot renders, no error.

Needs /usr/bin/chromium (Debian's `chromium`; .ci/run installs it) and node_modules/ from
`npm ci`; installs nothing itself and skips with the reason when either is absent.
The page comes from the lead's `pipeline_repo` fixture (a tiny real `dvc repro`) when
conftest.py provides it, else from a fake repo holding this repository's top-level
`plots:` definitions and small well-formed files at every path they list.
"""
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import yaml

from study import paths, plots_page
from study.errors import StageError
from study.model import ANALYSED_LAYERS
from tests.conftest import REPO

CHROMIUM = Path("/usr/bin/chromium")
NODE_MODULES = REPO / "node_modules"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIRTUAL_TIME_MS = "20000"   # virtual time for vegaEmbed's promises to settle
IMAGE_EXT = (".png", ".jpg", ".jpeg", ".gif", ".svg")

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason=f"{CHROMIUM} not found (apt-get install -y chromium; .ci/run does)"),
    pytest.mark.skipif(not (NODE_MODULES / "vega").exists(),
                       reason=f"{NODE_MODULES}/vega not found (run `npm ci` in the repository root)"),
]


def small_png(path: Path, seed: int) -> None:
    """A 24 x 32 random RGB PNG."""
    import matplotlib.pyplot as plt
    path.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(path, np.random.default_rng(seed).random((24, 32, 3)))


def write_fake_outputs(root: Path) -> None:
    """The plot files the pipeline writes, small but in the agreed formats, for both models."""
    from tests.test_compare import write_training
    rng = np.random.default_rng(0)
    classes = json.loads((root / "classes.json").read_text()) if (root / "classes.json").exists() else None
    for i, name in enumerate(paths.MODEL_NAMES):
        write_training(name, 0.5 + 0.1 * i)
        for j, layer in enumerate(ANALYSED_LAYERS):
            tsv = paths.tsne_points(name, layer)
            tsv.parent.mkdir(parents=True, exist_ok=True)
            pts = rng.normal(size=(30, 2))
            names = classes or [f"class{k}" for k in range(10)]
            tsv.write_text("x\ty\tclass\n" + "".join(f"{a:.3f}\t{b:.3f}\t{names[k % 10]}\n"
                                                    for k, (a, b) in enumerate(pts)))
            small_png(paths.tsne_image_3d(name, layer), 10 * i + j)
            if layer.startswith("conv"):
                small_png(paths.tsne_surface(name, layer), 20 + 10 * i + j)
        small_png(paths.gradcam_dir(name) / "grid.png", 40 + i)
    small_png(paths.COMPARE_DIR / "curves.png", 50)
    small_png(paths.COMPARE_DIR / "confusion_matrices.png", 51)


def fake_repo(root: Path, monkeypatch) -> Path:
    """A DVC repo (no SCM) with this repository's plot definitions and templates and fake files."""
    root.mkdir()
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=root, check=True, env=dvc_env())
    shutil.copytree(REPO / ".dvc" / "plots", root / ".dvc" / "plots", dirs_exist_ok=True)
    plots = yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]
    (root / "dvc.yaml").write_text(yaml.safe_dump({"plots": plots}, sort_keys=False))
    monkeypatch.chdir(root)
    write_fake_outputs(root)
    return root


def dvc_env() -> dict:
    """Environment for the dvc CLI of the venv, without analytics."""
    import os
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    env["PATH"] = f"{REPO / '.venv' / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    return env


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """The offline template built from node_modules, in a temp file."""
    path = tmp_path_factory.mktemp("template") / "offline.html"
    path.write_text(plots_page.build(NODE_MODULES), encoding="utf8")
    return path


@pytest.fixture
def repo(request, tmp_path, monkeypatch) -> Path:
    """The lead's pipeline_repo if conftest provides it, else a fake repo."""
    try:
        return Path(request.getfixturevalue("pipeline_repo"))
    except pytest.FixtureLookupError:
        return fake_repo(tmp_path / "repo", monkeypatch)


def plots_show(repo: Path, template: Path, out: Path) -> Path:
    """Run `dvc plots show --html-template` in repo; return the page."""
    r = subprocess.run(["dvc", "plots", "show", "--html-template", str(template), "-o", str(out)],
                       cwd=repo, capture_output=True, text=True, env=dvc_env())
    assert r.returncode == 0, r.stderr
    return out / "index.html"


def chromium(args: list[str], user_dir: Path) -> str:
    """Run headless Chromium with the isolation flags; return stdout."""
    r = subprocess.run([str(CHROMIUM), *FLAGS, f"--user-data-dir={user_dir}", *args],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


class RenderedPlots(HTMLParser):
    """Collects, per element id in `ids`, whether a <canvas> or <svg> was drawn inside it."""

    def __init__(self, ids):
        super().__init__()
        self.ids, self.open, self.drawn, self.errors = set(ids), [], set(), None
        self.in_errors, self.images, self.in_text = False, 0, False
        self.texts = {i: [] for i in ids}     # per chart: the SVG <text> strings (titles, axes, legend)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id") in self.ids:
            self.open.append([a["id"], 0])
        elif self.open and tag == "div":
            self.open[-1][1] += 1
        if tag == "img":
            self.images += 1
        if tag in ("canvas", "svg") and self.open:
            self.drawn.add(self.open[-1][0])
        if a.get("id") == "plot-errors":
            self.in_errors, self.errors = True, ""
        if tag == "text" and self.open:
            self.in_text = True
            self.texts[self.open[-1][0]].append("")

    def handle_endtag(self, tag):
        if tag == "pre":
            self.in_errors = False
        if tag == "text":
            self.in_text = False
        if tag == "div" and self.open:
            if self.open[-1][1]:
                self.open[-1][1] -= 1
            else:
                self.open.pop()

    def handle_data(self, data):
        if self.in_errors:
            self.errors += data
        if self.in_text and self.open:
            self.texts[self.open[-1][0]][-1] += data


def expected_counts(repo: Path) -> tuple[int, int]:
    """(vega plots, images) that dvc.yaml's top-level plots define for the files in repo."""
    vega = images = 0
    for entry in yaml.safe_load((repo / "dvc.yaml").read_text())["plots"]:
        key = entry if isinstance(entry, str) else next(iter(entry))
        target = repo / key
        files = sorted(p for p in target.rglob("*") if p.is_file()) if target.is_dir() else [target]
        n_img = sum(f.suffix in IMAGE_EXT for f in files)
        images += n_img
        vega += len(files) - n_img if target.exists() else 1   # a named plot with y: {file: field}
    return vega, images


def render(page: Path, tmp_path: Path) -> tuple[list[str], RenderedPlots, int]:
    """Open the page in Chromium; return (vega div ids, parsed DOM, number of <img>)."""
    html = page.read_text()
    ids = re.findall(r"vegaEmbed\('#([^']+)'", html)
    dom = chromium([f"--virtual-time-budget={VIRTUAL_TIME_MS}", "--dump-dom", page.as_uri()],
                   tmp_path / "chrome-profile")
    parsed = RenderedPlots(ids)
    parsed.feed(dom)
    return ids, parsed, parsed.images   # count parsed tags: the inlined JS holds "<img" text


def test_template_inlines_dvc_renders_library_versions(template):
    text = template.read_text()
    versions = plots_page.dvc_render_versions()
    assert versions == {"vega": "5.20.2", "vega-lite": "5.2.0", "vega-embed": "6.18.2"}
    package = json.loads((REPO / "package.json").read_text())["dependencies"]
    assert package == versions                              # package.json pins exactly these
    for name, version in versions.items():
        assert f"/* {name}@{version} */" in text
    assert "cdn.jsdelivr" not in text and "{scripts}" not in text and "{plot_divs}" in text


def test_template_links_the_explorer_page_from_where_dvc_writes_the_plots_page(template):
    import posixpath

    from study.explorer import PAGE
    href = re.search(r'<p id="explorer-link"><a href="([^"]+)">', template.read_text()).group(1)
    # `dvc plots show` and `dvc plots diff` write dvc_plots/index.html by default
    assert posixpath.normpath(posixpath.join("dvc_plots", href)) == (paths.EXPLORER_DIR / PAGE).as_posix()


def test_template_refuses_wrong_versions(tmp_path):
    fake = tmp_path / "node_modules" / "vega"
    fake.mkdir(parents=True)
    (fake / "package.json").write_text('{"version": "5.30.0"}')
    with pytest.raises(StageError, match=r"vega: version 5.30.0, dvc-render uses 5.20.2; run `npm ci`"):
        plots_page.build(tmp_path / "node_modules")


@pytest.mark.slow
def test_every_plot_renders_offline_without_errors(repo, template, tmp_path):
    page = plots_show(repo, template, tmp_path / "page")
    html = page.read_text()
    assert "cdn.jsdelivr" not in html                       # nothing to fetch from the network
    ids, parsed, n_img = render(page, tmp_path)
    n_vega, n_images = expected_counts(repo)
    assert len(ids) == n_vega and n_img == n_images, (ids, n_img)
    assert parsed.drawn == set(ids), f"not drawn: {sorted(set(ids) - parsed.drawn)}"
    assert parsed.errors == "", parsed.errors
    shot = tmp_path / "page.png"
    chromium([f"--virtual-time-budget={VIRTUAL_TIME_MS}", "--window-size=1400,2400",
              f"--screenshot={shot}", page.as_uri()], tmp_path / "chrome-profile")
    assert shot.stat().st_size > 20_000  # kept in pytest's tmp dir (/tmp/pytest-of-<user>/) to look at


def labelled_plots(repo: Path) -> dict[str, dict]:
    """{plot id: its title, x_label, y_label} of dvc.yaml's plots that set them."""
    out = {}
    for entry in yaml.safe_load((repo / "dvc.yaml").read_text())["plots"]:
        if isinstance(entry, dict):
            (key, props), = entry.items()
            out[key] = {k: props[k] for k in ("title", "x_label", "y_label") if k in props}
    return out


@pytest.mark.slow
def test_charts_show_the_titles_axis_labels_and_short_legends_of_dvc_yaml(repo, template, tmp_path):
    page = plots_show(repo, template, tmp_path / "page")
    ids, parsed, _ = render(page, tmp_path)
    labelled = labelled_plots(repo)
    assert labelled and all(set(p) == {"title", "x_label", "y_label"} for p in labelled.values())
    for key, props in labelled.items():
        charts = [i for i in ids if props["title"] in parsed.texts[i]]
        assert len(charts) == 1, f"{key}: title {props['title']!r} drawn {len(charts)} times"
        texts = parsed.texts[charts[0]]
        assert props["x_label"] in texts and props["y_label"] in texts, (key, texts)
    every = [t for i in ids for t in parsed.texts[i]]
    assert not [t for t in every if ".tsv" in t or ".json" in t or "plots/" in t]   # no file paths
    curves = parsed.texts[next(i for i in ids if labelled["accuracy"]["title"] in parsed.texts[i])]
    assert {"baseline train accuracy", "baseline val accuracy", "center_loss train accuracy",
            "center_loss val accuracy"} <= set(curves)                                # the legend
    epochs = [t for t in curves if re.fullmatch(r"[0-9.]+", t) and float(t) >= 1 and "." not in t]
    assert epochs and not [t for t in curves if re.fullmatch(r"[0-9]+\.[0-9]+", t) and float(t) > 1.0]


@pytest.mark.slow
def test_a_missing_library_is_caught(repo, tmp_path):
    """Control: without vega-lite the page must show an error and draw nothing."""
    versions = plots_page.dvc_render_versions()
    broken = tmp_path / "broken.html"
    broken.write_text(plots_page.template_html({
        f"vega@{versions['vega']}": (NODE_MODULES / "vega/build/vega.min.js").read_text()}))
    ids, parsed, _ = render(plots_show(repo, broken, tmp_path / "page"), tmp_path)
    assert ids and not parsed.drawn
    assert "script error" in parsed.errors and "vegaEmbed" in parsed.errors


LAYOUT_PROBE = """<script>
window.addEventListener("load", function () { setTimeout(function () {
  var out = {width: window.innerWidth, images: []};
  document.querySelectorAll("img").forEach(function (img) {
    var box = img.closest('div[style*="inline-block"]'), r = img.getBoundingClientRect();
    out.images.push({rev: box ? box.querySelector("p").textContent : null,
                     plot: box ? box.parentElement.querySelector("p").textContent : null,
                     right: r.right, width: r.width, loaded: img.naturalWidth > 0});
  });
  var pre = document.createElement("pre");
  pre.id = "layout-probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
}, 3000); });
</script>"""


def test_plots_diff_of_two_variants_names_both_and_fits_the_window(variant_sweep, template, tmp_path):
    from tests.test_run_cache import sweep_names
    names = sweep_names(variant_sweep, 1)
    a, b = names["center"], names["island"]
    r = subprocess.run(["dvc", "plots", "diff", a, b, "--html-template", str(template), "-o", str(tmp_path / "page")],
                       cwd=variant_sweep, capture_output=True, text=True, env=dvc_env())
    assert r.returncode == 0, r.stderr
    page = tmp_path / "page" / "index.html"
    probed = tmp_path / "page" / "probed.html"                  # beside it: the images' relative paths hold
    head, body_end, tail = page.read_text().rpartition("</body>")      # the libraries' code holds the tag too
    probed.write_text(head + LAYOUT_PROBE + body_end + tail)
    dom = chromium([f"--virtual-time-budget={VIRTUAL_TIME_MS}", "--window-size=1400,2400", "--dump-dom",
                    probed.as_uri()], tmp_path / "chrome-profile")
    ids = re.findall(r"vegaEmbed\('#([^']+)'", page.read_text())
    parsed = RenderedPlots(ids)
    parsed.feed(dom)
    assert parsed.errors == "" and parsed.drawn == set(ids), parsed.errors
    labelled = labelled_plots(variant_sweep)
    for key in ("accuracy", "cross_entropy", "center_loss_terms", "plots/tsne/center_loss/2d/dense.tsv",
                "plots/train_center_loss/plots/sklearn/confusion_matrix.json"):
        chart = next(i for i in ids if labelled[key]["title"] in parsed.texts[i])
        assert {a, b} <= set(parsed.texts[chart]), (key, parsed.texts[chart])   # legend / panel titles
    layout = json.loads(re.search(r'<pre id="layout-probe">(.*?)</pre>', dom, re.S).group(1))
    assert layout["width"] == 1400
    shown = {(img["plot"], img["rev"]) for img in layout["images"]}
    for plot in ("center_loss: Grad-CAM heat maps per class", "baseline: 3D t-SNE of dense",
                 "center_loss: 3D t-SNE of conv2d_4"):
        assert {rev for p, rev in shown if p.startswith(plot)} == {a, b}, (plot, shown)
    assert all(img["loaded"] and img["width"] > 100 for img in layout["images"])
    assert max(img["right"] for img in layout["images"]) <= 1400                       # nothing cut off
    chromium([f"--virtual-time-budget={VIRTUAL_TIME_MS}", "--window-size=1400,2400",
              f"--screenshot={tmp_path / 'diff.png'}", page.as_uri()], tmp_path / "chrome-profile")
