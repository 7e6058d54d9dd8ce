"""PETA loader on the real data set in ../shared/data/PETA (skipped where it is absent)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from personlens.data import create_dataset
from personlens.data.peta import PETA
from personlens.data.schema import PETA_ATTRIBUTE_NAMES, PETA_STANDARD_35

PETA_ROOT = Path(__file__).resolve().parents[2].parent / "shared/data/PETA"

pytestmark = pytest.mark.skipif(
    not (PETA_ROOT / "PETA.mat").exists(),
    reason=f"real PETA data not found at {PETA_ROOT} (needs PETA.mat and images/)")


@pytest.fixture(scope="module")
def splits():
    return {s: PETA(PETA_ROOT, split=s) for s in ("train", "val", "test")}


def test_partition0_sizes(splits):
    assert {s: len(d) for s, d in splits.items()} == {"train": 9500, "val": 1900, "test": 7600}


def test_partition0_splits_are_disjoint_and_cover_all(splits):
    paths = [set(d.paths) for d in splits.values()]
    assert not (paths[0] & paths[1] or paths[0] & paths[2] or paths[1] & paths[2])
    assert len(set().union(*paths)) == 19000


def test_standard_attributes(splits):
    ds = splits["train"]
    assert ds.schema.names == list(PETA_STANDARD_35)
    assert len(ds.schema) == 35
    labels = ds.labels
    assert labels.shape == (9500, 35) and labels.dtype == np.float32
    assert set(np.unique(labels)) <= {0.0, 1.0}
    # every standard attribute is present somewhere, and none is on for everyone
    assert (labels.sum(0) > 0).all() and (labels.sum(0) < len(labels)).all()


def test_all_attributes():
    ds = PETA(PETA_ROOT, split="val", attributes="all")
    assert ds.schema.names == list(PETA_ATTRIBUTE_NAMES)
    assert ds.labels.shape == (1900, 105)
    assert set(np.unique(ds.labels)) <= {0.0, 1.0}


def test_first_item(splits):
    img, pid, camid, attrs = splits["train"][0]
    assert isinstance(img, Image.Image) and img.mode == "RGB"
    assert min(img.size) > 0
    assert isinstance(pid, int) and pid >= 0
    assert isinstance(camid, int)
    assert attrs.shape == (35,)
    np.testing.assert_array_equal(attrs, splits["train"].labels[0])


def test_images_exist_with_png_or_jpg(splits):
    paths = splits["test"].paths
    assert all(p.exists() for p in paths[:200])
    assert {p.suffix for p in splits["train"].paths} <= {".png", ".jpg"}


def test_viper_cameras():
    viper = set()
    with (PETA_ROOT / "identities.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            if row["subset"] == "VIPeR":
                viper.add(f"{int(row['index']):05d}")
    assert len(viper) == 1264
    ds = PETA(PETA_ROOT, split="all")
    cams = [s.camid for s in ds.samples if s.path.stem in viper]
    assert len(cams) == 1264
    assert set(cams) == {1, 2}
    assert cams.count(1) == cams.count(2) == 632


def test_attribute_subset_and_unknown():
    ds = PETA(PETA_ROOT, split="val", attributes=["personalMale", "accessoryHat"])
    assert ds.schema.names == ["personalMale", "accessoryHat"]
    full = PETA(PETA_ROOT, split="val")
    cols = [list(PETA_STANDARD_35).index(n) for n in ("personalMale", "accessoryHat")]
    np.testing.assert_array_equal(ds.labels, full.labels[:, cols])
    with pytest.raises(KeyError, match="unknown attribute 'wearingCape'"):
        PETA(PETA_ROOT, split="val", attributes=["wearingCape"])


def test_create_dataset_peta():
    ds = create_dataset("peta", PETA_ROOT, "val", partition=1)
    assert isinstance(ds, PETA) and len(ds) == 1900 and ds.partition == 1
    assert set(ds.paths) != set(PETA(PETA_ROOT, split="val").paths)  # another partition


def _subset_of() -> dict[str, str]:
    """Image file stem -> its PETA sub-dataset, from identities.csv."""
    with (PETA_ROOT / "identities.csv").open(newline="") as f:
        return {f"{int(row['index']):05d}": row["subset"] for row in csv.DictReader(f)}


def test_exclude_subsets_leaves_those_images_out():
    out = _subset_of()
    full = PETA(PETA_ROOT, split="train")
    kept = PETA(PETA_ROOT, split="train", exclude_subsets=("VIPeR", "PRID", "GRID"))
    dropped = sum(out[p.stem] in ("VIPeR", "PRID", "GRID") for p in full.paths)
    assert dropped > 1000 and len(kept) == len(full) - dropped
    assert not {out[p.stem] for p in kept.paths} & {"VIPeR", "PRID", "GRID"}
    assert len(kept.labels) == len(kept.paths)
    with pytest.raises(ValueError, match="unknown PETA sub-datasets"):
        PETA(PETA_ROOT, split="train", exclude_subsets=("Market1501",))


def test_only_subsets_keeps_just_those_images():
    subset_of = _subset_of()
    full = PETA(PETA_ROOT, split="test")
    only = PETA(PETA_ROOT, split="test", only_subsets=("GRID", "MIT"))
    assert {subset_of[p.stem] for p in only.paths} == {"GRID", "MIT"}
    assert len(only) == sum(subset_of[p.stem] in ("GRID", "MIT") for p in full.paths) > 100
    with pytest.raises(ValueError, match="unknown PETA sub-datasets"):
        PETA(PETA_ROOT, split="test", only_subsets=("Market1501",))
