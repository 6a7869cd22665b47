"""Benchmark (not a test): training speed with batch norm through Keras's code and through the fused kernel.

Both models are the study CNN in params.yaml's dtype policy (auto resolved as the trainings
resolve it), compiled and fed as the trainings do (benchmarks.bench_train.compare_models); only
`fused_batch_norm` differs. Rounds alternate keras, fused, keras, ...; the first round of each
is warm-up and not counted, and the median step is the figure. Prints the ratio
`keras step / fused step` and, for each, the fraction of this machine's measured peak the step
reaches (benchmarks.peak).

Uses data/train.npz when present (else, or with --synthetic, random images). From the repo root:
    .venv/bin/python -m benchmarks.bench_batch_norm [--images 3072] [--rounds 4] [--synthetic]
"""
from __future__ import annotations

from benchmarks.bench_train import compare_models, setup

KINDS = ("keras", "fused")


def main() -> None:
    params, x, y, steps, rounds = setup(__doc__, 3072)
    from benchmarks.peak import peak_line
    from study.devices import resolve_dtype_policy
    from study.fused_batch_norm import enable
    from study.model import build_model
    from study.train import compile_model

    policy = resolve_dtype_policy(params["dtype_policy"])
    models = {}
    for kind in KINDS:
        models[kind] = build_model(params["batch_norm"], policy)
        if kind == "fused":
            print(enable(models[kind]))
        compile_model(models[kind], params, steps)
    med = compare_models(params, x, y, rounds, models, f"dtype policy {policy}")
    for kind in KINDS:
        print(f"{kind}: {peak_line(models[kind], med[kind], params['batch_size'], policy)}")
    print(f"ratio {med['keras'] / med['fused']:.3f}")


if __name__ == "__main__":
    main()
