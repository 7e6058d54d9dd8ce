"""PA-100K (Liu et al., ICCV 2017) in its official layout: ``data/*.jpg`` + ``annotation.mat``.

``annotation.mat`` holds ``attributes`` (the 26 names), ``{train,val,test}_images_name``
(file names inside ``data/``) and ``{train,val,test}_label`` (N x 26, 0/1). The official
split is 80,000 / 10,000 / 10,000 images. PA-100K has no identities or cameras, so every
sample has ``pid = camid = -1``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import PersonDataset, Sample
from .schema import PA100K_SCHEMA

SPLITS = ("train", "val", "test", "trainval")


def _strings(cell) -> list[str]:
    """A MATLAB cell array of strings (as scipy loads it) -> list of str."""
    out = []
    for item in np.asarray(cell, dtype=object).ravel():
        while isinstance(item, np.ndarray):  # array(['name']) or array([array(['name'])])
            if item.size != 1:
                raise ValueError(f"expected one string per cell, got array of shape {item.shape}")
            item = item.ravel()[0]
        out.append(str(item).strip())
    return out


class PA100K(PersonDataset):
    """PA-100K with its official train/val/test split (``"trainval"`` = train + val).

    ``attributes="standard"`` selects all 26 attributes; or pass a list of names
    (spelled as in ``annotation.mat``, e.g. ``"Female"``, ``"Age18-60"``).
    """

    def __init__(self, root: str | Path, split: str = "train",
                 attributes: str | list[str] = "standard"):
        import scipy.io

        root = Path(root)
        mat_path = root / "annotation.mat"
        if not mat_path.exists():
            raise FileNotFoundError(
                f"{mat_path} not found: --root must hold data/ and annotation.mat (PA-100K layout)")
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose from {SPLITS}")

        mat = scipy.io.loadmat(str(mat_path))
        missing = [k for k in ("attributes", "train_images_name", "train_label")
                   if k not in mat]
        if missing:
            raise ValueError(f"{mat_path}: not a PA-100K annotation (missing {', '.join(missing)})")
        names = _strings(mat["attributes"])

        if isinstance(attributes, str):
            if attributes not in ("standard", "all"):
                raise ValueError(
                    f"attributes must be 'standard', 'all' or a list of names, got {attributes!r}")
            wanted = list(PA100K_SCHEMA.names)
        else:
            wanted = list(attributes)
        schema = PA100K_SCHEMA.subset(wanted)  # KeyError naming any unknown attribute
        try:
            cols = [names.index(n) for n in wanted]
        except ValueError:
            absent = [n for n in wanted if n not in names]
            raise KeyError(f"attribute(s) {absent} not in {mat_path} (it has {names})") from None

        parts = ("train", "val") if split == "trainval" else (split,)
        images_dir = root / "data"
        samples: list[Sample] = []
        for part in parts:
            files = _strings(mat[f"{part}_images_name"])
            labels = np.asarray(mat[f"{part}_label"])
            if labels.ndim != 2 or labels.shape != (len(files), len(names)):
                raise ValueError(
                    f"{mat_path}: {part}_label has shape {labels.shape}, "
                    f"expected ({len(files)}, {len(names)})")
            labels = labels[:, cols].astype(np.float32)
            samples.extend(
                Sample(path=images_dir / f, pid=-1, camid=-1, attributes=labels[i])
                for i, f in enumerate(files)
            )
        super().__init__(samples, schema)
        self.split = split
