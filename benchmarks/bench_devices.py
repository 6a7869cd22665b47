"""Benchmark (not a test): one train_baseline epoch over params' `devices` = 2 replicas
(MirroredStrategy; on a machine without GPU, two logical devices of the CPU) against one device.

Each measurement is a fresh process, because devices are fixed before TensorFlow starts. It
trains the seed CNN as train_baseline does (study.devices.strategy, the model built in its scope,
share_global_batch, study.train's compile and make_dataset, params.yaml's recipe) for two epochs
on the first --images of data/train.npz and reports the second epoch's images/s (the first one
traces the graphs). Processes alternate one device, two replicas, one device, ... so both see the
same machine load; this machine's speed swings by 1.5x, so only the last line,
`ratio <two replicas / one device>` (medians of images/s), is meaningful.

From a folder holding params.yaml and data/ (e.g. the repo root after `dvc repro fetch_data`):
    python -m benchmarks.bench_devices [--images 5000] [--rounds 3]
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def one_epoch(devices: int, n_images: int) -> float:
    """images/s of the second of two epochs of train_baseline's recipe on `devices` replicas."""
    from study.devices import share_global_batch, strategy
    from study.params import load
    params = load()
    strat = strategy(devices)            # before TensorFlow creates its devices
    import keras

    from study.data import load_split
    from study.model import build_model
    from study.dataset import make_dataset
    from study.train import compile_model, set_seed
    x, y = load_split("train")
    x, y = x[:n_images], y[:n_images]
    bs, seed = params["batch_size"], params["seed"]
    steps = math.ceil(len(x) / bs)
    set_seed(seed)

    class EpochTimes(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds = time.perf_counter() - self.t0

    timer = EpochTimes()
    with strat.scope():
        model = build_model(params["batch_norm"])
        share_global_batch(model)
        compile_model(model, params, steps)
        model.fit(make_dataset(x, y, bs, shuffle=True, augment=params["augment"], seed=seed, epochs=2),
                  epochs=2, steps_per_epoch=steps, callbacks=[timer], verbose=0, shuffle=False)
    return len(x) / timer.seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=5000, help="training images per epoch (default 5000)")
    ap.add_argument("--rounds", type=int, default=3, help="processes of each kind (default 3)")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)   # internal: one measurement
    args = ap.parse_args()
    if args.child:
        print(f"{one_epoch(args.child, args.images):.2f}")
        return
    print(f"{os.cpu_count()} cores; one epoch of {args.images} images of data/train.npz, params.yaml's recipe")
    rates = {1: [], 2: []}
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for r in range(args.rounds):
        for devices in (1, 2):
            out = subprocess.run([sys.executable, "-m", "benchmarks.bench_devices", "--child", str(devices),
                                  "--images", str(args.images)], env=env, check=True,
                                 capture_output=True, text=True).stdout
            rates[devices].append(float(out.split()[-1]))
            print(f"round {r + 1} {'one device' if devices == 1 else 'two replicas'}: "
                  f"{rates[devices][-1]:.1f} images/s", flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"median one device {med[1]:.1f} images/s, two replicas {med[2]:.1f} images/s")
    print(f"ratio {med[2] / med[1]:.3f}")


if __name__ == "__main__":
    main()
