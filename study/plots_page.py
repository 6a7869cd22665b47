"""An offline HTML template for `dvc plots show` / `dvc plots diff`.

dvc-render's page loads vega, vega-lite and vega-embed from cdn.jsdelivr.net, which
offline machines cannot reach. package.json pins the same versions; `npm ci` puts
them in node_modules/ (never committed), and

    .venv/bin/python -m study.plots_page

writes TEMPLATE, a page skeleton with the three minified libraries inlined (so the
generated page works wherever it is opened or copied), and points DVC at it with
`dvc config --local plots.html_template` (a path relative to .dvc/). The template
has no `{scripts}` placeholder, so DVC's CDN <script> tags are dropped. A small
script in the template shows any script error, rejected vegaEmbed promise or
failed image load in a red box at the top of the page (id "plot-errors"), charts are drawn
as SVG (SVG_DEFAULT), image plots wrap and scale to the window, titled by what they show
(IMAGE_CSS, IMAGE_TITLES), and a line at the top links the embedding explorer (EXPLORER).
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from study.errors import StageError
from study.files import atomic_path
from study.paths import EXPLORER_DIR

NODE_MODULES = Path("node_modules")
TEMPLATE = NODE_MODULES / "dvc-plots-offline.html"   # lives and dies with node_modules
# (npm package, its UMD build: the file jsdelivr serves for `npm/<package>@<version>`)
LIBRARIES = (("vega", "build/vega.min.js"), ("vega-lite", "build/vega-lite.min.js"),
             ("vega-embed", "build/vega-embed.min.js"))
PLACEHOLDERS = ("{plot_divs}", "{scripts}", "{refresh_tag}")

ERROR_HOOK = """
window.plotErrors = [];
function reportPlotError(text) {
  window.plotErrors.push(text);
  var box = document.getElementById("plot-errors");
  if (box) { box.hidden = false; box.textContent = window.plotErrors.join("\\n"); }
}
window.addEventListener("error", function (e) {
  var t = e.target;
  if (t && t !== window && (t.src || t.href)) { reportPlotError("failed to load " + (t.src || t.href)); }
  else { reportPlotError("script error: " + e.message + " (" + e.filename + ":" + e.lineno + ")"); }
}, true);
window.addEventListener("unhandledrejection", function (e) {
  reportPlotError("vega error: " + (e.reason && e.reason.message ? e.reason.message : e.reason));
});
document.addEventListener("DOMContentLoaded", function () {
  var box = document.getElementById("plot-errors");
  if (window.plotErrors.length) { box.hidden = false; box.textContent = window.plotErrors.join("\\n"); }
});
"""

# DVC's generated calls pass vegaEmbed no options: default them to the SVG renderer, so every
# chart's title, axis labels and legend are text in the page (selectable, and readable by tests).
SVG_DEFAULT = """
(function () {
  var embed = window.vegaEmbed;
  if (!embed) { return; }   // a library failed to load: the error box says so
  window.vegaEmbed = function (el, spec, opt) {
    return embed(el, spec, Object.assign({renderer: "svg"}, opt || {}));
  };
})();
"""

# dvc-render puts each image plot in a no-wrap box (one image per revision, side by side) under its
# file path: let the revisions wrap and scale each image to its box, so `dvc plots diff a b` fits
# a 1,400 px window, and title each plot by what it shows (the path stays, smaller).
IMAGE_CSS = """
        div[style*="white-space: nowrap"] { white-space: normal !important; display: flex; flex-wrap: wrap;
            justify-content: center; align-items: flex-start; }
        div[style*="white-space: nowrap"] > p:first-child { flex-basis: 100%; font-weight: bold; }
        div[style*="white-space: nowrap"] > p:first-child small { font-weight: normal; color: #555; }
        div[style*="inline-block"] { flex: 1 1 560px; max-width: 100%; box-sizing: border-box; }
        div[style*="inline-block"] > p { font-weight: bold; }
        div[style*="inline-block"] img { max-width: 100%; height: auto; }
"""
IMAGE_TITLES = """
var IMAGE_TITLES = [
  [/^.*tsne\\/([a-z_]+)\\/3d\\/([a-z0-9_]+)[.]png$/, "$1: 3D t-SNE of $2"],
  [/^.*tsne\\/([a-z_]+)\\/surface\\/([a-z0-9_]+)[.]png$/, "$1: feature maps of $2 as surfaces"],
  [/^.*gradcam\\/([a-z_]+)\\/grid[.]png$/, "$1: Grad-CAM heat maps per class"]
];
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll('div[style*="white-space: nowrap"] > p:first-child').forEach(function (p) {
    var path = p.textContent.trim();
    for (var i = 0; i < IMAGE_TITLES.length; i++) {
      if (IMAGE_TITLES[i][0].test(path)) {
        p.textContent = path.replace(IMAGE_TITLES[i][0], IMAGE_TITLES[i][1]) + " ";
        var small = document.createElement("small");
        small.textContent = "(" + path + ")";
        p.appendChild(small);
        return;
      }
    }
  });
});
"""

PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
    <script>%(hook)s</script>
%(libraries)s
    <script>%(svg)s</script>
    <script>%(titles)s</script>
    <style>
        table { border-spacing: 15px; }%(image_css)s
        #plot-errors { color: #b00; border: 2px solid #b00; padding: 8px; white-space: pre-wrap; }
    </style>
</head>
<body>
    <pre id="plot-errors" hidden></pre>
    %(explorer)s
    {plot_divs}
</body>
</html>
"""


# The explorer stage's page, linked from the top of the plots page (relative to dvc_plots/index.html,
# where `dvc plots show` and `dvc plots diff` write it by default).
EXPLORER_LINK = "../" + (EXPLORER_DIR / "index.html").as_posix()
EXPLORER = (f'<p id="explorer-link"><a href="{EXPLORER_LINK}">Embedding explorer</a>: both models\' t-SNE of '
            f'each layer in rotatable 3D, with the test image under the cursor '
            f'(<code>{EXPLORER_DIR.as_posix()}/index.html</code>, the workspace\'s; written by the '
            f'<code>explorer</code> stage)</p>')


def dvc_render_versions() -> dict[str, str]:
    """{package: version} of the Vega libraries dvc-render's page loads from its CDN."""
    from dvc_render.vega import VegaRenderer
    return dict(re.findall(r"npm/([a-z-]+)@([0-9.]+)", VegaRenderer.SCRIPTS))


def installed_version(node_modules: Path, package: str) -> str | None:
    """The version of an npm package under node_modules, or None if absent."""
    meta = node_modules / package / "package.json"
    return json.loads(meta.read_text())["version"] if meta.exists() else None


def check_installed(node_modules: Path) -> None:
    """Each library installed at dvc-render's version, else a one-line StageError."""
    for package, version in dvc_render_versions().items():
        found = installed_version(node_modules, package)
        if found != version:
            raise StageError(f"{node_modules / package}: version {found or 'not installed'}, "
                             f"dvc-render uses {version}; run `npm ci` in the repository root")


def inline_script(name: str, code: str) -> str:
    """A <script> element holding `code`, safe inside HTML and DVC's placeholder replace."""
    for placeholder in PLACEHOLDERS:
        if placeholder in code:
            raise StageError(f"{name}: contains {placeholder}, which DVC would replace")
    code = code.replace("</script", "<\\/script").replace("<!--", "<\\!--")
    return f"    <script>/* {name} */\n{code}\n    </script>"


def template_html(scripts: dict[str, str]) -> str:
    """The page template with the given {name: JS source} inlined before the plots."""
    libraries = "\n".join(inline_script(name, code) for name, code in scripts.items())
    return PAGE % {"hook": ERROR_HOOK, "libraries": libraries, "svg": SVG_DEFAULT, "titles": IMAGE_TITLES,
                   "image_css": IMAGE_CSS, "explorer": EXPLORER}


def build(node_modules: Path = NODE_MODULES) -> str:
    """The offline template from node_modules (versions checked against dvc-render)."""
    check_installed(node_modules)
    versions = dvc_render_versions()
    return template_html({f"{p}@{versions[p]}": (node_modules / p / f).read_text(encoding="utf8")
                          for p, f in LIBRARIES})


def main() -> Path:
    """Write TEMPLATE and set it as this clone's `plots.html_template`."""
    with atomic_path(TEMPLATE) as tmp:
        tmp.write_text(build(), encoding="utf8")
    subprocess.run([sys.executable, "-m", "dvc", "config", "--local", "plots.html_template",
                    str(Path("..") / TEMPLATE)], check=True)   # relative to .dvc/
    print(f"wrote {TEMPLATE}; `dvc plots show` now renders offline")
    return TEMPLATE


if __name__ == "__main__":
    from study.stage import run_stage
    run_stage(main)
