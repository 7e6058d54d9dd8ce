"""Re-ID data sets and protocols: fake trees, and PETA's real identities.csv when present."""
from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from personlens.data.reid import (CUHK03Subset, Market1501, ReidItem, ReidTrial,
                                  cuhk03_subset_query_gallery, grid_trials, peta_reid_subset,
                                  prid_trials, read_peta_identities, viper_trials)

SHARED = Path(__file__).resolve().parents[2].parent / "shared/data"
PETA_ROOT = SHARED / "PETA"
CUHK03_ROOT = SHARED / "CUHK03-subset"
real_peta = pytest.mark.skipif(not (PETA_ROOT / "identities.csv").exists(),
                               reason=f"real PETA identities.csv not found under {PETA_ROOT}")


def _touch(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_bytes(b"")


# ---------------------------------------------------------------- Market-1501

@pytest.fixture
def market(tmp_path):
    root = tmp_path / "Market-1501-v15.09.15"
    _touch(root / "bounding_box_train", ["0002_c1s1_000451_03.jpg", "0002_c2s1_000301_01.jpg",
                                         "0007_c3s3_077419_03.jpg", "Thumbs.db"])
    _touch(root / "query", ["0001_c1s1_001051_00.jpg", "0003_c6s2_050000_00.jpg"])
    _touch(root / "bounding_box_test", ["-1_c1s1_000401_03.jpg", "0000_c1s1_000151_01.jpg",
                                        "0001_c2s1_000301_02.jpg", "0001_c1s1_000001_01.jpg",
                                        "0003_c5s1_000003_01.jpg"])
    return tmp_path  # the parent: the loader finds the versioned folder inside


def test_market_names_and_splits(market):
    train = Market1501(market, "train")
    assert [(p.name, pid, cam) for p, pid, cam in train.items] == [
        ("0002_c1s1_000451_03.jpg", 2, 1), ("0002_c2s1_000301_01.jpg", 2, 2),
        ("0007_c3s3_077419_03.jpg", 7, 3)]
    assert train.num_pids == 2 and train.labels.shape == (3, 0)
    assert list(Market1501(market, "train", relabel=True).pids) == [0, 0, 1]
    query = Market1501(market, "query")
    assert list(query.pids) == [1, 3] and list(query.camids) == [1, 6]
    gallery = Market1501(market, "gallery")
    # junk (-1) dropped, distractors (0000) kept
    assert sorted(gallery.pids.tolist()) == [0, 1, 1, 3]
    with pytest.raises(ValueError, match="split"):
        Market1501(market, "test")
    with pytest.raises(FileNotFoundError):
        Market1501(market / "nowhere", "train")


# ---------------------------------------------------------------- CUHK03 subset

def test_cuhk03_subset_fake_tree(tmp_path):
    _touch(tmp_path / "train", [f"1000_{k:02d}.jpg" for k in (0, 3, 5, 9)] + ["1001_01.jpg"])
    _touch(tmp_path / "val", [f"{i:04d}_{k:02d}.jpg" for i in (0, 1) for k in range(10)])
    train = CUHK03Subset(tmp_path, "train")
    assert [(pid, cam) for _, pid, cam in train.items] == [(1000, 1), (1000, 1), (1000, 2),
                                                           (1000, 2), (1001, 1)]
    trial = cuhk03_subset_query_gallery(tmp_path, seed=0)
    assert sorted((q.pid, q.camid) for q in trial.query) == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert len(trial.gallery) == 16 and not set(trial.query) & set(trial.gallery)
    assert len(trial.train) == 5
    assert cuhk03_subset_query_gallery(tmp_path, seed=0) == trial
    with pytest.raises(ValueError):
        CUHK03Subset(tmp_path, "test")


@pytest.mark.skipif(not CUHK03_ROOT.exists(), reason="CUHK03-subset not found")
def test_cuhk03_subset_real():
    val = CUHK03Subset(CUHK03_ROOT, "val")
    assert len(val) == 938 and val.num_pids == 100
    assert set(val.camids.tolist()) == {1, 2}
    trial = cuhk03_subset_query_gallery(CUHK03_ROOT, seed=0)
    assert len(trial.query) == 200 and len(trial.query) + len(trial.gallery) == 938
    assert len(trial.train) == 7239


# ---------------------------------------------------------------- PETA-derived, fake

def _fake_peta(root: Path) -> Path:
    """VIPeR 6 ids x 2 cams; PRID 4 paired + 2 a-only + 3 b-only; GRID 4 pairs + 3 singles."""
    rows = []

    def add(subset, pid, cam, name):
        rows.append({"index": len(rows) + 1, "file": f"{len(rows) + 1:05d}.png",
                     "subset": subset, "person_id": pid, "camera": cam,
                     "original_name": name, "width": 48, "height": 128})

    for pid in range(6):
        add("VIPeR", pid, 1, f"{pid:03d}_0_1.bmp")
        add("VIPeR", pid, 2, f"{pid:03d}_90_2.bmp")
    for pid in range(1, 7):  # 1-4 in both cameras, 5-6 camera a only
        add("PRID", pid, 1, f"{pid:04d}_a.png")
        if pid <= 4:
            add("PRID", pid, 2, f"{pid:04d}_b.png")
    for pid in (7, 8, 9):  # camera b only
        add("PRID", pid, 2, f"{pid:04d}_b.png")
    # GRID pairs (probe camera, gallery camera); pid 4 lists its gallery image first
    for pid, cams in zip(range(1, 5), [(1, 2), (4, 5), (5, 6), (3, 2)]):
        for cam in cams:
            add("GRID", pid, cam, f"{pid:04d}_{cam}_x.jpeg")
    for pid, cam in zip((5, 6, 7), (2, 5, 1)):
        add("GRID", pid, cam, f"{pid:04d}_{cam}_x.jpeg")
    add("3DPeS", 100, "", "100_3_FRAME_26_RGB.bmp")
    add("CUHK", 2, "", "0002.png")
    root.mkdir(parents=True, exist_ok=True)
    with (root / "identities.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def test_fake_viper_trials(tmp_path):
    root = _fake_peta(tmp_path / "PETA")
    trials = viper_trials(root, n_trials=4, seed=1)
    assert len(trials) == 4 and [t.trial for t in trials] == [0, 1, 2, 3]
    for t in trials:
        assert len(t.query) == 3 and len(t.gallery) == 3 and len(t.train) == 6
        assert {q.camid for q in t.query} == {1} and {g.camid for g in t.gallery} == {2}
        assert sorted(q.pid for q in t.query) == sorted(g.pid for g in t.gallery)
        assert not {q.pid for q in t.query} & {x.pid for x in t.train}
        assert t.query[0].path == root / "images" / f"{2 * t.query[0].pid + 1:05d}.png"
    assert len({tuple(sorted(q.pid for q in t.query)) for t in trials}) > 1
    # trial t does not depend on n_trials; seed matters
    assert viper_trials(root, n_trials=2, seed=1) == trials[:2]
    assert viper_trials(root, n_trials=4, seed=2) != trials


def test_fake_prid_trials(tmp_path):
    root = _fake_peta(tmp_path / "PETA")
    for t in prid_trials(root, n_trials=3, seed=0):
        q = {x.pid for x in t.query}
        assert len(q) == 2 and q <= {1, 2, 3, 4} and {x.camid for x in t.query} == {1}
        # gallery: camera b of the 2 test persons + the 3 b-only persons; no training person
        assert sorted(g.pid for g in t.gallery) == sorted(q | {7, 8, 9})
        assert {g.camid for g in t.gallery} == {2}
        assert {x.pid for x in t.train} == {1, 2, 3, 4} - q and len(t.train) == 4
        assert not {5, 6} & {x.pid for x in t.query + t.gallery + t.train}  # a-only unused


def test_fake_grid_trials(tmp_path):
    root = _fake_peta(tmp_path / "PETA")
    for t in grid_trials(root, n_trials=3, seed=0):
        q = {x.pid for x in t.query}
        assert len(q) == 2 and q <= {1, 2, 3, 4}
        assert sorted(g.pid for g in t.gallery) == sorted(q | {5, 6, 7})
        for x in t.query:  # probe = lower camera of the pair
            match = [g for g in t.gallery if g.pid == x.pid]
            assert len(match) == 1 and match[0].camid > x.camid
    a = grid_trials(root, n_trials=3, seed=0)[0].arrays()
    assert set(a) == {"q_pids", "g_pids", "q_camids", "g_camids"}
    assert a["q_pids"].dtype == np.int64 and len(a["g_pids"]) == 5


def test_fake_subsets_and_names(tmp_path):
    root = _fake_peta(tmp_path / "PETA")
    assert len(peta_reid_subset(root, "viper")) == 12
    assert peta_reid_subset(root, "3dpes").items[0].camid == -1
    assert peta_reid_subset(root, "PRID", relabel=True).pids.max() == 8
    with pytest.raises(ValueError, match="one image per person"):
        peta_reid_subset(root, "CUHK")
    with pytest.raises(ValueError, match="unknown PETA sub-dataset"):
        peta_reid_subset(root, "Market")
    with pytest.raises(ValueError, match="no i-LID rows"):
        peta_reid_subset(root, "i-LIDS")
    with pytest.raises(ValueError, match="n_test"):
        viper_trials(root, n_test=7)
    with pytest.raises(FileNotFoundError):
        viper_trials(tmp_path / "missing")


# ---------------------------------------------------------------- PETA-derived, real

@real_peta
def test_real_subset_spellings_and_sizes():
    ids = read_peta_identities(PETA_ROOT)
    assert set(ids) == {"3DPeS", "CAVIAR4REID", "CUHK", "GRID", "i-LID", "MIT", "PRID",
                        "SARC3D", "TownCentre", "VIPeR"}
    sizes = {name: (len(peta_reid_subset(PETA_ROOT, name)),
                    peta_reid_subset(PETA_ROOT, name).num_pids)
             for name in ("VIPeR", "PRID", "GRID", "i-LIDS", "3DPeS", "CAVIAR4REID",
                          "TownCentre", "SARC3D")}
    assert sizes == {"VIPeR": (1264, 632), "PRID": (1134, 934), "GRID": (1275, 1025),
                     "i-LIDS": (477, 120), "3DPeS": (1012, 193), "CAVIAR4REID": (1220, 72),
                     "TownCentre": (6967, 222), "SARC3D": (200, 50)}
    first = peta_reid_subset(PETA_ROOT, "VIPeR").items[0]
    assert first.path.exists() and first.camid == 1


@real_peta
def test_real_viper_protocol():
    trials = viper_trials(PETA_ROOT, n_trials=10, seed=0)
    assert len(trials) == 10
    for t in trials:
        assert len(t.query) == len(t.gallery) == 316 and len(t.train) == 632
        assert {q.camid for q in t.query} == {1} and {g.camid for g in t.gallery} == {2}
        assert sorted(q.pid for q in t.query) == sorted(g.pid for g in t.gallery)
    assert len({frozenset(q.pid for q in t.query) for t in trials}) == 10


@real_peta
def test_real_prid_protocol():
    for t in prid_trials(PETA_ROOT, n_trials=2, seed=0):
        assert len(t.query) == 100 and len(t.gallery) == 649 and len(t.train) == 200
        q = {x.pid for x in t.query}
        assert q <= set(range(1, 201))
        g = Counter(x.pid for x in t.gallery)
        assert all(g[p] == 1 for p in q) and max(g.values()) == 1
        assert not {x.pid for x in t.train} & set(g)  # training persons left out
        assert {x.camid for x in t.gallery} == {2}


@real_peta
def test_real_grid_protocol():
    for t in grid_trials(PETA_ROOT, n_trials=2, seed=0):
        assert len(t.query) == 125 and len(t.gallery) == 900 and len(t.train) == 250
        g = Counter(x.pid for x in t.gallery)
        assert all(g[x.pid] == 1 for x in t.query)
        by_pid = {x.pid: x for x in t.gallery}
        assert all(by_pid[x.pid].camid > x.camid for x in t.query)


def test_trial_is_a_plain_record():
    item = ReidItem(Path("a.png"), 3, 1)
    t = ReidTrial(0, [item], [item], [])
    assert t.arrays()["g_camids"].tolist() == [1]
