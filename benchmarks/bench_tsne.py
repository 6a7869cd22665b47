"""Benchmark (not a test): openTSNE (the tsne stage's embedding) against scikit-learn's TSNE.

Both embed the same features in 2D with the same perplexity, seed, PCA initialisation and
iterations after early exaggeration (scikit-learn's early-exaggeration phase is fixed at 250
steps and counted in its max_iter, so it gets max_iter = 250 + tsne.n_iter; equal work when
tsne.early_exaggeration_iter is 250, the default), on all cores; the table gives wall time
and kNN accuracy (study.tsne.knn_accuracy, k = tsne.knn_k, seeded 5-fold CV) of each.

Needs data/activations/<name>.npz (`dvc repro extract_activations@<name>`). Run from the repo root:
    .venv/bin/python -m benchmarks.bench_tsne --name baseline --layers dense conv2d_4 [--n 10000] [--out bench.json]
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from study import paths
from study.model import ANALYSED_LAYERS
from study.data import stratified_subset
from study.tsne import knn_accuracy, tsne
from study.params import load

SKLEARN_EXAGGERATION_ITER = 250  # fixed inside sklearn.manifold.TSNE


def sklearn_tsne(x: np.ndarray, perplexity: float, max_iter: int, seed: int) -> np.ndarray:
    """scikit-learn's Barnes-Hut TSNE (n, 2), PCA-initialised and seeded like the stage's openTSNE."""
    from sklearn.manifold import TSNE
    return TSNE(n_components=2, perplexity=perplexity, max_iter=max_iter, init="pca",
                random_state=seed, n_jobs=-1).fit_transform(x)


def timed(fn, *args):
    """(result, wall seconds) of fn(*args)."""
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def bench_layer(x, y, t: dict, seed: int) -> dict:
    """Time and kNN accuracy of openTSNE and scikit-learn TSNE on one layer's features."""
    e_open, s_open = timed(tsne, x, 2, t["perplexity"], t["n_iter"], seed, t["early_exaggeration_iter"])
    e_skl, s_skl = timed(sklearn_tsne, x, t["perplexity"], SKLEARN_EXAGGERATION_ITER + t["n_iter"], seed)
    return {"n": len(x), "dims": x.shape[1],
            "opentsne_seconds": round(s_open, 1), "opentsne_knn_accuracy": knn_accuracy(e_open, y, t["knn_k"], seed),
            "sklearn_seconds": round(s_skl, 1), "sklearn_knn_accuracy": knn_accuracy(e_skl, y, t["knn_k"], seed),
            "features_knn_accuracy": knn_accuracy(x, y, t["knn_k"], seed)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", choices=paths.MODEL_NAMES, default="baseline")
    ap.add_argument("--layers", nargs="+", choices=ANALYSED_LAYERS, default=["dense"])
    ap.add_argument("--n", type=int, default=None, help="stratified subsample of the activations (default: all)")
    ap.add_argument("--out", help="also write the results as JSON here")
    args = ap.parse_args()
    params = load()
    with np.load(paths.activations_file(args.name)) as f:
        acts = {k: f[k] for k in (*args.layers, "y")}
    y = acts["y"].astype(np.int64)
    idx = stratified_subset(y, args.n or len(y), params["seed"])
    print(f"{os.cpu_count()} cores; {args.name}; tsne params {params['tsne']}")
    print("| layer | n | dims | openTSNE s | openTSNE kNN | sklearn s | sklearn kNN | features kNN |")
    print("|---|---|---|---|---|---|---|---|")
    results = {}
    for layer in args.layers:
        r = results[layer] = bench_layer(acts[layer][idx], y[idx], params["tsne"], params["seed"])
        print(f"| {layer} | {r['n']} | {r['dims']} | {r['opentsne_seconds']} | {r['opentsne_knn_accuracy']:.3f} "
              f"| {r['sklearn_seconds']} | {r['sklearn_knn_accuracy']:.3f} | {r['features_knn_accuracy']:.3f} |",
              flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
