"""CUHK-PEDES / ICFG-PEDES / RSTPReid readers on tiny files in the official formats."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from personlens.data.pedes import (CaptionedImage, read_cuhk_pedes, read_icfg_pedes,
                                   read_pedes, read_pedes_json, read_rstpreid)

CUHK = [
    {"split": "train", "captions": ["A woman in a red coat.", "She wears a red coat. "],
     "file_path": "CUHK01/0363004.png",
     "processed_tokens": [["a", "woman", "in", "a", "red", "coat"], ["she", "wears"]],
     "id": 1},
    {"split": "train", "captions": ["A man with a backpack."], "file_path": "test_query/p1_s1.jpg",
     "processed_tokens": [["a", "man"]], "id": 2},
    {"split": "val", "captions": ["Val person."], "file_path": "Market/0001_c1s1_01.jpg",
     "processed_tokens": [], "id": 11004},
    {"split": "test", "captions": ["Test person", ""], "file_path": "train_query/p2_s3.jpg",
     "processed_tokens": [], "id": "12004"},
]
ICFG = [
    {"split": "train", "captions": ["The man wears a black jacket."],
     "file_path": "train/0001/0001_002_01_0303morning_0008_0.jpg",
     "processed_tokens": [["the", "man"]], "id": 1},
    {"split": "test", "captions": "A woman holding an umbrella.",  # a bare string
     "file_path": "test/0027/0027_010_01_0303morning_0029_0_ex.jpg",
     "processed_tokens": [], "id": 27},
]
RSTP = [
    {"id": 0, "img_path": "0000_c14_0031.jpg",
     "captions": ["A man wearing black.", "He has short hair."], "split": "train"},
    {"id": 0, "img_path": "0000_c5_0012.jpg", "captions": ["x", "y"], "split": "train"},
    {"id": 3701, "img_path": "3701_c1_0001.jpg", "captions": ["v1", "v2"], "split": "val"},
    {"id": 3901, "img_path": "3901_c3_0004.jpg", "captions": ["t1", "t2"], "split": "test"},
]


def _write(folder: Path, name: str, entries, imgs: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if imgs:
        (folder / "imgs").mkdir(exist_ok=True)
    (folder / name).write_text(json.dumps(entries))
    return folder


def test_cuhk_pedes_splits(tmp_path):
    root = _write(tmp_path / "CUHK-PEDES", "reid_raw.json", CUHK)
    train = read_cuhk_pedes(root, "train")
    assert train == [
        CaptionedImage(root / "imgs/CUHK01/0363004.png", 1, -1,
                       ["A woman in a red coat.", "She wears a red coat."]),
        CaptionedImage(root / "imgs/test_query/p1_s1.jpg", 2, -1, ["A man with a backpack."]),
    ]
    assert [(x.pid, x.captions) for x in read_cuhk_pedes(root, "val")] == [(11004,
                                                                          ["Val person."])]
    test = read_cuhk_pedes(root, "test")
    assert test[0].pid == 12004 and test[0].captions == ["Test person"]  # blank dropped
    assert len(read_cuhk_pedes(root, "all")) == 4
    assert read_cuhk_pedes(root, "validation") == read_cuhk_pedes(root, "val")
    # root may be the JSON file itself
    assert read_cuhk_pedes(root / "reid_raw.json", "train") == train
    path, pid, camid, caps = train[1]  # plain tuple unpacking works
    assert (pid, camid) == (2, -1)


def test_icfg_pedes(tmp_path):
    root = _write(tmp_path / "ICFG-PEDES", "ICFG-PEDES.json", ICFG)
    train, test = read_icfg_pedes(root, "train"), read_icfg_pedes(root, "test")
    assert [x.pid for x in train] == [1] and [x.pid for x in test] == [27]
    assert test[0].captions == ["A woman holding an umbrella."]
    assert test[0].path == root / "imgs/test/0027/0027_010_01_0303morning_0029_0_ex.jpg"
    with pytest.raises(ValueError, match="train, test"):
        read_icfg_pedes(root, "val")


def test_rstpreid(tmp_path):
    root = _write(tmp_path / "RSTPReid", "data_captions.json", RSTP)
    train = read_rstpreid(root, "train")
    assert [(x.path.name, x.pid, x.camid) for x in train] == [
        ("0000_c14_0031.jpg", 0, -1), ("0000_c5_0012.jpg", 0, -1)]
    assert train[0].captions == ["A man wearing black.", "He has short hair."]
    assert [x.pid for x in read_rstpreid(root, "val")] == [3701]
    assert [x.pid for x in read_rstpreid(root, "test")] == [3901]
    assert read_pedes("RSTPReid", root, "test") == read_rstpreid(root, "test")
    assert read_pedes("rstp_reid", root, "test") == read_rstpreid(root, "test")


def test_images_next_to_json_when_no_imgs_folder(tmp_path):
    root = _write(tmp_path / "r", "data_captions.json", RSTP, imgs=False)
    assert read_rstpreid(root, "val")[0].path == root / "3701_c1_0001.jpg"


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="reid_raw.json"):
        read_cuhk_pedes(tmp_path)
    with pytest.raises(ValueError, match="unknown dataset"):
        read_pedes("flickr30k", tmp_path)
    bad = _write(tmp_path / "bad", "reid_raw.json", [{"split": "train", "captions": ["x"]}])
    with pytest.raises(ValueError, match="entry 0"):
        read_cuhk_pedes(bad)
    odd = _write(tmp_path / "odd", "x.json", [{"split": "training", "img_path": "a.jpg",
                                              "id": 1}])
    with pytest.raises(ValueError, match="splits present: train"):
        read_pedes_json(odd / "x.json", odd, "test")
    assert read_pedes_json(odd / "x.json", odd, "train")[0].captions == []
