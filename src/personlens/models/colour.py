"""A hand-crafted colour descriptor for re-ID: the HSV part of LOMO (Liao et al., CVPR 2015).

Why a hand-crafted feature beside a learned one: our learned re-ID part saw about 1,000
identities from a handful of cameras, and on cameras it never saw it ranks people mostly by
global appearance. Clothing colour, measured per horizontal band and made robust to light
by Retinex, is what classic re-ID relied on for cameras without training data, and it adds
to the learned embedding instead of duplicating it (the "feature fusion" of Wu et al.,
WACV 2016). ``docs/results.md`` has the numbers.

The descriptor of a crop (``colour_descriptor``):

1. resize to 128x48 and apply multi-scale Retinex with colour restoration (scales 5 and 20
   pixels), so that a person looks alike under different cameras' light;
2. quantise HSV into 8x8x8 joint bins; count them in 10x10 windows with stride 5;
3. per row of windows keep each bin's *maximum* count over the horizontal positions
   ("local maximal occurrence": robust to the person's pose and position in the crop);
4. repeat on two 2x2-average-pooled copies (3 scales: 24 + 11 + 5 rows x 512 bins);
5. ``log(1 + x)``, then L2-normalise. 20,480 values.

LOMO's SILTP texture part is left out: colour is what is missing from the learned part.
The descriptor is too long for an index; ``ColourProjection`` maps it to a short vector
fitted on the re-ID training images (see ``personlens.train.reid``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter


@dataclass(frozen=True)
class ColourConfig:
    height: int = 128
    width: int = 48
    bins: int = 8                       # per HSV channel; joint bins = bins ** 3
    window: int = 10
    stride: int = 5
    scales: int = 3
    retinex_sigmas: tuple[float, ...] = (5.0, 20.0)

    def __post_init__(self):
        if self.window % self.stride:
            raise ValueError("window must be a multiple of stride")
        if self.height < self.window * 2 ** (self.scales - 1) or \
                self.width < self.window * 2 ** (self.scales - 1):
            raise ValueError(f"{self.height}x{self.width} is too small for {self.scales} scales "
                             f"of {self.window}-pixel windows")

    @property
    def dim(self) -> int:
        rows, h = 0, self.height
        for _ in range(self.scales):
            rows += (h - self.window) // self.stride + 1
            h //= 2
        return rows * self.bins ** 3

    def to_dict(self) -> dict:
        d = asdict(self)
        d["retinex_sigmas"] = list(self.retinex_sigmas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ColourConfig":
        d = dict(d)
        if "retinex_sigmas" in d:
            d["retinex_sigmas"] = tuple(d["retinex_sigmas"])
        return cls(**d)


def retinex(rgb: np.ndarray, sigmas=(5.0, 20.0)) -> np.ndarray:
    """Multi-scale Retinex with colour restoration, stretched to [0, 1] (1st-99th percentile)."""
    x = rgb.astype(np.float32) + 1.0
    log_x = np.log(x)
    msr = sum(log_x - np.log(gaussian_filter(x, sigma=(s, s, 0))) for s in sigmas) / len(sigmas)
    out = msr * np.log(125.0 * x / x.sum(-1, keepdims=True))
    lo, hi = np.percentile(out, (1, 99))
    return np.clip((out - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0)


def rgb_to_hsv(x: np.ndarray) -> np.ndarray:
    """``(..., 3)`` RGB in [0, 1] -> HSV in [0, 1] (hue 0 for greys)."""
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    mx, mn = x.max(-1), x.min(-1)
    d = mx - mn
    chroma = d > 1e-6
    safe = np.where(chroma, d, 1.0)
    rc, gc, bc = (mx - r) / safe, (mx - g) / safe, (mx - b) / safe
    h = np.where(r == mx, bc - gc, np.where(g == mx, 2.0 + rc - bc, 4.0 + gc - rc))
    h = np.where(chroma, (h / 6.0) % 1.0, 0.0)
    s = np.where(mx > 1e-6, d / np.where(mx > 1e-6, mx, 1.0), 0.0)
    return np.stack([h, s, mx], -1)


def max_occurrence(bins: np.ndarray, n_bins: int, window: int, stride: int) -> np.ndarray:
    """``(rows, n_bins)``: per row of ``window``-sized windows (``stride`` apart), each bin's
    largest count over the horizontal positions."""
    rows, cols = bins.shape[0] // stride, bins.shape[1] // stride
    b = bins[:rows * stride, :cols * stride]
    cell = (np.arange(rows * stride)[:, None] // stride) * cols + np.arange(cols * stride) // stride
    hist = np.bincount((cell * n_bins + b).ravel(), minlength=rows * cols * n_bins)
    hist = hist.reshape(rows, cols, n_bins).astype(np.float32)
    k = window // stride   # a window is k x k cells
    windows = sum(hist[i:rows - k + 1 + i, j:cols - k + 1 + j] for i in range(k) for j in range(k))
    return windows.max(1)


def _halve(x: np.ndarray) -> np.ndarray:
    h, w = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
    return x[:h, :w].reshape(h // 2, 2, w // 2, 2, -1).mean((1, 3))


def colour_descriptor(image: Image.Image, config: ColourConfig = ColourConfig()) -> np.ndarray:
    """The ``(config.dim,)`` float32 unit-length descriptor of one crop (any size, any mode)."""
    rgb = np.asarray(image.convert("RGB").resize((config.width, config.height), Image.BILINEAR))
    x = retinex(rgb, config.retinex_sigmas) if config.retinex_sigmas else rgb / 255.0
    n = config.bins
    parts = []
    for _ in range(config.scales):
        q = np.minimum((rgb_to_hsv(x) * n).astype(np.int64), n - 1)
        parts.append(max_occurrence((q[..., 0] * n + q[..., 1]) * n + q[..., 2], n ** 3,
                                    config.window, config.stride).ravel())
        x = _halve(x)
    f = np.log1p(np.concatenate(parts))
    return (f / max(float(np.linalg.norm(f)), 1e-12)).astype(np.float32)


def colour_descriptors(images, config: ColourConfig = ColourConfig()) -> np.ndarray:
    """``(N, config.dim)`` float32 descriptors of decoded crops (PIL images) or image paths."""
    from ..data.images import load_image

    rows = [colour_descriptor(im if isinstance(im, Image.Image) else load_image(im), config)
            for im in images]
    return np.stack(rows) if rows else np.zeros((0, config.dim), np.float32)


def fit_colour_projection(descriptors: np.ndarray, labels: np.ndarray, dim: int = 256,
                          pca_dim: int = 512, ridge: float = 1e-3,
                          seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(mean (D,), projection (D, dim))`` learned from identity-labelled descriptors.

    Linear discriminant analysis in the leading ``pca_dim`` principal components: whiten the
    within-identity scatter (plus ``ridge`` times its mean eigenvalue, for stability), then
    keep the ``dim`` directions along which identities' means differ most. Colour changes of
    one person between cameras (light, white balance) are down-weighted; colour differences
    between people are kept. ``dim`` must be below the number of identities."""
    from sklearn.utils.extmath import randomized_svd

    x = np.asarray(descriptors, np.float32)
    labels = np.asarray(labels)
    classes, y = np.unique(labels, return_inverse=True)
    if x.ndim != 2 or len(x) != len(labels):
        raise ValueError("descriptors must be (N, D) with one label per row")
    if not 0 < dim < len(classes):
        raise ValueError(f"dim must be between 1 and the number of identities - 1 "
                         f"({len(classes) - 1}), got {dim}")
    pca_dim = min(pca_dim, len(x) - 1, x.shape[1])
    if pca_dim < dim:
        raise ValueError(f"need at least {dim + 1} training descriptors for a {dim}-d projection")
    mean = x.mean(0)
    x = x - mean
    _, _, vt = randomized_svd(x, pca_dim, n_oversamples=64, n_iter=3, random_state=seed)
    pca = vt.T.astype(np.float64)                         # (D, pca_dim)
    z = x @ pca
    counts = np.bincount(y).astype(np.float64)
    means = np.zeros((len(classes), pca_dim))
    np.add.at(means, y, z)
    means /= counts[:, None]
    within = z - means[y]
    sw = within.T @ within / len(z)
    sw += ridge * np.trace(sw) / pca_dim * np.eye(pca_dim)
    ev, vecs = np.linalg.eigh(sw)
    whiten = vecs / np.sqrt(ev)
    between = (means - means.mean(0)) @ whiten
    _, _, vb = np.linalg.svd(between, full_matrices=False)
    proj = pca @ whiten @ vb[:dim].T
    return mean.astype(np.float32), proj.astype(np.float32)
