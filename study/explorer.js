/* The embedding explorer: both models' t-SNE of one layer side by side on 2D canvases.
   One orbit camera per panel; moving one copies its state to the other (linked cameras).
   Hover: the test image and both models' predictions. Click: that image in both models with
   its k nearest neighbours in the shown embedding. Data: window.EXPLORER_DATA (data.js,
   written by stages/explorer.py); window.explorer exposes the state for tests. */
(function () {
  "use strict";
  var D = window.EXPLORER_DATA;
  if (!D) { throw new Error("data.js did not load; run `dvc repro explorer`"); }
  var N = D.index.length;
  var CORRECT = "#1a9850", WRONG = "#d73027", EDGE = "#d0d0d0";
  var DIST = 5;            // camera distance, in radii of the point cloud: a mild perspective
  var PICK_PX = 8;         // hover and click reach, CSS px
  var ROTATE = 0.01;       // radians per dragged px
  var HOME = {yaw: 0.6, pitch: 0.35, zoom: 1, panX: 0, panY: 0};
  var state = {layer: D.default_layer, dim: 3, colour: "class", hidden: {}, hover: null, selected: null};
  var panels = [], unitCache = {}, drag = null;

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) { e.textContent = text; }
    return e;
  }

  function fmt(v, digits) { return typeof v === "number" ? v.toFixed(digits) : "–"; }

  function coords(model) { return D.model[model].coords[state.layer][state.dim + "d"]; }

  // The shown embedding centred on its bounding box and scaled into the unit sphere, (N * 3).
  function unitPoints(model) {
    var key = model + "/" + state.layer + "/" + state.dim, d = state.dim, src = coords(model);
    if (unitCache[key]) { return unitCache[key]; }
    var lo = [Infinity, Infinity, Infinity], hi = [-Infinity, -Infinity, -Infinity], out = new Float64Array(N * 3);
    var i, a, r2 = 0, s;
    for (i = 0; i < N; i++) {
      for (a = 0; a < d; a++) { lo[a] = Math.min(lo[a], src[i * d + a]); hi[a] = Math.max(hi[a], src[i * d + a]); }
    }
    for (i = 0; i < N; i++) {
      for (s = 0, a = 0; a < d; a++) { out[i * 3 + a] = src[i * d + a] - (lo[a] + hi[a]) / 2; s += out[i * 3 + a] * out[i * 3 + a]; }
      r2 = Math.max(r2, s);
    }
    for (i = 0; i < N * 3; i++) { out[i] /= r2 > 0 ? Math.sqrt(r2) : 1; }
    return (unitCache[key] = out);
  }

  // Screen position (CSS px in the canvas), depth and perspective scale of a unit-sphere point.
  function view(p, x, y, z) {
    var c = p.camera, r = 0.4 * Math.min(p.width, p.height) * c.zoom, f = 1, x1 = x, y2 = y, z2 = 0;
    if (state.dim === 3) {
      var z1 = -Math.sin(c.yaw) * x + Math.cos(c.yaw) * z;
      x1 = Math.cos(c.yaw) * x + Math.sin(c.yaw) * z;
      y2 = Math.cos(c.pitch) * y - Math.sin(c.pitch) * z1;
      z2 = Math.sin(c.pitch) * y + Math.cos(c.pitch) * z1;
      f = DIST / (DIST - z2);
    }
    return [p.width / 2 + c.panX + x1 * f * r, p.height / 2 + c.panY - y2 * f * r, z2, f];
  }

  function project(p) {
    var u = unitPoints(p.model);
    p.screen = [];
    for (var i = 0; i < N; i++) { p.screen.push(view(p, u[i * 3], u[i * 3 + 1], u[i * 3 + 2])); }
    p.drawn = [];
    for (i = 0; i < N; i++) { if (!state.hidden[D.label[i]]) { p.drawn.push(i); } }
    p.drawn.sort(function (a, b) { return p.screen[a][2] - p.screen[b][2] || a - b; });   // far ones first
  }

  function colourOf(p, i) {
    if (state.colour === "class") { return D.colours[D.label[i]]; }
    return D.model[p.model].predicted[i] === D.label[i] ? CORRECT : WRONG;
  }

  // The three embedding axes through the centre, faint, labelled at their positive ends.
  function drawAxes(p, ctx) {
    var o = view(p, 0, 0, 0);
    ctx.strokeStyle = EDGE;
    ctx.fillStyle = "#999";
    ctx.lineWidth = 1;
    ctx.font = "11px sans-serif";
    [[1, 0, 0], [0, 1, 0], [0, 0, 1]].forEach(function (a, k) {
      var lo = view(p, -a[0], -a[1], -a[2]), hi = view(p, a[0], a[1], a[2]);
      ctx.beginPath();
      ctx.moveTo(lo[0], lo[1]);
      ctx.lineTo(hi[0], hi[1]);
      ctx.stroke();
      ctx.fillText("t-SNE " + (k + 1), hi[0] + (hi[0] - o[0]) * 0.03, hi[1] + (hi[1] - o[1]) * 0.03);
    });
  }

  function ring(ctx, s, radius, width, colour) {
    ctx.globalAlpha = 1;
    ctx.strokeStyle = colour;
    ctx.lineWidth = width;
    ctx.beginPath();
    ctx.arc(s[0], s[1], radius, 0, 2 * Math.PI);
    ctx.stroke();
  }

  function draw(p) {
    var ctx = p.ctx;
    project(p);
    ctx.setTransform(p.dpr, 0, 0, p.dpr, 0, 0);
    ctx.clearRect(0, 0, p.width, p.height);
    if (state.dim === 3) { drawAxes(p, ctx); }
    ctx.globalAlpha = 0.85;
    p.drawn.forEach(function (i) {
      var s = p.screen[i];
      ctx.fillStyle = colourOf(p, i);
      ctx.beginPath();
      ctx.arc(s[0], s[1], 2.6 * s[3], 0, 2 * Math.PI);
      ctx.fill();
    });
    if (state.selected !== null) {
      var from = p.screen[state.selected];
      neighbours(p.model, state.selected).forEach(function (j) {
        ctx.globalAlpha = 0.7;
        ctx.strokeStyle = "#333";
        ctx.lineWidth = 1;
        ctx.beginPath();
        ctx.moveTo(from[0], from[1]);
        ctx.lineTo(p.screen[j][0], p.screen[j][1]);
        ctx.stroke();
        ring(ctx, p.screen[j], 5, 1.5, "#333");
      });
      ring(ctx, from, 8, 3, "#000");
    }
    if (state.hover !== null) { ring(ctx, p.screen[state.hover], 7, 2, "#000"); }
    ctx.globalAlpha = 1;
  }

  function drawAll() { panels.forEach(draw); }

  // The k nearest other points of point i in the shown embedding of `model` (Euclidean; ties by index).
  function neighbours(model, i) {
    var src = coords(model), d = state.dim, dist = [];
    for (var j = 0; j < N; j++) {
      if (j === i) { continue; }
      for (var s = 0, a = 0; a < d; a++) { s += (src[j * d + a] - src[i * d + a]) * (src[j * d + a] - src[i * d + a]); }
      dist.push([s, j]);
    }
    dist.sort(function (a, b) { return a[0] - b[0] || a[1] - b[1]; });
    return dist.slice(0, D.k).map(function (x) { return x[1]; });
  }

  // The point drawn nearest to (x, y) in the canvas of panel p, within PICK_PX; null if none.
  function pick(p, x, y) {
    var best = null, bestD = PICK_PX * PICK_PX;
    p.drawn.forEach(function (i) {
      var dx = p.screen[i][0] - x, dy = p.screen[i][1] - y, d2 = dx * dx + dy * dy;
      if (d2 <= bestD) { best = i; bestD = d2; }   // later = nearer the camera: wins a tie
    });
    return best;
  }

  function thumb(i, size) {
    var t = el("div", {"class": size < 96 ? "thumb small" : "thumb", "data-point": String(i)});
    var cols = D.sprite.columns, rows = Math.ceil(N / cols);
    t.style.backgroundImage = "url(\"" + D.sprite.file + "\")";
    t.style.backgroundSize = (cols * size) + "px " + (rows * size) + "px";
    t.style.backgroundPosition = (-(i % cols) * size) + "px " + (-Math.floor(i / cols) * size) + "px";
    return t;
  }

  function predictionLine(model, i) {
    var m = D.model[model], ok = m.predicted[i] === D.label[i];
    return el("div", {"class": ok ? "ok" : "bad"}, model + ": " + D.classes[m.predicted[i]] + " (" +
              Math.round(m.confidence[i] * 100) + "%) " + (ok ? "✓" : "✗"));
  }

  function describe(i) {
    var box = el("div");
    box.appendChild(el("div", {}, "test image #" + D.index[i]));
    box.appendChild(el("div", {}, "true class: " + D.classes[D.label[i]]));
    D.models.forEach(function (model) { box.appendChild(predictionLine(model, i)); });
    return box;
  }

  function showTooltip(i, e) {
    var tip = document.getElementById("tooltip");
    tip.textContent = "";
    if (i === null) { tip.style.display = "none"; return; }
    var row = el("div", {"class": "row"});
    row.appendChild(thumb(i, 96));
    row.appendChild(describe(i));
    tip.appendChild(row);
    tip.setAttribute("data-point", String(i));
    tip.style.display = "block";
    var x = e.clientX + 16, y = e.clientY + 16;
    if (x + tip.offsetWidth > window.innerWidth) { x = e.clientX - 16 - tip.offsetWidth; }
    if (y + tip.offsetHeight > window.innerHeight) { y = e.clientY - 16 - tip.offsetHeight; }
    tip.style.left = x + "px";
    tip.style.top = y + "px";
  }

  function showSelection() {
    var box = document.getElementById("selection"), i = state.selected;
    box.textContent = "";
    if (i === null) { return; }
    var inner = el("div", {"class": "box"}), row = el("div", {"class": "row"});
    row.style.display = "flex";
    row.style.gap = "10px";
    row.appendChild(thumb(i, 96));
    row.appendChild(describe(i));
    inner.appendChild(row);
    D.models.forEach(function (model) {
      var near = neighbours(model, i), same = near.filter(function (j) { return D.label[j] === D.label[i]; }).length;
      inner.appendChild(el("div", {}, model + ": its " + near.length + " nearest neighbours in the " + state.dim +
        "D t-SNE of " + state.layer + ", " + same + " of them " + D.classes[D.label[i]]));
      var strip = el("div", {"class": "neighbours", "data-model": model});
      near.forEach(function (j) {
        var f = el("figure", {"data-point": String(j)});
        f.appendChild(thumb(j, 48));
        f.appendChild(el("figcaption", {"class": D.label[j] === D.label[i] ? "ok" : "bad"}, D.classes[D.label[j]]));
        strip.appendChild(f);
      });
      inner.appendChild(strip);
    });
    box.appendChild(inner);
  }

  function metricsText(model) {
    var m = D.model[model].metrics[state.layer] || {}, right = 0;
    for (var i = 0; i < N; i++) { right += D.model[model].predicted[i] === D.label[i] ? 1 : 0; }
    return "kNN accuracy (" + state.dim + "D, k = " + D.k + ") " + fmt(m["knn_accuracy_" + state.dim + "d"], 3) +
      " · trustworthiness (2D) " + fmt(m.trustworthiness_2d, 3) + " · silhouette (2D) " + fmt(m.silhouette_2d, 3) +
      " · predicted right " + (100 * right / N).toFixed(1) + "% of these " + N;
  }

  function refresh() {
    panels.forEach(function (p) {
      p.title.textContent = p.model + ": " + state.dim + "D t-SNE of " + state.layer;
      p.metrics.textContent = metricsText(p.model);
    });
    document.querySelectorAll("header button[data-value]").forEach(function (b) {
      var key = b.getAttribute("data-key"), value = b.getAttribute("data-value");
      b.classList.toggle("on", String(state[key]) === value);
    });
    document.querySelectorAll("#legend button[data-class]").forEach(function (b) {
      b.classList.toggle("off", !!state.hidden[b.getAttribute("data-class")]);
    });
    drawAll();
    showSelection();
  }

  // Make every panel's camera a copy of `source`'s (rotating one turns both).
  function link(source) {
    panels.forEach(function (p) { if (p !== source) { Object.assign(p.camera, source.camera); } });
  }

  function local(p, e) {
    var r = p.canvas.getBoundingClientRect();
    return [e.clientX - r.left, e.clientY - r.top];
  }

  function onMove(e) {
    if (!drag) { return; }
    var p = drag.panel, dx = e.clientX - drag.x, dy = e.clientY - drag.y, c = p.camera;
    drag.x = e.clientX;
    drag.y = e.clientY;
    drag.moved += Math.abs(dx) + Math.abs(dy);
    if (drag.pan) { c.panX += dx; c.panY += dy; } else {
      c.yaw += dx * ROTATE;
      c.pitch = Math.max(-1.55, Math.min(1.55, c.pitch + dy * ROTATE));
    }
    link(p);
    drawAll();
  }

  function onUp(e) {
    if (!drag) { return; }
    var p = drag.panel;
    p.canvas.classList.remove("dragging");
    if (drag.moved < 4) {                       // a click, not a drag
      var xy = local(p, e);
      state.selected = pick(p, xy[0], xy[1]);
      refresh();
    }
    drag = null;
  }

  function listen(p) {
    var cv = p.canvas;
    cv.addEventListener("mousedown", function (e) {
      drag = {panel: p, x: e.clientX, y: e.clientY, moved: 0, pan: e.button !== 0 || e.shiftKey || state.dim === 2};
      cv.classList.add("dragging");
      e.preventDefault();
    });
    cv.addEventListener("mousemove", function (e) {
      if (drag) { return; }
      var xy = local(p, e), i = pick(p, xy[0], xy[1]);
      if (i !== state.hover) { state.hover = i; drawAll(); }
      showTooltip(i, e);
    });
    cv.addEventListener("mouseleave", function () { state.hover = null; showTooltip(null); drawAll(); });
    cv.addEventListener("wheel", function (e) {
      e.preventDefault();
      p.camera.zoom = Math.max(0.3, Math.min(30, p.camera.zoom * Math.exp(-e.deltaY * 0.0015)));
      link(p);
      drawAll();
    }, {passive: false});
    cv.addEventListener("contextmenu", function (e) { e.preventDefault(); });
  }

  function layout() {
    var dpr = window.devicePixelRatio || 1;
    panels.forEach(function (p) {
      var w = p.canvas.parentElement.clientWidth - 2;
      var h = Math.max(280, Math.min(w, window.innerHeight - 200));
      p.width = w;
      p.height = h;
      p.dpr = dpr;
      p.canvas.width = Math.round(w * dpr);
      p.canvas.height = Math.round(h * dpr);
      p.canvas.style.height = h + "px";
    });
    drawAll();
  }

  function button(parent, key, value, label) {
    var b = el("button", {type: "button", "data-key": key, "data-value": String(value)}, label);
    b.addEventListener("click", function () {
      state[key] = value;
      state.hover = null;
      refresh();
    });
    parent.appendChild(b);
  }

  function legend() {
    var box = document.getElementById("legend");
    D.classes.forEach(function (name, k) {
      var b = el("button", {type: "button", "data-class": String(k), title: "show or hide " + name});
      var dot = el("i");
      dot.style.background = D.colours[k];
      b.appendChild(dot);
      b.appendChild(document.createTextNode(name));
      b.addEventListener("click", function () {
        state.hidden[k] = !state.hidden[k];
        state.hover = null;
        refresh();
      });
      box.appendChild(b);
    });
    var all = el("button", {type: "button", id: "show-all"}, "show all");
    all.addEventListener("click", function () { state.hidden = {}; refresh(); });
    box.appendChild(all);
    box.appendChild(el("span", {"class": "note"}, "(click a class to hide it; colour by correct / wrong: " +
                       "green = the panel's model predicts the true class, red = it does not)"));
  }

  function build() {
    D.layers.forEach(function (layer) { button(document.getElementById("layers"), "layer", layer, layer); });
    button(document.getElementById("dims"), "dim", 3, "3D");
    button(document.getElementById("dims"), "dim", 2, "2D");
    button(document.getElementById("colourings"), "colour", "class", "true class");
    button(document.getElementById("colourings"), "colour", "correct", "correct / wrong");
    document.getElementById("reset").addEventListener("click", function () {
      panels.forEach(function (p) { Object.assign(p.camera, HOME); });
      drawAll();
    });
    legend();
    D.models.forEach(function (model) {
      var box = el("div", {"class": "panel", "data-model": model}), canvas = el("canvas");
      var p = {model: model, camera: Object.assign({}, HOME), canvas: canvas, ctx: canvas.getContext("2d"),
               title: el("h2"), metrics: el("div", {"class": "metrics"}), screen: [], drawn: []};
      box.appendChild(p.title);
      box.appendChild(p.metrics);
      box.appendChild(canvas);
      document.getElementById("panels").appendChild(box);
      listen(p);
      panels.push(p);
    });
    document.getElementById("help").textContent = "Drag: rotate (3D) or move (2D); shift- or right-drag: " +
      "move; wheel: zoom; both panels keep one camera. Hover: the test image, its true class and each " +
      "model's prediction (its softmax on the image alone, no test-time augmentation). Click: the image in " +
      "both models with its " + D.k + " nearest neighbours in the shown embedding (tsne.knn_k; the kNN " +
      "accuracy classifies each point by such neighbours); click empty space to clear. " + N +
      " test images, t-SNE by openTSNE (stages tsne@<model>).";
    window.addEventListener("mousemove", onMove);
    window.addEventListener("mouseup", onUp);
    window.addEventListener("resize", layout);
    layout();
    refresh();
  }

  window.explorer = {
    state: state, data: D, panels: panels, neighbours: neighbours, refresh: refresh,
    // page coordinates (CSS px) of point i in panel `pi`, or null when it is hidden
    pagePoint: function (pi, i) {
      var p = panels[pi], r = p.canvas.getBoundingClientRect();
      return p.drawn.indexOf(i) < 0 ? null : [r.left + p.screen[i][0], r.top + p.screen[i][1]];
    }
  };
  build();
})();
