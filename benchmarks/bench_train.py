"""Benchmark (not a test): training throughput of the recipe against a plain `model.fit`.

Both train the seed CNN compiled the same way (study.train.compile_model: params.yaml's
optimizer, schedule, weight decay, label smoothing) with params.yaml's batch_size; the recipe
feeds it through study.train.make_dataset (seeded shuffle, params.yaml's augment, parallel
map, prefetch), the plain fit takes float numpy arrays. Rounds alternate plain, recipe, plain,
... so both see the same machine load; the first round of each is warm-up (graph tracing)
and not counted. This machine's speed swings by 1.5x from minute to minute, so only the
last line, `ratio <recipe/plain>` (medians of images/s), is meaningful.

Uses data/train.npz when present (else, or with --synthetic, random images). From the repo root:
    .venv/bin/python -m benchmarks.bench_train [--images 4096] [--rounds 4] [--synthetic]
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import numpy as np

from study import paths
from study.params import load


def images(n: int, synthetic: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n training images (uint8) and labels: the first n of data/train.npz, or random ones."""
    if not synthetic and paths.TRAIN.exists():
        from study.data import load_split
        x, y = load_split("train")
        return x[:n], y[:n]
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=4096, help="images per round (default 4096)")
    ap.add_argument("--rounds", type=int, default=4, help="rounds of each, the first one warm-up (default 4)")
    ap.add_argument("--synthetic", action="store_true", help="random images even when data/train.npz exists")
    args = ap.parse_args()
    params = load()
    from study.data import preprocess
    from study.model import build_model
    from study.train import compile_model, make_dataset, set_seed

    bs, seed = params["batch_size"], params["seed"]
    x, y = images(args.images, args.synthetic, seed)
    steps = math.ceil(len(x) / bs)
    set_seed(seed)
    models = {}
    for kind in ("plain", "recipe"):
        models[kind] = build_model(params["batch_norm"])
        compile_model(models[kind], params, steps)
    feeds = {"plain": lambda m: m.fit(preprocess(x), y.astype("int32"), batch_size=bs, epochs=1, verbose=0),
             "recipe": lambda m, ds=make_dataset(x, y, bs, shuffle=True, augment=params["augment"], seed=seed):
             m.fit(ds, epochs=1, verbose=0, shuffle=False)}  # the dataset shuffles itself
    print(f"{os.cpu_count()} cores; {len(x)} images per round, batch {bs}, augment {params['augment']}, "
          f"optimizer {params['optimizer']}, lr_schedule {params['lr_schedule']}")
    rates = {"plain": [], "recipe": []}
    for r in range(args.rounds):
        for kind in ("plain", "recipe"):
            t0 = time.perf_counter()
            feeds[kind](models[kind])
            rate = len(x) / (time.perf_counter() - t0)
            print(f"round {r + 1} {kind:6s} {rate:7.1f} images/s{' (warm-up)' if r == 0 else ''}", flush=True)
            if r:
                rates[kind].append(rate)
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"median plain {med['plain']:.1f} images/s, recipe {med['recipe']:.1f} images/s")
    print(f"ratio {med['recipe'] / med['plain']:.3f}")


if __name__ == "__main__":
    main()
