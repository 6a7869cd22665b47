"""Starting weights from the fast CIFAR-10 training work (David Page, "How to train your ResNet";
Keller Jordan's airbench): params `whiten_init` and `dirac_init`. They change where training starts,
never the layers, so the saved model and every later stage are the same kind of model.

- whiten_init: the first conv's filters are the whitening transform of 3x3 image patches (each
  eigenvector of the patches' covariance over sqrt(its eigenvalue), with its negative, so the ReLU
  keeps both signs), centred on the patches' mean; filters left over keep Keras's initialisation.
- dirac_init: every later conv starts as the identity on its first `in` output channels (the
  output channel i copies input channel i at the kernel's centre); the others keep Keras's.
"""
from __future__ import annotations

import numpy as np

WHITEN_IMAGES = 2000   # training images the patch covariance is estimated from
WHITEN_EPS = 5e-4      # added to each eigenvalue, relative to their mean (airbench's 5e-4 on unit-variance inputs)
FIRST_CONV = "conv2d"


def patch_whitening(images: np.ndarray, size: int, filters: int, eps: float = WHITEN_EPS):
    """(kernel (size, size, C, 2k), bias (2k,)) whitening size x size patches of float images
    (N, H, W, C), k = min(size * size * C, filters // 2) strongest eigenvectors: outputs of the
    kernel plus bias have zero mean and unit variance over the patches, in pairs of opposite sign."""
    d = size * size * images.shape[-1]
    total, outer, count = np.zeros(d), np.zeros((d, d)), 0
    for chunk in np.array_split(images, max(1, len(images) // 250)):
        windows = np.lib.stride_tricks.sliding_window_view(chunk, (size, size), axis=(1, 2))  # N,h,w,C,kh,kw
        patches = windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, d).astype(np.float64)       # kh, kw, C order
        total += patches.sum(0)
        outer += patches.T @ patches
        count += len(patches)
    mean = total / count
    eigvals, eigvecs = np.linalg.eigh(outer / count - np.outer(mean, mean))
    k = min(d, filters // 2)
    order = np.argsort(eigvals)[::-1][:k]
    w = eigvecs[:, order] / np.sqrt(np.maximum(eigvals[order], 0) + eps * eigvals.mean())   # (d, k)
    w = np.concatenate([w, -w], axis=1)
    return w.reshape(size, size, images.shape[-1], 2 * k).astype(np.float32), (-mean @ w).astype(np.float32)


def dirac(kernel: np.ndarray) -> np.ndarray:
    """A (kh, kw, in, out) conv kernel whose first min(in, out) output channels are the identity."""
    kernel = kernel.copy()
    n = min(kernel.shape[2], kernel.shape[3])
    kernel[:, :, :, :n] = 0
    kernel[kernel.shape[0] // 2, kernel.shape[1] // 2, np.arange(n), np.arange(n)] = 1
    return kernel


def initialize(model, params: dict, images: np.ndarray) -> list[str]:
    """Apply params' whiten_init / dirac_init to a freshly built model, whitening from a seeded
    sample of the training images (uint8); returns a log line per change (none when both are off)."""
    from study.data import preprocess
    lines = []
    convs = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    if params["whiten_init"]:
        first = model.get_layer(FIRST_CONV)
        kernel, bias = first.get_weights()
        rng = np.random.default_rng([params["seed"], 1])
        sample = preprocess(images[rng.choice(len(images), min(WHITEN_IMAGES, len(images)), replace=False)])
        white, shift = patch_whitening(sample, kernel.shape[0], kernel.shape[-1])
        kernel[..., :white.shape[-1]], bias[:white.shape[-1]] = white, shift
        first.set_weights([kernel, bias])
        lines.append(f"whiten_init: {FIRST_CONV}'s first {white.shape[-1]} filters whiten 3x3 patches "
                     f"({len(sample)} training images)")
    if params["dirac_init"]:
        later = [c for c in convs if c.name != FIRST_CONV]
        for conv in later:
            kernel, *rest = conv.get_weights()
            conv.set_weights([dirac(kernel), *rest])
        lines.append(f"dirac_init: {', '.join(c.name for c in later)} start as the identity on their first "
                     f"input channels")
    return lines
