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


def tiny_par_training(root: Path, names: list[str], epochs: int = 3):
    """Train / val datasets of 8 + 4 generated crops with random labels for ``names``, and a
    fast ``TrainConfig`` for them (a linear head: no text encoder to load; the encoder's last
    stages still train): what the attribute-training tests share."""
    from personlens.data.base import PersonDataset, Sample
    from personlens.data.schema import PETA_SCHEMA
    from personlens.models.par import HeadConfig
    from personlens.train.par import TrainConfig

    paths = write_crops(root / "crops", 12)
    rng = np.random.default_rng(0)
    samples = [Sample(p, i, 0, rng.integers(0, 2, len(names)).astype(np.float32))
               for i, p in enumerate(paths)]
    schema = PETA_SCHEMA.subset(names)
    cfg = TrainConfig(head=HeadConfig(kind="linear"), epochs=epochs, batch_size=4, stage=14,
                      cache_root=str(root / "cache"), calibration="ma")
    return PersonDataset(samples[:8], schema), PersonDataset(samples[8:], schema), cfg
