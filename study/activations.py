"""The four analysed layers' activations on a stratified sample of test images, in bounded memory.

Conv feature maps are large (conv2d: 32 x 32 x 64 = 65,536 floats per image), so they
are never held for all images at once: a first pass over the images in batches fits an
incremental PCA per conv layer (`partial_fit`), a second pass predicts again and keeps
only the `pca_dims`-dimensional projection. Peak memory is therefore set by one batch
(activations.batch_size) and the PCA state, not by the number of images. Dense layers
are small ((n, 512) and (n, 10)) and kept raw. For 3D surface views the channel-mean
maps of the first `surface_images` sampled images are kept for each conv layer.

The incremental PCA is scikit-learn's IncrementalPCA update (Ross et al. 2008) with one
change: the thin SVD of the stacked (k + b + 1, D) matrix is taken through its small
(k + b + 1)^2 Gram matrix. LAPACK's SVD of such a wide matrix took ~21 s and ~850 MB per
250-image batch of conv2d here; the Gram route takes ~0.2 s and ~160 MB, same components.
"""
from __future__ import annotations

import numpy as np

from study.data import preprocess, stratified_subset
from study.errors import StageError


class GramIncrementalPCA:
    """IncrementalPCA (same update and results as scikit-learn's) whose SVD goes through the Gram matrix."""

    def __init__(self, n_components: int):
        self.n_components = n_components
        self.n_samples_seen_ = 0
        self.mean_ = self.components_ = self.singular_values_ = None
        self.total_ss_ = 0.0  # sum of squared deviations from the mean over all features

    def partial_fit(self, x: np.ndarray) -> "GramIncrementalPCA":
        """Update mean, total variance and the top components with a batch x (b, D), b >= n_components."""
        x = np.asarray(x, np.float64)
        n_old, b = self.n_samples_seen_, len(x)
        n_new = n_old + b
        batch_mean = x.mean(axis=0)
        x = x - batch_mean                              # (b, D)
        if n_old == 0:
            self.mean_, stacked = batch_mean, x
        else:
            shift = self.mean_ - batch_mean             # (D,)
            stacked = np.vstack([self.singular_values_[:, None] * self.components_, x,
                                 np.sqrt(n_old * b / n_new) * shift[None]])  # (k + b + 1, D)
            self.total_ss_ += n_old * b / n_new * float(shift @ shift)
            self.mean_ = self.mean_ + (batch_mean - self.mean_) * (b / n_new)
        self.total_ss_ += float(np.einsum("ij,ij->", x, x))
        self.singular_values_, self.components_ = _top_svd(stacked, self.n_components)
        self.n_samples_seen_ = n_new
        return self

    @property
    def explained_variance_ratio_(self) -> np.ndarray:
        """(k,) fraction of the total variance along each component."""
        return self.singular_values_ ** 2 / self.total_ss_

    def transform(self, x: np.ndarray) -> np.ndarray:
        """(b, D) -> (b, k) coordinates along the components."""
        return (np.asarray(x, np.float64) - self.mean_) @ self.components_.T


def _top_svd(m: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k singular values (k,) and right singular vectors (k, D) of m (r, D), r << D, via eigh of m m^T."""
    w, u = np.linalg.eigh(m @ m.T)                      # (r,), (r, r), ascending
    w, u = w[::-1][:k], u[:, ::-1][:, :k]
    s = np.sqrt(np.clip(w, 0, None))
    # the Gram matrix squares the condition number: below ~sqrt(eps) * s_max a direction is noise
    scale = np.divide(1.0, s, out=np.zeros_like(s), where=s > 1e-7 * max(s[0], 1e-300))
    vt = (u.T @ m) * scale[:, None]                     # (k, D); zero rows for null directions
    signs = np.sign(vt[np.arange(k), np.abs(vt).argmax(axis=1)])  # sklearn's svd_flip convention
    signs[signs == 0] = 1
    return s, vt * signs[:, None]


def batch_slices(n: int, batch_size: int, min_size: int = 1) -> list[slice]:
    """Consecutive slices of size batch_size over range(n); a last one smaller than min_size is merged into the one before."""
    starts = list(range(0, n, batch_size))
    slices = [slice(s, min(s + batch_size, n)) for s in starts]
    if len(slices) > 1 and slices[-1].stop - slices[-1].start < min_size:
        # like scikit-learn's IncrementalPCA, keep >= n_components rows in every PCA batch
        slices[-2:] = [slice(slices[-2].start, n)]
    return slices


def channel_mean(maps: np.ndarray) -> np.ndarray:
    """(b, H, W, C) conv maps -> (b, H, W) mean over channels (the original study's surface view)."""
    return maps.mean(axis=-1).astype(np.float32)


def flatten(maps: np.ndarray) -> np.ndarray:
    """(b, H, W, C) -> (b, H*W*C) float32, one row per image."""
    return maps.reshape(len(maps), -1).astype(np.float32, copy=False)


def sample(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of n stratified test images (seeded); fails if the split is smaller than n."""
    if n > len(y):
        raise StageError(f"activations.n_samples = {n} is larger than the test split ({len(y)} images); "
                         f"allowed: <= {len(y)}")
    return stratified_subset(y, n, seed, "activations.n_samples")


def _predict(multi, x_uint8: np.ndarray, sl: slice) -> list[np.ndarray]:
    """The multi-output model's outputs (list of numpy arrays) on images x_uint8[sl]."""
    outs = multi(preprocess(x_uint8[sl]), training=False)
    return [np.asarray(o) for o in (outs if isinstance(outs, (list, tuple)) else [outs])]


def _is_conv(model, name: str) -> bool:
    """True if the named layer outputs (N, H, W, C) feature maps."""
    return len(model.get_layer(name).output.shape) == 4


def _fit_pass(multi, x_uint8, layers, slices, pcas, surface_images):
    """Pass 1: partial_fit each conv layer's PCA; return dense outputs and channel-mean surface maps."""
    dense = {name: [] for name in layers if name not in pcas}
    surfaces = {name: [] for name in pcas}
    for sl in slices:
        for name, out in zip(layers, _predict(multi, x_uint8, sl)):
            if name in pcas:
                pcas[name].partial_fit(flatten(out))        # (b, H*W*C)
                keep = max(0, min(surface_images - sl.start, len(out)))
                surfaces[name].append(channel_mean(out[:keep]))
            else:
                dense[name].append(out.astype(np.float32))  # (b, 512) or (b, 10)
    return ({k: np.concatenate(v) for k, v in dense.items()},
            {k: np.concatenate(v) for k, v in surfaces.items()})


def _transform_pass(multi, x_uint8, layers, slices, pcas):
    """Pass 2: predict again and project each conv layer, (b, H*W*C) -> (b, pca_dims)."""
    reduced = {name: [] for name in pcas}
    for sl in slices:
        for name, out in zip(layers, _predict(multi, x_uint8, sl)):
            if name in pcas:
                reduced[name].append(pcas[name].transform(flatten(out)).astype(np.float32))
    return {k: np.concatenate(v) for k, v in reduced.items()}


def extract(model, x_uint8: np.ndarray, layers, batch_size: int, pca_dims: int,
            surface_images: int) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Activations of `layers` on x_uint8 (n, 32, 32, 3) and each conv PCA's explained-variance ratio.

    Arrays: {layer: (n, d) float32} (conv layers PCA-reduced to d = pca_dims, dense raw)
    plus {"surface_<conv layer>": (min(surface_images, n), H, W) channel-mean maps}.
    """
    from study.model import layer_outputs

    n = len(x_uint8)
    if pca_dims > n:
        raise StageError(f"activations.pca_dims = {pca_dims} is larger than the {n} sampled images; "
                         f"allowed: <= activations.n_samples")
    multi = layer_outputs(model, layers)
    slices = batch_slices(n, batch_size, min_size=pca_dims)
    pcas = {name: GramIncrementalPCA(pca_dims) for name in layers if _is_conv(model, name)}
    dense, surfaces = _fit_pass(multi, x_uint8, layers, slices, pcas, surface_images)
    reduced = _transform_pass(multi, x_uint8, layers, slices, pcas)
    arrays = {name: (reduced[name] if name in pcas else dense[name]) for name in layers}
    arrays.update({f"surface_{name}": surfaces[name] for name in pcas})
    explained = {name: float(p.explained_variance_ratio_.sum()) for name, p in pcas.items()}
    return arrays, explained
