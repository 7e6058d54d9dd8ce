"""PA-100K loader on a tiny synthetic copy of the official layout (data/*.jpg + annotation.mat)."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.io
from PIL import Image

from personlens.data import create_dataset
from personlens.data.pa100k import PA100K
from personlens.data.schema import PA100K_SCHEMA

NAMES = PA100K_SCHEMA.names  # the 26 names, in annotation.mat's order
SIZES = {"train": 4, "val": 2, "test": 3}


def _cell(strings: list[str]) -> np.ndarray:
    """A column cell array of strings, as savemat writes MATLAB cells."""
    arr = np.empty((len(strings), 1), dtype=object)
    for i, s in enumerate(strings):
        arr[i, 0] = s
    return arr


@pytest.fixture
def pa100k_root(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "data").mkdir()
    mat = {"attributes": _cell(NAMES)}
    labels, files = {}, {}
    start = 1
    for split, n in SIZES.items():
        files[split] = [f"{start + i:06d}.jpg" for i in range(n)]
        start += n
        labels[split] = rng.integers(0, 2, size=(n, len(NAMES))).astype(np.uint8)
        mat[f"{split}_images_name"] = _cell(files[split])
        mat[f"{split}_label"] = labels[split]
        for k, f in enumerate(files[split]):
            Image.new("RGB", (8, 16), (10 * k, 100, 200)).save(tmp_path / "data" / f, quality=90)
    scipy.io.savemat(str(tmp_path / "annotation.mat"), mat)
    return tmp_path, files, labels


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_splits_files_and_labels(pa100k_root, split):
    root, files, labels = pa100k_root
    ds = PA100K(root, split=split)
    assert len(ds) == SIZES[split]
    assert [p.name for p in ds.paths] == files[split]
    assert all(p.parent == root / "data" for p in ds.paths)
    assert ds.labels.dtype == np.float32
    np.testing.assert_array_equal(ds.labels, labels[split].astype(np.float32))
    assert ds.schema.names == NAMES


def test_trainval_is_train_then_val(pa100k_root):
    root, files, labels = pa100k_root
    ds = PA100K(root, split="trainval")
    assert [p.name for p in ds.paths] == files["train"] + files["val"]
    np.testing.assert_array_equal(ds.labels, np.concatenate([labels["train"], labels["val"]]))


def test_item_is_image_pid_camid_attrs(pa100k_root):
    root, _, labels = pa100k_root
    img, pid, camid, attrs = PA100K(root, split="val")[1]
    assert isinstance(img, Image.Image) and img.mode == "RGB" and img.size == (8, 16)
    assert (pid, camid) == (-1, -1)
    np.testing.assert_array_equal(attrs, labels["val"][1])


def test_attribute_subset_keeps_requested_order(pa100k_root):
    root, _, labels = pa100k_root
    wanted = ["boots", "Female", "Age18-60"]
    ds = PA100K(root, split="train", attributes=wanted)
    assert ds.schema.names == wanted
    cols = [NAMES.index(n) for n in wanted]
    np.testing.assert_array_equal(ds.labels, labels["train"][:, cols])
    assert ds.schema["Female"].phrase == "a woman"


def test_unknown_attribute_raises_keyerror(pa100k_root):
    root, _, _ = pa100k_root
    with pytest.raises(KeyError, match="unknown attribute 'Umbrella'"):
        PA100K(root, attributes=["Female", "Umbrella"])
    with pytest.raises(KeyError, match="did you mean 'Female'"):
        PA100K(root, attributes=["female"])


def test_bad_split_and_attribute_mode(pa100k_root):
    root, _, _ = pa100k_root
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        PA100K(root, split="dev")
    with pytest.raises(ValueError, match="attributes must be"):
        PA100K(root, attributes="everything")


def test_missing_annotation_raises_filenotfound(tmp_path):
    with pytest.raises(FileNotFoundError, match="annotation.mat"):
        PA100K(tmp_path)


def test_label_shape_mismatch_is_reported(tmp_path):
    scipy.io.savemat(str(tmp_path / "annotation.mat"), {
        "attributes": _cell(NAMES), "train_images_name": _cell(["a.jpg", "b.jpg"]),
        "train_label": np.zeros((3, len(NAMES)), np.uint8)})
    with pytest.raises(ValueError, match="train_label has shape"):
        PA100K(tmp_path)


def test_create_dataset_dispatches(pa100k_root):
    root, files, _ = pa100k_root
    for name in ("pa100k", "PA-100K", "PA100K"):
        ds = create_dataset(name, root, "test")
        assert isinstance(ds, PA100K)
        assert [p.name for p in ds.paths] == files["test"]
    ds = create_dataset("pa100k", root, "train", attributes=["Hat"])
    assert ds.schema.names == ["Hat"]
    with pytest.raises(ValueError, match="single official split"):
        create_dataset("pa100k", root, "train", partition=2)
    with pytest.raises(ValueError, match=r"unknown dataset 'market1501'.*peta.*pa100k"):
        create_dataset("market1501", root, "train")


def test_create_dataset_peta_missing_file(tmp_path):
    # dispatches to PETA, whose own check names PETA.mat
    with pytest.raises(FileNotFoundError, match="PETA.mat"):
        create_dataset("peta", tmp_path, "train")
