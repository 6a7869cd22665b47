"""Benchmark (not a test): the tsne stage's shared 2D + 3D embedding against two separate fits.

Before (the stage until issue 10): openTSNE's TSNE.fit once in 2D (FFT) and once in 3D
(Barnes-Hut), each building its own kNN graph, affinities and PCA initialisation and running
tsne.early_exaggeration_iter + `--before-n-iter` iterations (500: the stage's tsne.n_iter then).
After (study.tsne.embed, the stage now, at params.yaml's tsne.*): one affinity object and one
PCA for both, 2D for tsne.early_exaggeration_iter + tsne.n_iter iterations, 3D on its own
shorter schedule (tsne.early_exaggeration_iter_3d + tsne.n_iter_3d). Each side also computes
the layer's metrics (study.tsne.layer_metrics), so a side's seconds are what the stage spends
on the layer. Same seed, all cores, on data/activations/<name>.npz; the sides alternate (ABBA
over the layers) so both see the same machine load; the last line is `ratio <after/before>`
of the total seconds.

Needs data/activations/<name>.npz (`dvc repro extract_activations@<name>`). From the repo root:
    .venv/bin/python -m benchmarks.bench_tsne --name baseline [--layers dense conv2d_4] [--n 10000] [--out b.json]
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from study import paths
from study.data import stratified_subset
from study.model import ANALYSED_LAYERS
from study.params import load
from study.tsne import embed_with_params, layer_metrics


def separate_fits(x: np.ndarray, t: dict, seed: int, n_iter: int) -> dict[int, np.ndarray]:
    """The stage before: a full, independent openTSNE fit in 2D and in 3D."""
    from openTSNE import TSNE
    return {d: np.asarray(TSNE(n_components=d, perplexity=t["perplexity"], n_iter=n_iter,
                               early_exaggeration_iter=t["early_exaggeration_iter"], initialization="pca",
                               negative_gradient_method="fft" if d == 2 else "bh", random_state=seed,
                               n_jobs=-1, verbose=False).fit(np.asarray(x, np.float64)), dtype=np.float32)
            for d in (2, 3)}


def run_side(side: str, x, y, t: dict, seed: int, before_n_iter: int) -> dict:
    """One side on one layer: seconds (embedding + metrics) and the layer's metrics."""
    t0 = time.perf_counter()
    embs = separate_fits(x, t, seed, before_n_iter) if side == "before" else embed_with_params(x, t, seed)[0]
    metrics = layer_metrics(x, embs[2], embs[3], y, t["knn_k"], t["trust_samples"], seed)
    spread = embs[3].std(axis=0)  # a flat 3D layout (one axis much narrower) is a poor 3D picture
    return {"seconds": round(time.perf_counter() - t0, 1), **{k: round(v, 4) for k, v in metrics.items()},
            "axis_spread_3d": round(float(spread.min() / spread.max()), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", choices=paths.MODEL_NAMES, default="baseline")
    ap.add_argument("--layers", nargs="+", choices=ANALYSED_LAYERS, default=list(ANALYSED_LAYERS))
    ap.add_argument("--n", type=int, default=None, help="stratified subsample of the activations (default: all)")
    ap.add_argument("--before-n-iter", type=int, default=500,
                    help="iterations after early exaggeration of the 'before' fits (500: tsne.n_iter until 2026-12-02)")
    ap.add_argument("--out", help="also write the results as JSON here")
    args = ap.parse_args()
    params = load()
    t, seed = params["tsne"], params["seed"]
    with np.load(paths.activations_file(args.name)) as f:
        acts = {k: f[k] for k in (*args.layers, "y")}
    y = acts["y"].astype(np.int64)
    idx = stratified_subset(y, args.n or len(y), seed)
    print(f"{os.cpu_count()} cores; {args.name}; {len(idx)} images; tsne params {t}; "
          f"before: {t['early_exaggeration_iter']} + {args.before_n_iter} iterations in 2D and in 3D")
    print("| layer | dims | side | seconds | kNN 2D | kNN 3D | trustworthiness 2D | silhouette 2D | 3D axis spread min/max |")
    print("|---|---|---|---|---|---|---|---|---|")
    results, totals = {}, {"before": 0.0, "after": 0.0}
    for i, layer in enumerate(args.layers):
        x = acts[layer][idx]
        results[layer] = {}
        for side in (("before", "after") if i % 2 == 0 else ("after", "before")):
            r = results[layer][side] = run_side(side, x, y[idx], t, seed, args.before_n_iter)
            totals[side] += r["seconds"]
            print(f"| {layer} | {x.shape[1]} | {side} | {r['seconds']} | {r['knn_accuracy_2d']:.3f} "
                  f"| {r['knn_accuracy_3d']:.3f} | {r['trustworthiness_2d']:.3f} | {r['silhouette_2d']:.3f} "
                  f"| {r['axis_spread_3d']:.2f} |",
                  flush=True)
    print(f"total seconds: before {totals['before']:.1f}, after {totals['after']:.1f}")
    print(f"ratio {totals['after'] / totals['before']:.3f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"n": len(idx), "tsne": t, "before_n_iter": args.before_n_iter, "layers": results, "totals": totals}, f, indent=2)


if __name__ == "__main__":
    main()
