"""Tiny generated person crops and synthetic records for the library, store and index tests."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from personlens.inference.records import PersonRecord

SIZE = (48, 112)  # width x height: person-crop shaped, small so the model runs fast


def crop_image(i: int) -> Image.Image:
    """Crop ``i``: noise, a solid colour or a smooth colour field (so attributes vary:
    with the fixture model, solid red / near-black crops lack carryingBackpack and smooth
    fields tend to lack upperBodyBlack, while noise has both)."""
    rng = np.random.default_rng(1000 + i)
    kind = i % 3
    if kind == 0:
        arr = rng.integers(0, 256, size=(SIZE[1], SIZE[0], 3), dtype=np.uint8)
        return Image.fromarray(arr)
    if kind == 1:
        colours = [(255, 0, 0), (30, 30, 30), (0, 0, 255), (128, 128, 128), (200, 180, 50)]
        base = np.array(colours[(i // 3) % len(colours)], np.int16)
        arr = base + rng.integers(-3, 4, size=(SIZE[1], SIZE[0], 3), dtype=np.int16)
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    coarse = Image.fromarray(rng.integers(0, 256, size=(8, 4, 3), dtype=np.uint8))
    return coarse.resize(SIZE, Image.BICUBIC)


def write_crops(folder: Path, n: int, start: int = 0, prefix: str = "crop") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(start, start + n):
        p = folder / f"{prefix}{i:03d}.png"
        crop_image(i).save(p)
        out.append(p)
    return out


def unit(rng: np.random.Generator, dim: int) -> np.ndarray:
    v = rng.normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


NAMES = ["personalMale", "accessoryHat", "carryingBackpack", "upperBodyBlack"]


def make_record(i: int, present: list[str] | None = None, model_version: str = "v1",
                search_dim: int = 8, reid_dim: int = 12, **kw) -> PersonRecord:
    """A valid synthetic record; ``present`` defaults to a pattern that varies with ``i``."""
    rng = np.random.default_rng(i)
    if present is None:
        present = [n for j, n in enumerate(NAMES) if (i >> j) & 1]
    attrs = {n: (0.9 if n in present else 0.1) for n in NAMES}
    return PersonRecord(id=hashlib.sha256(f"crop-{i}".encode()).hexdigest(), path=f"/crops/{i}.png",
                        attributes=attrs, present=[n for n in NAMES if n in present],
                        search_embedding=unit(rng, search_dim), reid_embedding=unit(rng, reid_dim),
                        model_version=model_version, **kw)
