"""The common dataset shape: each item is ``(image, pid, camid, attributes)``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .images import load_image
from .schema import AttributeSchema


@dataclass(frozen=True)
class Sample:
    path: Path
    pid: int
    camid: int
    attributes: np.ndarray  # float32 0/1 per schema attribute


class PersonDataset:
    """A list of samples plus the attribute schema they are labelled with."""

    def __init__(self, samples: list[Sample], schema: AttributeSchema,
                 transform: Callable | None = None):
        self.samples = samples
        self.schema = schema
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        s = self.samples[i]
        img = load_image(s.path)
        if self.transform is not None:
            img = self.transform(img)
        return img, s.pid, s.camid, s.attributes

    @property
    def labels(self) -> np.ndarray:
        """(N, A) label matrix."""
        if not self.samples:
            return np.zeros((0, len(self.schema)), np.float32)
        return np.stack([s.attributes for s in self.samples])

    @property
    def paths(self) -> list[Path]:
        return [s.path for s in self.samples]
