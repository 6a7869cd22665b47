"""Benchmark (not a test): wall time and peak memory (RSS) of extract_activations at a given n_samples.

Runs study.activations.extract exactly as the stage does (models/<name>.keras on data/test.npz,
params.yaml's activations.*), but with n_samples from the command line and without writing
anything, so it never touches the pipeline's outputs. Peak RSS (ru_maxrss) is reported after
loading the model and after extraction: with the two-pass IncrementalPCA it should hardly grow
with n. `--synthetic` uses an untrained model on random images (no data or training needed).
    .venv/bin/python -m benchmarks.bench_activations --n 10000 [--name baseline] [--synthetic]
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from study import paths
from study.model import ANALYSED_LAYERS
from study.params import load


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def inputs(name: str, n: int, synthetic: bool, seed: int):
    """(model, x uint8 (n, 32, 32, 3)) from the pipeline's files or synthetic."""
    import keras
    keras.utils.set_random_seed(seed)
    if synthetic:
        from study.model import build_model
        x = np.random.default_rng(seed).integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        return build_model(True), x
    from study.activations import sample
    from study.data import load_split
    x, y = load_split("test")
    return keras.saving.load_model(paths.model_file(name), compile=False), x[sample(y, n, seed)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--name", choices=paths.MODEL_NAMES, default="baseline")
    ap.add_argument("--synthetic", action="store_true", help="untrained model, random images")
    args = ap.parse_args()
    from study.activations import extract
    params = load()
    a = params["activations"]
    model, x = inputs(args.name, args.n, args.synthetic, params["seed"])
    before = peak_rss_mb()
    t0 = time.perf_counter()
    arrays, explained = extract(model, x, ANALYSED_LAYERS, a["batch_size"], a["pca_dims"], a["surface_images"])
    seconds = time.perf_counter() - t0
    print(f"n={args.n} batch_size={a['batch_size']} pca_dims={a['pca_dims']}: {seconds:.0f} s; "
          f"peak RSS {before:.0f} MB before extraction, {peak_rss_mb():.0f} MB after; "
          f"shapes {({k: v.shape for k, v in arrays.items()})}; explained variance {explained}")


if __name__ == "__main__":
    main()
