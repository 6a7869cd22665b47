"""One SGD step of each trainer on two logical CPU devices (MirroredStrategy) and on one device,
from the same weights, batch and seed (two steps for `center_last_image`: a batch, then a batch of
one image, so one replica gets none); prints {case: {"diff", "moved", "logs_finite"}} as JSON:
the largest difference between the two runs' variables, the largest change the step made, and
whether the two-replica run logged finite values.

tests/test_devices.py runs it as `python -m tests.one_step_on_two_replicas` in a fresh process
(logical devices are fixed before TensorFlow starts). The one-device run computes its batch
variance as E[x^2] - E[x]^2, as synchronized batch normalisation does, so that what differs is
float order only. Two controls break one of the things study.devices makes right: `keras_alone`
(no share_global_batch: per-replica batch norm, one dropout mask per replica) and
`own_features_centres` (each replica moves the centres from its own features).
"""
import json

import numpy as np

from study.devices import strategy

BATCH, LR, SEED = 32, 0.01, 0


def _images(n: int = BATCH):
    from tests.synthetic import synthetic_images
    x, y = synthetic_images(n // 10 + 1, SEED)
    return x[:n], y[:n].astype("int64")


def _step(strat, variant: str | None, same_global_batch: bool = True, sync_formula: bool = False,
          images: int = BATCH):
    """(variables before, after, logged values) of one training step on the first `images` of the
    batch, of the baseline (variant None) or the center-loss trainer with `variant`, under `strat`."""
    import keras
    from study.center_loss import CenterLossTrainer
    from study.devices import share_global_batch
    from study.model import FEATURE_DIM, build_model
    from study.dataset import make_dataset
    from study.train import compile_model, set_seed
    x, y = _images(images)
    params = dict(optimizer="sgd", learning_rate=LR, weight_decay=0, label_smoothing=0, lr_schedule="none", epochs=1,
                  ema_momentum=0)
    set_seed(SEED)
    with strat.scope():
        model = build_model(True)
        trainer = model if variant is None else CenterLossTrainer(
            model, np.random.default_rng(SEED).normal(size=(10, FEATURE_DIM)), variant, 0.01, 0.1, 0.5)
        if same_global_batch:
            share_global_batch(model)
        for layer in model.layers if sync_formula else ():
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.synchronized = True   # one device: only the E[x^2] - E[x]^2 formula changes
        compile_model(trainer, params, steps_per_epoch=1)
        before = [v.numpy() for v in trainer.weights]
        steps = -(-len(x) // BATCH)
        logs = trainer.fit(make_dataset(x, y, BATCH, shuffle=True, seed=SEED), epochs=1, steps_per_epoch=steps,
                           verbose=0).history
    return before, [v.numpy() for v in trainer.weights], {k: v[-1] for k, v in logs.items()}


def _compare(one, two) -> dict:
    (b1, a1, _), (_, a2, logs) = one, two
    return {"diff": max(float(np.abs(p - q).max()) for p, q in zip(a1, a2)),
            "moved": max(float(np.abs(p - q).max()) for p, q in zip(a1, b1)),
            "logs_finite": bool(np.isfinite(list(logs.values())).all())}


def main() -> dict:
    """Each case's differences between two replicas and one device (module docstring)."""
    mirrored = strategy(2)
    import tensorflow as tf
    from study import center_loss
    one = tf.distribute.get_strategy()
    out = {}
    for name, variant in (("baseline", None), ("center", "center"), ("contrastive", "contrastive")):
        out[name] = _compare(_step(one, variant, sync_formula=True), _step(mirrored, variant))
    out["keras_alone"] = _compare(_step(one, None, sync_formula=True), _step(mirrored, None, same_global_batch=False))
    gather, center_loss.gather = center_loss.gather, lambda x: x
    try:
        out["own_features_centres"] = _compare(_step(one, "center", sync_formula=True), _step(mirrored, "center"))
    finally:
        center_loss.gather = gather
    # last, as an abort here stops the process's collectives: a second batch of one image, one
    # replica gets none (as the last batch of an epoch can). On some 2-core hosts (2026-12-02)
    # TensorFlow's CPU collectives abort on it ("Shape mismatch in the collective instance"),
    # even for the baseline; that error is reported, any other is raised.
    try:
        out["center_last_image"] = _compare(_step(one, "center", sync_formula=True, images=BATCH + 1),
                                            _step(mirrored, "center", images=BATCH + 1))
    except tf.errors.InvalidArgumentError as e:
        mismatch = [line for line in str(e).splitlines() if "Shape mismatch in the collective instance" in line]
        if not mismatch:
            raise
        out["center_last_image"] = {"error": mismatch[0].strip()[:300]}
    return out


if __name__ == "__main__":
    print(json.dumps(main()))
