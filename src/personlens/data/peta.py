"""PETA (Deng et al., ACM MM 2014) in the layout PAR toolkits use: ``images/`` + ``PETA.mat``.

``PETA.mat``: ``peta.data`` is 19000 x 109 (image index, global id, sub-dataset, person id,
105 binary attributes), ``peta.attribute`` the 105 names, ``peta.partion_attribute`` five
train/val/test splits (1-based image indices). Published results use the first 35 attributes.
"""
from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .base import PersonDataset, Sample
from .schema import PETA_SCHEMA, PETA_STANDARD_35

SPLITS = ("train", "val", "test", "trainval", "all")


def _find_image(images_dir: Path, index: int) -> Path:
    stem = f"{index:05d}"
    for ext in (".png", ".jpg", ".jpeg", ".bmp"):
        p = images_dir / (stem + ext)
        if p.exists():
            return p
    return images_dir / (stem + ".png")  # reported as missing when loaded


class PETA(PersonDataset):
    """PETA with its official partitions.

    ``attributes="standard"`` selects the 35 attributes used by published results,
    ``"all"`` the full 105 (colours included), or pass a list of names.
    ``exclude_subsets`` leaves out images of the named sub-datasets (``identities.csv``), e.g.
    VIPeR, PRID and GRID for an encoder whose re-ID results on them must be cross-domain;
    ``only_subsets`` keeps only the named ones (the test images of an unseen-camera fold).
    """

    def __init__(self, root: str | Path, split: str = "train", partition: int = 0,
                 attributes: str | list[str] = "standard", exclude_subsets: Sequence[str] = (),
                 only_subsets: Sequence[str] = ()):
        import scipy.io

        root = Path(root)
        mat_path = root / "PETA.mat"
        if not mat_path.exists():
            raise FileNotFoundError(f"{mat_path} not found: --root must hold images/ and PETA.mat")
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose from {SPLITS}")
        peta = scipy.io.loadmat(str(mat_path))["peta"][0, 0]
        data = np.asarray(peta["data"])
        names = [str(a[0][0]) for a in peta["attribute"]]
        parts = peta["partion_attribute"]
        if not 0 <= partition < parts.shape[0]:
            raise ValueError(f"partition must be 0..{parts.shape[0] - 1}")

        if attributes == "standard":
            wanted = list(PETA_STANDARD_35)
        elif attributes == "all":
            wanted = names
        else:
            wanted = list(attributes)
        schema = PETA_SCHEMA.subset(wanted)  # raises on unknown names
        cols = [names.index(n) for n in wanted]

        part = parts[partition, 0][0, 0]
        if split == "all":
            idx = np.arange(1, data.shape[0] + 1)
        elif split == "trainval":
            idx = np.concatenate([part["train"].ravel(), part["val"].ravel()])
        else:
            idx = part[split].ravel()
        rows = data[np.asarray(idx, dtype=np.int64) - 1]
        ids_csv = root / "identities.csv"
        filtering = bool(exclude_subsets or only_subsets)
        subsets = _read_subsets(ids_csv) if filtering or ids_csv.exists() else {}
        if filtering:
            unknown = (set(exclude_subsets) | set(only_subsets)) - set(subsets.values())
            if unknown:
                raise ValueError(f"unknown PETA sub-datasets {sorted(unknown)}; identities.csv "
                                 f"has {sorted(set(subsets.values()))}")
            wanted = set(only_subsets) or set(subsets.values())
            wanted -= set(exclude_subsets)
            keep = [subsets.get(int(r[0])) in wanted for r in rows]
            rows = rows[np.asarray(keep, bool)]

        cams = _read_cameras(root / "identities.csv")
        images_dir = root / "images"
        # identity = global id (column 1), unique across the ten sub-datasets
        samples = [
            Sample(
                path=_find_image(images_dir, int(r[0])),
                pid=int(r[1]),
                camid=cams.get(int(r[0]), -1),
                attributes=r[4:][cols].astype(np.float32),
            )
            for r in rows
        ]
        super().__init__(samples, schema)
        self.split = split
        self.partition = partition
        # each image's sub-dataset (its cameras), for calibration that weighs sources equally
        self.subsets = [subsets.get(int(r[0]), "") for r in rows] if subsets else None


def _read_subsets(path: Path) -> dict[int, str]:
    """Image index -> sub-dataset name, from identities.csv."""
    if not path.exists():
        raise FileNotFoundError(f"{path} is needed to leave sub-datasets out")
    with path.open(newline="") as f:
        return {int(row["index"]): row["subset"].strip() for row in csv.DictReader(f)}


def _read_cameras(path: Path) -> dict[int, int]:
    """Camera ids from the optional identities.csv beside PETA.mat (-1 when unknown)."""
    if not path.exists():
        return {}
    out = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            cam = (row.get("camera") or "").strip()
            out[int(row["index"])] = int(cam) if cam.isdigit() else -1
    return out
