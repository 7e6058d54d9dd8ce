"""``PersonRecord``: everything personlens knows about one person crop.

A record is keyed by the SHA-256 of the crop's file bytes, so the same crop indexed twice
(from any path) is one record. ``model_version`` identifies the models that produced the
attributes and embeddings: records with different versions live in different embedding
spaces and are never compared with each other.
"""
from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass

import numpy as np

NORM_TOLERANCE = 1e-3
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def content_id(data: bytes) -> str:
    """The record id of a crop: hex SHA-256 of its file bytes."""
    return hashlib.sha256(data).hexdigest()


def as_unit_vector(v, name: str = "embedding") -> np.ndarray:
    """A 1-D float32 copy of ``v``, checked to be finite and of unit L2 norm (within 1e-3)."""
    a = np.ascontiguousarray(np.asarray(v, dtype=np.float32).reshape(-1))
    if a.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinity")
    norm = float(np.linalg.norm(a.astype(np.float64)))
    if abs(norm - 1.0) > NORM_TOLERANCE:
        raise ValueError(f"{name} is not a unit vector (norm {norm:.6f})")
    return a


@dataclass(eq=False)
class PersonRecord:
    id: str                              # hex SHA-256 of the crop's file bytes
    path: str                            # where the crop was found
    attributes: dict[str, float]         # attribute name -> probability
    present: list[str]                   # attributes whose probability reaches its threshold
    search_embedding: np.ndarray         # float32 unit vector (text-search space)
    reid_embedding: np.ndarray           # float32 unit vector (re-identification space)
    model_version: str
    camera: str | None = None
    timestamp: float | None = None       # seconds since the epoch
    track_id: str | None = None
    description: str | None = None

    def __post_init__(self):
        if not isinstance(self.id, str) or not _HEX64.match(self.id):
            raise ValueError(f"record id must be a lowercase hex SHA-256, got {self.id!r}")
        if not self.path:
            raise ValueError("record path is empty")
        if not self.model_version:
            raise ValueError("record model_version is empty")
        attrs = {}
        for k, v in dict(self.attributes).items():
            p = float(v)
            if math.isnan(p) or not 0.0 <= p <= 1.0:
                raise ValueError(f"attribute {k!r}: probability {v!r} is not in [0, 1]")
            attrs[str(k)] = p
        self.attributes = attrs
        unknown = [n for n in self.present if n not in attrs]
        if unknown:
            raise ValueError(f"present attributes without a probability: {unknown}")
        if len(set(self.present)) != len(self.present):
            raise ValueError("present attributes repeat")
        self.present = [str(n) for n in self.present]
        self.search_embedding = as_unit_vector(self.search_embedding, "search_embedding")
        self.reid_embedding = as_unit_vector(self.reid_embedding, "reid_embedding")
        if self.timestamp is not None:
            self.timestamp = float(self.timestamp)
            if not math.isfinite(self.timestamp):
                raise ValueError("timestamp is NaN or infinite")
        for name in ("camera", "track_id", "description"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, str):
                raise ValueError(f"{name} must be a string or None")

    def __eq__(self, other) -> bool:
        if not isinstance(other, PersonRecord):
            return NotImplemented
        return (self.to_dict(embeddings=False) == other.to_dict(embeddings=False)
                and np.array_equal(self.search_embedding, other.search_embedding)
                and np.array_equal(self.reid_embedding, other.reid_embedding))

    def top_present(self, n: int | None = None) -> list[str]:
        """Present attributes, most probable first."""
        return sorted(self.present, key=lambda a: -self.attributes[a])[:n]

    def to_dict(self, embeddings: bool = False) -> dict:
        d = {"id": self.id, "path": self.path, "attributes": dict(self.attributes),
             "present": list(self.present), "camera": self.camera, "timestamp": self.timestamp,
             "track_id": self.track_id, "model_version": self.model_version,
             "description": self.description}
        if embeddings:
            d["search_embedding"] = self.search_embedding.tolist()
            d["reid_embedding"] = self.reid_embedding.tolist()
        return d
