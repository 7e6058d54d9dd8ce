"""Pedestrian data sets: each item is ``(image, pid, camid, attributes)``."""
from __future__ import annotations

from pathlib import Path

from .base import PersonDataset, Sample

DATASETS = ("peta", "pa100k")


def create_dataset(name: str, root: str | Path, split: str = "train", partition: int = 0,
                   attributes: str | list[str] = "standard",
                   exclude_subsets: tuple[str, ...] = ()) -> PersonDataset:
    """Build a data set by name: ``"peta"`` or ``"pa100k"`` (``partition`` and
    ``exclude_subsets`` are PETA-only)."""
    key = name.lower().replace("-", "").replace("_", "")
    if key == "peta":
        from .peta import PETA

        return PETA(root, split=split, partition=partition, attributes=attributes,
                    exclude_subsets=exclude_subsets)
    if key == "pa100k":
        from .pa100k import PA100K

        if partition != 0 or exclude_subsets:
            raise ValueError("PA-100K has a single official split and no sub-datasets")
        return PA100K(root, split=split, attributes=attributes)
    raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")


__all__ = ["DATASETS", "PersonDataset", "Sample", "create_dataset"]
