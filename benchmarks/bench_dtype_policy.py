"""Benchmark (not a test): training speed of the recipe under each dtype_policy (float32, mixed_bfloat16).

Both models are the study CNN compiled the same way (study.train.compile_model: params.yaml's
optimizer, schedule, weight decay, label smoothing) and fed by the same pipeline
(study.dataset.make_dataset with params.yaml's batch_size and augment); only the dtype policy
differs. Rounds alternate float32, mixed_bfloat16, float32, ... so both see the same machine
load; the first round of each is warm-up (graph tracing) and not counted.

Each round is one `fit` over --images images. A callback times every step (its own batch-end
hooks), and the median step time is the figure: on this shared host a whole short `fit` was seen
to last a whole multiple of ~10.25 s whatever its work (1,024 to 3,072 images, both policies
alike), which hides any speed-up in images/s of short fits; the whole-fit seconds are printed
beside it. The last line, `ratio <float32 step / mixed_bfloat16 step>`, is the speed-up.

Uses data/train.npz when present (else, or with --synthetic, random images). From the repo root:
    .venv/bin/python -m benchmarks.bench_dtype_policy [--images 3072] [--rounds 4] [--synthetic]
"""
from __future__ import annotations

from benchmarks.bench_train import compare_models, setup

POLICIES = ("float32", "mixed_bfloat16")


def main() -> None:
    params, x, y, steps, rounds = setup(__doc__, 3072)
    from study.model import build_model
    from study.train import compile_model

    models = {}
    for policy in POLICIES:
        models[policy] = build_model(params["batch_norm"], policy)
        compile_model(models[policy], params, steps)
    med = compare_models(params, x, y, rounds, models, "dtype policy float32 vs mixed_bfloat16")
    print(f"ratio {med['float32'] / med['mixed_bfloat16']:.3f}")


if __name__ == "__main__":
    main()
