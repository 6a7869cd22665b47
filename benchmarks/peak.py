"""What a training step costs and what the machine can do: for the benchmarks' "fraction of peak".

The model's cost is counted layer by layer (multiply-adds of its Conv2D and Dense layers, 2 FLOP
each): forward, then training = forward + the weight gradients (as many FLOPs as the forward) +
the input gradients (as many again, except the first layer's, which nothing needs). Batch norm,
pooling, activations and the optimizer are left out: they are memory-bound and < 1% of the FLOPs.

The machine's peak is measured, not looked up: the best of a few large matrix products
(TensorFlow's matmul, i.e. oneDNN's GEMM on a CPU) in the given dtype, on every core. A GEMM is
the kernel closest to the FMA units' limit that TensorFlow has, so the fraction is of what this
TensorFlow can reach on this machine; a vendor's FMA rate is higher still (docs/results.md says by how much).
"""
from __future__ import annotations

import time


def forward_flops(model) -> int:
    """FLOPs of one image's forward pass through the model's Conv2D and Dense layers."""
    import keras
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, h, w, c_out = layer.output.shape                                   # (None, H, W, C_out)
            kh, kw, c_in, _ = layer.kernel.shape
            total += 2 * h * w * kh * kw * c_in * c_out
        elif isinstance(layer, keras.layers.Dense):
            total += 2 * layer.kernel.shape[0] * layer.kernel.shape[1]
    return int(total)


def training_flops(model) -> int:
    """FLOPs of one image's training step: forward, weight gradients, input gradients (none for
    the first layer)."""
    import keras
    first = next(layer for layer in model.layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)))
    first_only = keras.Sequential([keras.Input(model.input_shape[1:]), first.__class__.from_config(first.get_config())])
    return 3 * forward_flops(model) - forward_flops(first_only)


def matmul_peak(dtype: str, n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of the best of `repeats` (n x n) @ (n x n) products in `dtype` (after a warm-up)."""
    import tensorflow as tf
    a = tf.random.stateless_uniform((n, n), (0, 1), dtype=tf.float32)
    a = tf.cast(a, dtype)
    product = tf.function(lambda x: tf.reduce_sum(tf.cast(tf.linalg.matmul(x, x), tf.float32)))
    product(a).numpy()                                                              # warm-up: tracing
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        product(a).numpy()
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def peak_line(model, step_seconds: float, batch_size: int, dtype: str) -> str:
    """'training step X GFLOP/s = Y% of this CPU's measured peak (Z GFLOP/s, <dtype> matmul)'."""
    per_image = training_flops(model)
    flops = per_image * batch_size / step_seconds
    peak_dtype = "bfloat16" if "bfloat16" in dtype else "float32"
    peak = matmul_peak(peak_dtype)
    return (f"training step {flops / 1e9:.1f} GFLOP/s ({per_image / 1e6:.1f} MFLOP per image) = "
            f"{100 * flops / peak:.0f}% of this machine's measured peak, {peak / 1e9:.1f} GFLOP/s "
            f"({peak_dtype} matmul)")
