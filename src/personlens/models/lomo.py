"""LOMO, the hand-crafted re-ID descriptor (Liao et al., CVPR 2015): colour and SILTP texture.

Why a hand-crafted feature beside a learned one: our learned re-ID part saw about 1,000
identities from a handful of cameras, and on cameras it never saw it ranks people mostly by
global appearance. Clothing colour, measured per horizontal band and made robust to light
by Retinex, is what classic re-ID relied on for cameras without training data, and it adds
to the learned embedding instead of duplicating it (the "feature fusion" of Wu et al.,
WACV 2016). ``docs/results.md`` has the numbers.

The descriptor of a crop (``lomo_descriptor``):

1. resize to 128x48 and apply multi-scale Retinex with colour restoration (scales 5 and 20
   pixels), so that a person looks alike under different cameras' light;
2. quantise HSV into 8x8x8 joint bins; count them in 10x10 windows with stride 5;
3. per row of windows keep each bin's *maximum* count over the horizontal positions
   ("local maximal occurrence": robust to the person's pose and position in the crop);
4. repeat on two 2x2-average-pooled copies (3 scales: 24 + 11 + 5 rows x 512 bins);
5. ``log(1 + x)``, then L2-normalise. 20,480 values.

With ``texture_weight`` > 0, LOMO's texture half too: SILTP codes at radii 3 and 5 of the
Retinex image's intensity, counted the same way (81 patterns per radius), appended with that
weight. The descriptor is too long for an index; ``personlens.train.lomo_fit`` learns a
short projection from the re-ID training identities (used by ``personlens.train.reid``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class LomoConfig:
    """How a LOMO descriptor is computed; saved in a re-ID head's config (``lomo``)."""

    height: int = 128
    width: int = 48
    bins: int = 8                       # per HSV channel; joint bins = bins ** 3
    window: int = 10
    stride: int = 5
    scales: int = 3
    retinex_sigmas: tuple[float, ...] = (5.0, 20.0)
    # LOMO's texture half: SILTP codes (4 neighbours at each radius, 3^4 = 81 patterns) counted
    # like the colours; weight t puts [sqrt(1 - t) * colour, sqrt(t) * texture] (0: colour only)
    texture_weight: float = 0.0
    siltp_radii: tuple[int, ...] = (3, 5)
    siltp_tau: float = 0.3

    def __post_init__(self):
        if not 0.0 <= self.texture_weight < 1.0:
            raise ValueError(f"texture_weight must be in [0, 1), got {self.texture_weight}")
        if self.window % self.stride:
            raise ValueError("window must be a multiple of stride")
        if self.height < self.window * 2 ** (self.scales - 1) or \
                self.width < self.window * 2 ** (self.scales - 1):
            raise ValueError(f"{self.height}x{self.width} is too small for {self.scales} scales "
                             f"of {self.window}-pixel windows")

    @property
    def rows(self) -> int:
        """Rows of windows over all scales."""
        rows, h = 0, self.height
        for _ in range(self.scales):
            rows += (h - self.window) // self.stride + 1
            h //= 2
        return rows

    @property
    def lomo_dim(self) -> int:
        return self.rows * self.bins ** 3

    @property
    def texture_dim(self) -> int:
        return self.rows * 81 * len(self.siltp_radii) if self.texture_weight else 0

    @property
    def dim(self) -> int:
        return self.lomo_dim + self.texture_dim

    def to_dict(self) -> dict:
        d = asdict(self)
        d["retinex_sigmas"] = list(self.retinex_sigmas)
        d["siltp_radii"] = list(self.siltp_radii)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "LomoConfig":
        d = dict(d)
        for k in ("retinex_sigmas", "siltp_radii"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)

    def with_texture_weight(self, weight: float) -> "LomoConfig":
        return replace(self, texture_weight=float(weight))


def reweight_texture(descriptors: np.ndarray, config: LomoConfig, weight: float) -> np.ndarray:
    """Descriptors made with ``config`` (texture weight > 0) as ``config.with_texture_weight(
    weight)`` would make them: both halves are unit vectors, so only their scales change."""
    if not config.texture_weight:
        raise ValueError("the descriptors hold no texture half to re-weight")
    c = descriptors[:, :config.lomo_dim] / np.sqrt(1.0 - config.texture_weight)
    if not weight:
        return c
    t = descriptors[:, config.lomo_dim:] / np.sqrt(config.texture_weight)
    return np.concatenate([np.sqrt(1.0 - weight) * c, np.sqrt(weight) * t], 1)


def retinex(rgb: np.ndarray, sigmas=(5.0, 20.0)) -> np.ndarray:
    """Multi-scale Retinex with colour restoration, stretched to [0, 1] (1st-99th percentile)."""
    from scipy.ndimage import gaussian_filter   # here: the pipeline imports this module at start

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


def siltp_codes(gray: np.ndarray, radius: int, tau: float) -> np.ndarray:
    """Scale-invariant local ternary patterns (Liao et al., CVPR 2010): per pixel, each of the
    4 neighbours at ``radius`` is brighter than (1 + tau) x the centre, darker than (1 - tau) x
    it, or neither; the 4 answers make a code in [0, 81). A change of light that scales
    intensities leaves the codes unchanged."""
    h, w = gray.shape
    padded = np.pad(gray, radius, mode="edge")
    code = np.zeros((h, w), np.int64)
    for dy, dx in ((0, radius), (-radius, 0), (0, -radius), (radius, 0)):
        nb = padded[radius + dy:radius + dy + h, radius + dx:radius + dx + w]
        code = code * 3 + np.where(nb > (1 + tau) * gray, 1, np.where(nb < (1 - tau) * gray, 2, 0))
    return code


def _unit(f: np.ndarray) -> np.ndarray:
    f = np.log1p(f)
    return f / max(float(np.linalg.norm(f)), 1e-12)


def lomo_descriptor(image: Image.Image, config: LomoConfig = LomoConfig()) -> np.ndarray:
    """The ``(config.dim,)`` float32 unit-length descriptor of one crop (any size, any mode)."""
    rgb = np.asarray(image.convert("RGB").resize((config.width, config.height), Image.BILINEAR))
    x = retinex(rgb, config.retinex_sigmas) if config.retinex_sigmas else rgb / 255.0
    n = config.bins
    colour, texture = [], []
    for _ in range(config.scales):
        q = np.minimum((rgb_to_hsv(x) * n).astype(np.int64), n - 1)
        colour.append(max_occurrence((q[..., 0] * n + q[..., 1]) * n + q[..., 2], n ** 3,
                                     config.window, config.stride).ravel())
        if config.texture_weight:
            gray = x.mean(-1) + 1e-3   # positive, so that a black patch has defined ratios
            texture += [max_occurrence(siltp_codes(gray, r, config.siltp_tau), 81, config.window,
                                       config.stride).ravel() for r in config.siltp_radii]
        x = _halve(x)
    f = _unit(np.concatenate(colour))
    if config.texture_weight:
        t = config.texture_weight
        f = np.concatenate([np.sqrt(1.0 - t) * f, np.sqrt(t) * _unit(np.concatenate(texture))])
    return f.astype(np.float32)


def lomo_descriptors(images, config: LomoConfig = LomoConfig()) -> np.ndarray:
    """``(N, config.dim)`` float32 descriptors of decoded crops (PIL images) or image paths."""
    from ..data.images import load_image

    rows = [lomo_descriptor(im if isinstance(im, Image.Image) else load_image(im), config)
            for im in images]
    return np.stack(rows) if rows else np.zeros((0, config.dim), np.float32)


ColourConfig = LomoConfig  # the name before 0.2; kept for code that imports it
