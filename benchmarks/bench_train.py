"""Benchmark (not a test): training throughput of the recipe against a plain `model.fit`.

Both train the study CNN built and compiled as the trainings do (params.yaml's dtype policy and
fused_batch_norm; study.train.compile_model: optimizer, schedule, weight decay, label
smoothing) with params.yaml's batch_size; the recipe
feeds it through study.dataset.make_dataset (seeded shuffle, params.yaml's augment, parallel
map, prefetch), the plain fit takes float numpy arrays. Rounds alternate plain, recipe, plain,
... so both see the same machine load; the first round of each is warm-up (graph tracing)
and not counted. Each step is timed (a batch callback) and the median step time is the figure
(see `alternate`). This machine's speed swings by 1.5x from minute to minute, so the figure to
compare is the last line, `ratio <recipe/plain>` (images/s of the recipe over the plain fit's,
from the median step times); the line before it gives the fraction of this machine's measured
peak the recipe's step reaches (benchmarks.peak), measured in the same minute.

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


def setup(doc: str, default_images: int) -> tuple[dict, np.ndarray, np.ndarray, int, int]:
    """A training benchmark's command line (--images, --rounds, --synthetic; parsed from
    sys.argv): params.yaml, the images and labels, the steps of one epoch over them and the
    rounds; seeds set. Returns (params, x, y, steps, rounds)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--images", type=int, default=default_images,
                    help=f"images per round (default {default_images})")
    ap.add_argument("--rounds", type=int, default=4, help="rounds of each, the first one warm-up (default 4)")
    ap.add_argument("--synthetic", action="store_true", help="random images even when data/train.npz exists")
    args = ap.parse_args()
    if args.images < 1:
        ap.error(f"--images must be >= 1, got {args.images}")
    if args.rounds < 2:
        ap.error(f"--rounds must be >= 2 (the first round is warm-up and not counted), got {args.rounds}")
    from study.train import set_seed

    params = load()
    x, y = images(args.images, args.synthetic, params["seed"])
    set_seed(params["seed"])
    return params, x, y, math.ceil(len(x) / params["batch_size"]), args.rounds


def main() -> None:
    params, x, y, steps, rounds = setup(__doc__, 4096)
    from study.data import preprocess
    from study.model import build_model
    from study.dataset import make_dataset
    from study.train import compile_model

    from study.devices import resolve_dtype_policy
    from study.fused_batch_norm import enable
    bs, seed = params["batch_size"], params["seed"]
    policy = resolve_dtype_policy(params["dtype_policy"])      # the model as the trainings build it
    models = {}
    for kind in ("plain", "recipe"):
        models[kind] = build_model(params["batch_norm"], policy)
        if params["fused_batch_norm"]:
            line = enable(models[kind])
        compile_model(models[kind], params, steps)
    data = make_dataset(x, y, bs, shuffle=True, augment=params["augment"], seed=seed)
    fits = {"plain": lambda cb: models["plain"].fit(preprocess(x), y.astype("int32"), batch_size=bs, epochs=1,
                                                    verbose=0, callbacks=cb),
            "recipe": lambda cb: models["recipe"].fit(data, epochs=1, verbose=0, shuffle=False,
                                                      callbacks=cb)}  # the dataset shuffles itself
    print(f"{os.cpu_count()} cores; {len(x)} images per round ({steps} steps), batch {bs}, dtype policy {policy}, "
          f"augment {params['augment']}, optimizer {params['optimizer']}, lr_schedule {params['lr_schedule']}; "
          f"{line if params['fused_batch_norm'] else 'fused_batch_norm: false'}")
    med = alternate(fits, rounds, bs)
    print(f"median step plain {med['plain'] * 1000:.1f} ms ({bs / med['plain']:.1f} images/s), "
          f"recipe {med['recipe'] * 1000:.1f} ms ({bs / med['recipe']:.1f} images/s)")
    from benchmarks.peak import peak_line
    print(f"recipe: {peak_line(models['recipe'], med['recipe'], bs, policy)}")
    print(f"ratio {med['plain'] / med['recipe']:.3f}")


def compare_models(params: dict, x: np.ndarray, y: np.ndarray, rounds: int, models: dict, note: str) -> dict[str, float]:
    """Fit each compiled model of `models` (name -> model) on the recipe's pipeline in turn
    (`alternate`); print a header (`note` says what differs) and each one's median step; return
    the median step seconds by name."""
    from study.dataset import make_dataset
    bs, steps = params["batch_size"], math.ceil(len(x) / params["batch_size"])
    data = make_dataset(x, y, bs, shuffle=True, augment=params["augment"], seed=params["seed"])
    fits = {name: lambda cb, m=m: m.fit(data, epochs=1, verbose=0, shuffle=False, callbacks=cb)
            for name, m in models.items()}
    print(f"{os.cpu_count()} cores; {len(x)} images per round ({steps} steps), batch {bs}, {note}, "
          f"augment {params['augment']}, optimizer {params['optimizer']}, lr_schedule {params['lr_schedule']}")
    med = alternate(fits, rounds, bs)
    print("median step " + ", ".join(f"{k} {med[k] * 1000:.1f} ms ({bs / med[k]:.1f} images/s)" for k in models))
    return med


def alternate(fits: dict, rounds: int, batch_size: int) -> dict[str, float]:
    """Run each of `fits` (name -> fit(callbacks) of one epoch) in turn, `rounds` times, timing
    every step with a batch callback; print a line per fit. Returns each one's median over rounds
    2.. (round 1 is warm-up: graph tracing) of its median step seconds, the first step of a fit
    left out (it waits for the input pipeline to fill). Steps, not whole fits: on this shared host
    a short fit was seen to last a whole multiple of ~10.25 s whatever its work."""
    import keras

    class StepTimes(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_train_batch_begin(self, batch, logs=None):
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter() - self.t0)

    medians = {name: [] for name in fits}
    width = max(map(len, fits))
    for r in range(rounds):
        for name, fit in fits.items():
            timer = StepTimes()
            t0 = time.perf_counter()
            fit([timer])
            whole = time.perf_counter() - t0
            step = statistics.median(timer.times[1:] or timer.times)
            print(f"round {r + 1} {name:{width}s} median step {step * 1000:6.1f} ms ({batch_size / step:6.1f} "
                  f"images/s), whole fit {whole:6.2f} s{' (warm-up)' if r == 0 else ''}", flush=True)
            if r:
                medians[name].append(step)
    return {name: statistics.median(v) for name, v in medians.items()}


if __name__ == "__main__":
    main()
