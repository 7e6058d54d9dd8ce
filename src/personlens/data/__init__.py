"""Pedestrian data sets: each item is ``(image, pid, camid, attributes)``."""
from __future__ import annotations

from pathlib import Path

from .base import PersonDataset, Sample

DATASETS = ("peta", "pa100k")


def create_dataset(name: str, root: str | Path, split: str = "train", partition: int = 0,
                   attributes: str | list[str] = "standard") -> PersonDataset:
    """Build a data set by name: ``"peta"`` or ``"pa100k"`` (``partition`` is PETA-only)."""
    key = name.lower().replace("-", "").replace("_", "")
    if key == "peta":
        from .peta import PETA

        return PETA(root, split=split, partition=partition, attributes=attributes)
    if key == "pa100k":
        from .pa100k import PA100K

        if partition != 0:
            raise ValueError("PA-100K has a single official split: partition must be 0")
        return PA100K(root, split=split, attributes=attributes)
    raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")


__all__ = ["DATASETS", "PersonDataset", "Sample", "create_dataset"]
