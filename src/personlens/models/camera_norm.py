"""Per-camera centring of re-ID embeddings (test-time camera statistics, no labels).

Every camera adds its own offset to the features of everyone it sees: lighting, white
balance, resolution, viewpoint, background. Across cameras, cosine similarity then rewards
"seen by the same kind of camera" as much as "same person". Subtracting each camera's mean
embedding, computed from unlabeled images of that camera, removes that shared offset, so
the remaining similarity is about the person. This is the first-moment form of camera-based
batch normalisation (Zhuang et al., "Rethinking the Distribution Gap of Person
Re-identification with Camera-based Batch Normalization", ECCV 2020), applied to a frozen
embedding instead of inside the network.

A camera with fewer than ``min_images`` images gets the mean of all images instead: a mean
over a handful of people is mostly those people, and subtracting it would erase them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["CameraCentring", "CameraSums", "unit_rows"]


def unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _key(c):
    """Camera ids as plain Python values (numpy ints and strings from arrays included)."""
    return c.item() if hasattr(c, "item") else c


@dataclass
class CameraCentring:
    """Per-camera means of unit embeddings; ``transform`` centres and re-normalises.

    Camera ids are any hashable values (ints in the benchmarks, names in a library)."""

    global_mean: np.ndarray
    camera_means: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)
    min_images: int = 10

    @classmethod
    def fit(cls, features: np.ndarray, camids, min_images: int = 10) -> "CameraCentring":
        """Statistics from unlabeled ``features`` ``(N, d)`` and their camera ids ``(N,)``."""
        f = np.asarray(features, np.float32)
        cams = [_key(c) for c in np.asarray(camids, dtype=object).reshape(-1)]
        if f.ndim != 2 or len(f) == 0:
            raise ValueError(f"need a non-empty (N, d) feature array, got shape {f.shape}")
        if len(cams) != len(f):
            raise ValueError(f"{len(f)} features but {len(cams)} camera ids")
        acc = CameraSums(f.shape[1])
        acc.add(f, cams)
        return acc.centring(min_images)

    def transform(self, features: np.ndarray, camids) -> np.ndarray:
        """Unit vectors of ``features - mean of their camera`` (the global mean for cameras
        without enough images, not seen by ``fit``, or ``None``)."""
        f = np.asarray(features, np.float32)
        cams = [_key(c) for c in np.asarray(camids, dtype=object).reshape(-1)]
        if len(cams) != len(f):
            raise ValueError(f"{len(f)} features but {len(cams)} camera ids")
        if f.ndim != 2 or f.shape[1] != self.global_mean.shape[0]:
            raise ValueError(f"features of width {f.shape[-1]} for statistics of width "
                             f"{self.global_mean.shape[0]}")
        if not cams:
            return f
        means = np.stack([self.camera_means.get(c, self.global_mean) for c in cams])
        return unit_rows(f - means)


class CameraSums:
    """Running per-camera sums, for statistics over more embeddings than fit in memory
    (a library's whole store, read in chunks). ``None`` cameras count for the global mean."""

    def __init__(self, dim: int):
        self.total = np.zeros(dim, np.float64)
        self.n = 0
        self.sums: dict = {}
        self.counts: dict = {}

    def add(self, features: np.ndarray, camids) -> None:
        f = np.asarray(features, np.float64)
        self.total += f.sum(0)
        self.n += len(f)
        cams = np.array([_key(c) for c in camids], dtype=object)
        for c in set(cams.tolist()) - {None}:
            rows = cams == c
            self.sums[c] = self.sums.get(c, 0.0) + f[rows].sum(0)
            self.counts[c] = self.counts.get(c, 0) + int(rows.sum())

    def centring(self, min_images: int = 10) -> CameraCentring:
        if self.n == 0:
            raise ValueError("no embeddings to compute camera statistics from")
        means = {c: (s / self.counts[c]).astype(np.float32) for c, s in self.sums.items()
                 if self.counts[c] >= min_images}
        return CameraCentring((self.total / self.n).astype(np.float32), means, dict(self.counts),
                              min_images)
