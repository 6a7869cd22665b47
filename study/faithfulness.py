"""Deletion and insertion curves of a pixel ranking (Petsiuk et al. 2018, RISE).

A ranking orders an image's H*W pixels from most to least important. Over
`steps` equal steps the curve removes (deletion) or reveals (insertion) the
top-ranked pixels and records the model's probability of the explained class:
- deletion starts from the image and sets removed pixels to 0 (black);
- insertion starts from a Gaussian-blurred copy of the image (sigma BLUR_SIGMA
  pixels, as in the paper) and pastes the original pixels back.
The AUC is the trapezoid area under the steps+1 points on x in [0, 1], i.e. the
mean class probability over the curve. A faithful map has a lower deletion AUC
and a higher insertion AUC than a seeded random ranking.
"""
from __future__ import annotations

import numpy as np

BLUR_SIGMA = 4.0   # pixels; blurs a 32 x 32 image enough to remove most of its detail


def ranking_from_maps(maps: np.ndarray) -> np.ndarray:
    """(N, H*W) pixel indices by decreasing heat (ties keep raster order)."""
    flat = maps.reshape(len(maps), -1)
    return np.argsort(-flat, axis=1, kind="stable")


def random_rankings(n: int, n_pixels: int, seed: int) -> np.ndarray:
    """(n, n_pixels) seeded random pixel orders, the baseline a map must beat."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(n_pixels) for _ in range(n)])


def step_counts(n_pixels: int, steps: int) -> np.ndarray:
    """(steps+1,) pixels changed at each point: 0, n/steps, ..., n (rounded)."""
    return np.round(np.linspace(0, n_pixels, steps + 1)).astype(int)


def blurred(image: np.ndarray) -> np.ndarray:
    """The insertion start: image (H, W, C) blurred over H and W only."""
    from scipy.ndimage import gaussian_filter
    return gaussian_filter(image, sigma=(BLUR_SIGMA, BLUR_SIGMA, 0), mode="reflect")


def curve_images(image: np.ndarray, ranking: np.ndarray, steps: int, mode: str) -> np.ndarray:
    """(steps+1, H, W, C) images along a 'deletion' or 'insertion' curve."""
    h, w, _ = image.shape
    rank_of = np.empty(h * w, int)
    rank_of[ranking] = np.arange(h * w)                              # pixel -> its rank
    changed = rank_of[None, :] < step_counts(h * w, steps)[:, None]  # (steps+1, H*W)
    changed = changed.reshape(-1, h, w, 1)
    if mode == "deletion":
        return np.where(changed, 0.0, image[None]).astype(np.float32)
    if mode == "insertion":
        return np.where(changed, image[None], blurred(image)[None]).astype(np.float32)
    raise ValueError(f"mode must be 'deletion' or 'insertion', got {mode!r}")


def curves(predict, images: np.ndarray, rankings: np.ndarray, targets: np.ndarray,
           steps: int, mode: str) -> np.ndarray:
    """(N, steps+1) probability of targets[i] along each image's curve; predict: (M,H,W,C) -> (M,K)."""
    out = np.empty((len(images), steps + 1), np.float32)
    for i, (image, ranking, t) in enumerate(zip(images, rankings, targets)):
        out[i] = np.asarray(predict(curve_images(image, ranking, steps, mode)))[:, t]
    return out


def auc(curve: np.ndarray) -> np.ndarray:
    """Trapezoid area under curve(s) over x in [0, 1] (last axis = steps+1 points)."""
    steps = curve.shape[-1] - 1
    return np.trapezoid(curve, dx=1.0 / steps, axis=-1)


def faithfulness(predict, images: np.ndarray, maps: np.ndarray, targets: np.ndarray,
                 steps: int, seed: int) -> dict:
    """Mean deletion/insertion AUC of the maps' rankings and of seeded random rankings."""
    ranked = ranking_from_maps(maps)
    rand = random_rankings(len(images), ranked.shape[1], seed)
    result = {}
    for prefix, order in (("", ranked), ("random_", rand)):
        for mode in ("deletion", "insertion"):
            result[f"{prefix}{mode}_auc"] = float(auc(curves(predict, images, order, targets,
                                                             steps, mode)).mean())
    result["n_images"] = int(len(images))
    return result
