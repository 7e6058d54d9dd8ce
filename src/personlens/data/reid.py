"""Person re-identification data: Market-1501, the CUHK03 subset, and PETA's re-ID sets.

Every item is a :class:`ReidItem` ``(path, pid, camid)``; data sets are
:class:`ReidDataset` (a :class:`PersonDataset` with an empty attribute vector, so a loader
yields ``(image, pid, camid, attributes)`` like every other data set here). Camera ids are
1-based as the file names write them ("c1" -> 1); -1 means unknown.

Protocols (each trial draws its test identities with ``np.random.default_rng([seed, t])``,
so trial ``t`` is the same whatever ``n_trials`` is):

* Market-1501 (Zheng et al., ICCV 2015): ``bounding_box_train/`` (751 ids), ``query/``
  (3,368 images), ``bounding_box_test/`` (gallery). Images of pid -1 ("junk") are dropped
  from every split, as the official evaluation ignores them; pid 0 ("distractors") are kept in
  the gallery, where they only count as non-matches, and dropped from training. The
  evaluation excludes gallery images with the query's pid *and* camera
  (:func:`personlens.eval.retrieval.evaluate_ranking` with camids).
* VIPeR (Gray et al. 2007), :func:`viper_trials`: 632 ids x 2 cameras, one image each; per
  trial a random half (316 ids) is the test set, queries are their camera-1 (cam_a) images,
  the gallery their camera-2 (cam_b) images; the other 316 ids are ``train``.
* PRID 2011 single-shot (Hirzer et al., SCIA 2011), :func:`prid_trials`: camera a holds 385
  persons, camera b 749; the 200 seen by both are split at random, 100 for training and 100
  for testing; queries are the camera-a images of the 100 test persons; the gallery is
  camera b without the 100 training persons, i.e. the 100 test persons plus the 549 persons
  seen only by camera b (649 images). The 185 persons seen only by camera a are not used.
* GRID (Loy et al. 2009), :func:`grid_trials`: 250 persons seen by two cameras plus 775
  single-image persons (distractors, id 0000 in the original ``gallery/`` folder, numbered
  251-1025 in PETA); per trial 125 of the 250 pairs are the test set, the query is the probe
  image of each test pair and the gallery is the other image of the 125 test pairs plus all
  775 distractors (900 images). PETA does not keep GRID's probe/gallery folders: the probe is
  taken to be the image from the lower-numbered camera of each pair (the pairs are cameras
  1->2, 2->3, 4->5 and 5->6, and 763 of the 775 distractors come from cameras 2, 3 and 5, the
  gallery side).

In PETA, ``identities.csv`` gives each image's sub-dataset (spelled ``3DPeS``,
``CAVIAR4REID``, ``CUHK``, ``GRID``, ``i-LID``, ``MIT``, ``PRID``, ``SARC3D``, ``TownCentre``,
``VIPeR``), its person id within the sub-dataset and, for VIPeR, PRID and GRID, its camera.
These images are also in PETA's attribute splits: say which images a model was trained on.
"""
from __future__ import annotations

import csv
import re
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from .base import PersonDataset, Sample
from .schema import AttributeSchema

__all__ = [
    "ReidItem", "ReidDataset", "ReidTrial", "Market1501", "CUHK03Subset",
    "cuhk03_subset_query_gallery", "PETA_REID_SUBSETS", "read_peta_identities",
    "peta_reid_subset", "viper_trials", "prid_trials", "grid_trials",
]


class ReidItem(NamedTuple):
    path: Path
    pid: int
    camid: int


_NO_ATTRIBUTES = np.zeros(0, np.float32)


class ReidDataset(PersonDataset):
    """Re-ID images; ``__getitem__`` gives ``(image, pid, camid, empty attributes)``."""

    def __init__(self, items: list[ReidItem], transform: Callable | None = None,
                 relabel: bool = False):
        items = list(items)
        if relabel:
            mapping = {p: i for i, p in enumerate(sorted({it.pid for it in items}))}
            items = [ReidItem(it.path, mapping[it.pid], it.camid) for it in items]
        samples = [Sample(it.path, it.pid, it.camid, _NO_ATTRIBUTES) for it in items]
        super().__init__(samples, AttributeSchema([]), transform)

    @property
    def items(self) -> list[ReidItem]:
        return [ReidItem(s.path, s.pid, s.camid) for s in self.samples]

    @property
    def pids(self) -> np.ndarray:
        return np.array([s.pid for s in self.samples], dtype=np.int64)

    @property
    def camids(self) -> np.ndarray:
        return np.array([s.camid for s in self.samples], dtype=np.int64)

    @property
    def num_pids(self) -> int:
        return len({s.pid for s in self.samples})


@dataclass(frozen=True)
class ReidTrial:
    """One evaluation trial: query and gallery lists, and the identities left for training."""
    trial: int
    query: list[ReidItem]
    gallery: list[ReidItem]
    train: list[ReidItem]

    def arrays(self) -> dict[str, np.ndarray]:
        """``q_pids``, ``g_pids``, ``q_camids``, ``g_camids`` for ``evaluate_ranking``."""
        return {
            "q_pids": np.array([q.pid for q in self.query], dtype=np.int64),
            "g_pids": np.array([g.pid for g in self.gallery], dtype=np.int64),
            "q_camids": np.array([q.camid for q in self.query], dtype=np.int64),
            "g_camids": np.array([g.camid for g in self.gallery], dtype=np.int64),
        }


# --------------------------------------------------------------------------- Market-1501

_MARKET_NAME = re.compile(r"^(-?\d+)_c(\d+)s\d+_\d+_\d+\.(?:jpg|jpeg|png)$", re.IGNORECASE)
_MARKET_DIRS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}


def _market_root(root: Path) -> Path:
    if (root / "bounding_box_train").is_dir() or (root / "query").is_dir():
        return root
    inner = [d for d in sorted(root.glob("*")) if (d / "query").is_dir()]
    if len(inner) == 1:  # e.g. Market-1501-v15.09.15/
        return inner[0]
    raise FileNotFoundError(f"{root}: no Market-1501 layout (bounding_box_train/, query/, "
                            "bounding_box_test/)")


class Market1501(ReidDataset):
    """Market-1501 in its official layout; ``split`` is "train", "query" or "gallery"."""

    def __init__(self, root: str | Path, split: str = "train", relabel: bool = False,
                 transform: Callable | None = None):
        if split not in _MARKET_DIRS:
            raise ValueError(f"unknown split {split!r}; choose from {tuple(_MARKET_DIRS)}")
        folder = _market_root(Path(root)) / _MARKET_DIRS[split]
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} not found")
        items = []
        for path in sorted(folder.iterdir()):
            m = _MARKET_NAME.match(path.name)
            if not m:
                continue
            pid, cam = int(m.group(1)), int(m.group(2))
            if pid == -1 or (pid == 0 and split != "gallery"):
                continue  # junk everywhere; distractors only belong in the gallery
            items.append(ReidItem(path, pid, cam))
        super().__init__(items, transform, relabel)
        self.split = split


# --------------------------------------------------------------------------- CUHK03 subset

_CUHK03_NAME = re.compile(r"^(\d+)_(\d+)\.(?:jpg|jpeg|png)$", re.IGNORECASE)


class CUHK03Subset(ReidDataset):
    """``CUHK03-subset/{train,val}/IIII_KK.jpg``: KK 00-04 camera 1, 05-09 camera 2.

    Identities are numbered inside each folder (train 1000-1742, val 0000-0099 here); this
    is not CUHK03's official split, report results as "CUHK03 subset".
    """

    def __init__(self, root: str | Path, split: str = "train", relabel: bool = False,
                 transform: Callable | None = None):
        if split not in ("train", "val"):
            raise ValueError(f"unknown split {split!r}; choose from ('train', 'val')")
        folder = Path(root) / split
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} not found")
        items = []
        for path in sorted(folder.iterdir()):
            m = _CUHK03_NAME.match(path.name)
            if m:
                items.append(ReidItem(path, int(m.group(1)), 1 if int(m.group(2)) < 5 else 2))
        super().__init__(items, transform, relabel)
        self.split = split


def cuhk03_subset_query_gallery(root: str | Path, seed: int = 0,
                                split: str = "val") -> ReidTrial:
    """CUHK03 "new protocol"-style query/gallery on a subset split: for every identity one
    random image per camera is a query and all its other images are gallery (so every query
    has matches in the other camera). ``train`` holds the train split when ``split="val"``.
    """
    ds = CUHK03Subset(root, split)
    rng = np.random.default_rng(seed)
    by_key: dict[tuple[int, int], list[ReidItem]] = defaultdict(list)
    for it in ds.items:
        by_key[(it.pid, it.camid)].append(it)
    chosen = {k: v[int(rng.integers(len(v)))] for k, v in sorted(by_key.items())}
    query = list(chosen.values())
    taken = set(query)
    gallery = [it for it in ds.items if it not in taken]
    train = CUHK03Subset(root, "train").items if split == "val" else []
    return ReidTrial(0, query, gallery, train)


# --------------------------------------------------------------------------- PETA re-ID

PETA_REID_SUBSETS = ("3DPeS", "CAVIAR4REID", "GRID", "i-LID", "PRID", "SARC3D", "TownCentre",
                     "VIPeR")
_NO_IDENTITIES = ("CUHK", "MIT")  # one image per person id in PETA
_SUBSET_ALIASES = {"ilids": "i-LID", "ilid": "i-LID", "ilidsvid": "i-LID",
                   "caviar": "CAVIAR4REID", "prid2011": "PRID", "towncenter": "TownCentre",
                   "sarc": "SARC3D"}


def _subset_name(subset: str) -> str:
    key = re.sub(r"[^a-z0-9]", "", subset.lower())
    for name in (*PETA_REID_SUBSETS, *_NO_IDENTITIES):
        if re.sub(r"[^a-z0-9]", "", name.lower()) == key:
            return name
    if key in _SUBSET_ALIASES:
        return _SUBSET_ALIASES[key]
    raise ValueError(f"unknown PETA sub-dataset {subset!r}; re-ID subsets: "
                     f"{', '.join(PETA_REID_SUBSETS)}")


@lru_cache(maxsize=4)
def _identity_rows(path: str, mtime_ns: int) -> dict[str, tuple[tuple[str, int, int, int], ...]]:
    """sub-dataset -> ((file, person id, camera, PETA index), ...), cached per file version."""
    out: dict[str, list[tuple[str, int, int, int]]] = defaultdict(list)
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            cam = (row.get("camera") or "").strip()
            out[row["subset"]].append((row["file"], int(row["person_id"]),
                                       int(cam) if cam.lstrip("-").isdigit() else -1,
                                       int(row["index"])))
    return {k: tuple(v) for k, v in out.items()}


def _peta_rows(root: Path) -> dict[str, tuple[tuple[str, int, int, int], ...]]:
    path = root / "identities.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: root must be the PETA folder")
    return _identity_rows(str(path.resolve()), path.stat().st_mtime_ns)


def read_peta_identities(root: str | Path) -> dict[str, list[tuple[ReidItem, int]]]:
    """``identities.csv`` of a PETA folder: sub-dataset -> [(item, PETA index)] in file
    order; image paths are ``root/images/<file>``."""
    root = Path(root)
    images = root / "images"
    return {subset: [(ReidItem(images / f, pid, cam), idx) for f, pid, cam, idx in rows]
            for subset, rows in _peta_rows(root).items()}


def _subset_items(root: str | Path, subset: str) -> list[ReidItem]:
    name = _subset_name(subset)
    if name in _NO_IDENTITIES:
        raise ValueError(f"PETA's {name} images have one image per person: no re-ID identities")
    root = Path(root)
    rows = _peta_rows(root).get(name)
    if not rows:
        raise ValueError(f"no {name} rows in {root / 'identities.csv'}")
    images = root / "images"
    return [ReidItem(images / f, pid, cam) for f, pid, cam, _ in rows]


def peta_reid_subset(root: str | Path, subset: str, relabel: bool = False,
                     transform: Callable | None = None) -> ReidDataset:
    """All images of one PETA sub-dataset with identities (``PETA_REID_SUBSETS``; "i-LIDS",
    "ilids", "viper", ... are accepted). Person ids are those of the sub-dataset."""
    return ReidDataset(_subset_items(root, subset), transform, relabel)


def _split_ids(ids: list[int], n_test: int | None, t: int, seed: int) -> tuple[set, set]:
    ids = sorted(ids)
    n_test = len(ids) // 2 if n_test is None else n_test
    if not 1 <= n_test <= len(ids):
        raise ValueError(f"n_test must be in 1..{len(ids)}, got {n_test}")
    perm = np.random.default_rng([seed, t]).permutation(len(ids))
    test = {ids[i] for i in perm[:n_test]}
    return test, set(ids) - test


def _trials(items: list[ReidItem], probe_cam: Callable[[list[ReidItem]], ReidItem],
            n_trials: int, seed: int, n_test: int | None,
            distractors: Callable[[ReidItem], bool]) -> list[ReidTrial]:
    """Paired identities (>=2 cameras) split per trial; one probe per test identity, the
    rest of its images and every distractor item in the gallery."""
    if n_trials < 1:
        raise ValueError("n_trials must be >= 1")
    by_pid: dict[int, list[ReidItem]] = defaultdict(list)
    for it in items:
        by_pid[it.pid].append(it)
    paired = [p for p, its in by_pid.items() if len({i.camid for i in its}) >= 2]
    if not paired:
        raise ValueError("no identity is seen by two cameras")
    paired_set = set(paired)
    extra = [it for it in items if it.pid not in paired_set and distractors(it)]
    trials = []
    for t in range(n_trials):
        test, train = _split_ids(paired, n_test, t, seed)
        query, gallery = [], []
        for pid in sorted(test):
            probe = probe_cam(by_pid[pid])
            query.append(probe)
            gallery += [it for it in by_pid[pid] if it != probe]
        trial_train = [it for pid in sorted(train) for it in by_pid[pid]]
        trials.append(ReidTrial(t, query, gallery + extra, trial_train))
    return trials


def _from_cam(cam: int) -> Callable[[list[ReidItem]], ReidItem]:
    return lambda its: next(i for i in its if i.camid == cam)


def viper_trials(root: str | Path, n_trials: int = 10, seed: int = 0,
                 n_test: int | None = None) -> list[ReidTrial]:
    """VIPeR single-shot: test half (316 of 632 ids), query camera 1, gallery camera 2."""
    items = _subset_items(root, "VIPeR")
    items = [it for it in items if it.camid in (1, 2)]
    trials = _trials(items, _from_cam(1), n_trials, seed, n_test, lambda it: False)
    return [ReidTrial(t.trial, t.query, [g for g in t.gallery if g.camid == 2], t.train)
            for t in trials]


def prid_trials(root: str | Path, n_trials: int = 10, seed: int = 0,
                n_test: int | None = None) -> list[ReidTrial]:
    """PRID 2011 single-shot (Hirzer et al.): 100 of the 200 two-camera persons per trial;
    query = their camera-a (1) images; gallery = their camera-b (2) images plus the 549
    camera-b-only persons (649 in all)."""
    items = [it for it in _subset_items(root, "PRID") if it.camid in (1, 2)]
    trials = _trials(items, _from_cam(1), n_trials, seed, n_test,
                     distractors=lambda it: it.camid == 2)
    return [ReidTrial(t.trial, t.query, [g for g in t.gallery if g.camid == 2], t.train)
            for t in trials]


def grid_trials(root: str | Path, n_trials: int = 10, seed: int = 0,
                n_test: int | None = None) -> list[ReidTrial]:
    """GRID: 125 of the 250 paired persons per trial; query = the probe image (lower camera
    number) of each, gallery = their other image plus the 775 single-image distractors."""
    items = _subset_items(root, "GRID")

    def probe(its: list[ReidItem]) -> ReidItem:
        return min(its, key=lambda i: i.camid)

    return _trials(items, probe, n_trials, seed, n_test, distractors=lambda it: True)
