"""Benchmark (not a test): training throughput with TensorFlow's oneDNN kernels on and off.

TensorFlow reads TF_ENABLE_ONEDNN_OPTS once, when it loads, so each side is its own process:
rounds alternate on, off, on, ... so both see the same machine load. A round trains the seed
CNN the way train_baseline does (study.train.compile_model and study.dataset.make_dataset with params.yaml's
optimizer, schedule, batch_size and augment) on the same images for --seconds after a warm-up
epoch, and reports the medians of its epochs' images/s and CPU time per image (both cores'
CPU seconds: what the kernels cost, whatever the wall clock). This machine's speed swings by
1.5x from minute to minute, so only the medians over rounds and the last line,
`ratio <on/off>` of images/s, are meaningful.

Uses data/train.npz when present (else, or with --synthetic, random images). From the repo root:
    .venv/bin/python -m benchmarks.bench_onednn [--images 1024] [--seconds 60] [--rounds 3] [--synthetic]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

SIDES = {"on": "1", "off": "0"}


def child(n_images: int, seconds: float, synthetic: bool) -> None:
    """One side: print the medians of images/s and CPU ms/image of one-epoch fits over n_images
    during `seconds`, then how many epochs ran."""
    import math

    from benchmarks.bench_train import images
    from study.model import build_model
    from study.params import load
    from study.dataset import make_dataset
    from study.train import compile_model, set_seed
    params = load()
    bs, seed = params["batch_size"], params["seed"]
    x, y = images(n_images, synthetic, seed)
    set_seed(seed)
    model = build_model(params["batch_norm"])
    compile_model(model, params, math.ceil(len(x) / bs))
    ds = make_dataset(x, y, bs, shuffle=True, augment=params["augment"], seed=seed)
    model.fit(ds, epochs=1, verbose=0)  # warm-up: graph tracing
    rates, cpu, end = [], [], time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0, c0 = time.perf_counter(), time.process_time()
        model.fit(ds, epochs=1, verbose=0)
        rates.append(len(x) / (time.perf_counter() - t0))
        cpu.append(1000 * (time.process_time() - c0) / len(x))
    print(f"{statistics.median(rates):.2f} {statistics.median(cpu):.2f} {len(rates)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1024, help="images per epoch (default 1024)")
    ap.add_argument("--seconds", type=float, default=60, help="timed seconds per round (default 60)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of each side (default 3)")
    ap.add_argument("--synthetic", action="store_true", help="random images even when data/train.npz exists")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.images, args.seconds, args.synthetic)
    cmd = [sys.executable, "-m", "benchmarks.bench_onednn", "--child", "--images", str(args.images),
           "--seconds", str(args.seconds)] + (["--synthetic"] if args.synthetic else [])
    print(f"{os.cpu_count()} cores; {args.images} images per epoch, {args.seconds:g} s per round; "
          f"params.yaml's recipe", flush=True)
    rates, cpus = {side: [] for side in SIDES}, {side: [] for side in SIDES}
    for r in range(args.rounds):
        for side, value in SIDES.items():
            out = subprocess.run(cmd, env={**os.environ, "TF_ENABLE_ONEDNN_OPTS": value},
                                 capture_output=True, text=True, check=True).stdout.split()
            rate, cpu_ms, epochs = float(out[-3]), float(out[-2]), out[-1]
            rates[side].append(rate)
            cpus[side].append(cpu_ms)
            print(f"round {r + 1} oneDNN {side:3s} {rate:7.1f} images/s, {cpu_ms:5.2f} CPU ms/image "
                  f"(medians of {epochs} epochs)", flush=True)
    med = {side: statistics.median(v) for side, v in rates.items()}
    cpu = {side: statistics.median(v) for side, v in cpus.items()}
    print(f"median on {med['on']:.1f} images/s ({cpu['on']:.2f} CPU ms/image), "
          f"off {med['off']:.1f} images/s ({cpu['off']:.2f} CPU ms/image)")
    print(f"ratio {med['on'] / med['off']:.3f}")


if __name__ == "__main__":
    main()
