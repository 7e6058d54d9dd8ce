"""One record from several crops of the same person (a video track, an identity's images).

Attributes are fused as the weighted mean of the crops' calibrated probabilities and read
against the same per-attribute thresholds as a single crop. Where the crops disagree, so
that a clear share of them lands on each side of the threshold, the attribute is marked
**uncertain**: a coat seen from the front and from the back, a bag hidden in half the
frames. Embeddings are the normalised weighted mean of the crops' unit vectors (for
cosine search this is the centroid, which is what "this person" means over a track).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

# an attribute is uncertain when at least this share of the crops' weight is on each side
DISAGREEMENT = 1.0 / 3.0


@dataclass
class FusedAttributes:
    attributes: dict[str, float]
    present: list[str]
    uncertain: list[str]


def _weights(n: int, weights) -> np.ndarray:
    w = np.ones(n) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    if len(w) != n:
        raise ValueError(f"{n} crops but {len(w)} weights")
    if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError("weights must be finite, non-negative and not all zero")
    return w / w.sum()


def fuse_probabilities(probs: np.ndarray, weights=None) -> np.ndarray:
    """(K, A) crop probabilities -> (A,) fused probabilities."""
    probs = np.asarray(probs, np.float64)
    if probs.ndim != 2 or len(probs) == 0:
        raise ValueError("expected a (crops, attributes) array with at least one crop")
    return np.clip(_weights(len(probs), weights) @ probs, 0.0, 1.0)


def fuse_attributes(probs: np.ndarray, names: Sequence[str], thresholds: Sequence[float],
                    weights=None, disagreement: float = DISAGREEMENT) -> FusedAttributes:
    probs = np.asarray(probs, np.float64)
    fused = fuse_probabilities(probs, weights)
    thr = np.asarray(thresholds, np.float64)
    if len(names) != probs.shape[1] or len(thr) != probs.shape[1]:
        raise ValueError("names, thresholds and probabilities disagree in length")
    w = _weights(len(probs), weights)
    votes = w @ (probs >= thr).astype(np.float64)           # weighted share saying "present"
    split = (votes >= disagreement) & (votes <= 1.0 - disagreement) if len(probs) > 1 \
        else np.zeros(len(names), bool)
    attrs = {n: float(p) for n, p in zip(names, fused)}
    present = [n for n, p, t in zip(names, fused, thr) if p >= t]
    return FusedAttributes(attrs, present, [n for n, s in zip(names, split) if s])


def mean_unit(vectors: np.ndarray, weights=None) -> np.ndarray:
    v = np.asarray(vectors, np.float64)
    m = _weights(len(v), weights) @ v
    norm = np.linalg.norm(m)
    if norm < 1e-8:          # opposite vectors: fall back on the most weighted crop
        m = v[int(np.argmax(_weights(len(v), weights)))]
        norm = np.linalg.norm(m)
    return (m / norm).astype(np.float32)
