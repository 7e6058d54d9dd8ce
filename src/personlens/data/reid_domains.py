"""Re-ID domains for lifelong learning: fixed identity splits of the seen domains, and the
unseen domains' trial protocols (issue 16).

A :class:`Domain` holds a training list and one or more evaluation :class:`ReidTrial`\\ s.
Every seen domain is split once by identity with ``np.random.default_rng([seed, 0])`` on the
sorted eligible identities (``seed`` 0 by default), so the split is the same in every run:

* ``cuhk03``: CUHK03-subset ``train`` (743 identities) trains; the test is ``val`` (100
  identities): one random camera-A image per identity is the query, every camera-B image the
  gallery.
* ``towncentre`` (PETA's TownCentre, one camera): the images of a person are frames of one
  track, named ``<person>_<frame>``; consecutive frames are near duplicates, so at most
  ``TOWNCENTRE_FRAMES`` (10) per person are kept, evenly spaced in time (6,967 -> 2,034
  images). Each person's frames are cut in time at their median:
  the earlier half is "camera" 1, the later half "camera" 2. Half of the persons with frames
  on both sides are test persons: one random earlier frame is the query, and the gallery is
  every image of every test person, so with the same-camera rule the only true matches are
  later in time. The other persons train.
* ``3dpes`` (PETA's 3DPeS): files are named ``<person>_<sequence>_FRAME_<frame>``; the
  sequence plays the camera's role, so queries match only other sequences. Half of the
  persons seen in two or more sequences are test persons (query: one random image).
* ``caviar`` (PETA's CAVIAR4REID): images 1-10 of a person come from one camera, 11-20 from
  the other; 50 persons have both. Half of those 50 are test persons (query: one random
  camera-1 image, gallery: all their images; same-camera images do not count). The other 25
  and the 22 persons of one camera train.

The **validation protocol** (``split="val"``, :func:`validation_domain`) is for choosing a
strategy's settings without touching any test person: a quarter of each seen domain's
*training* persons that have a cross-camera pair (``VAL_SHARE``; at least 10 where half of
them is as many) become val persons, scored with the domain's own query rule
(``QUERY_CAMERA``); the rest train. The test persons are left out entirely, and no unseen
domain is scored.

Unseen domains never train: ``viper``, ``prid``, ``grid`` use the 10-trial protocols of
:mod:`personlens.data.reid`; ``ilids`` (PETA's i-LIDS, 119 persons, no camera labels) draws
60 test persons per trial, one random query image each, the rest of their images the gallery.

Person ids inside a domain are the dataset's own; ``Domain.offset_ids`` makes them unique
across domains for training.
"""
from __future__ import annotations

import re
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .reid import (CUHK03Subset, ReidItem, ReidTrial, _identity_rows, grid_trials, prid_trials,
                   viper_trials)

__all__ = ["Domain", "TOWNCENTRE_FRAMES", "SEEN_DOMAINS", "UNSEEN_DOMAINS", "ORDERS", "SPLITS",
           "QUERY_CAMERA", "GALLERY_CAMERA", "VAL_SHARE", "load_domain", "validation_domain", "ilids_trials",
           "domain_order", "user_domain"]

TOWNCENTRE_FRAMES = 10
SEEN_DOMAINS = ("cuhk03", "towncentre", "3dpes", "caviar")
UNSEEN_DOMAINS = ("viper", "prid", "grid", "ilids")
# the two orders of the protocol: by number of training identities, and the reverse
ORDERS = {"large-to-small": SEEN_DOMAINS, "small-to-large": tuple(reversed(SEEN_DOMAINS))}
SPLITS = ("test", "val")
# the camera queries come from in each seen domain (None: any camera with a match elsewhere)
QUERY_CAMERA = {"cuhk03": 1, "towncentre": 1, "3dpes": None, "caviar": 1}
# a gallery restricted to one camera, as the domain's test protocol has it (CUHK03: A vs B)
GALLERY_CAMERA = {"cuhk03": 2}
VAL_SHARE = 0.25


@dataclass(frozen=True)
class Domain:
    name: str
    train: list[ReidItem]
    trials: list[ReidTrial]
    notes: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def num_train_ids(self) -> int:
        return len({it.pid for it in self.train})

    def images(self) -> list[Path]:
        """Every image the domain uses (training and every trial), each once, in a fixed order."""
        seen, out = set(), []
        for it in [*self.train, *(x for t in self.trials for x in (*t.query, *t.gallery))]:
            if it.path not in seen:
                seen.add(it.path)
                out.append(it.path)
        return out


def domain_order(name: str) -> tuple[str, ...]:
    if name not in ORDERS:
        raise ValueError(f"unknown order {name!r}; choose from {', '.join(ORDERS)}")
    return ORDERS[name]


def _peta_rows(peta_root: Path, subset: str):
    path = Path(peta_root) / "identities.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: --root must be the PETA folder")
    rows = _identity_rows(str(path.resolve()), path.stat().st_mtime_ns).get(subset)
    if not rows:
        raise ValueError(f"no {subset} rows in {path}")
    images = Path(peta_root) / "images"
    return images, rows


def _original_names(peta_root: Path, subset: str) -> dict[str, str]:
    import csv

    with open(Path(peta_root) / "identities.csv", newline="") as f:
        return {r["file"]: r["original_name"] for r in csv.DictReader(f) if r["subset"] == subset}


def _split_persons(eligible: list[int], seed: int) -> set[int]:
    """Half of the eligible persons (sorted, then permuted by the seed) are test persons."""
    eligible = sorted(eligible)
    perm = np.random.default_rng([seed, 0]).permutation(len(eligible))
    return {eligible[i] for i in perm[:len(eligible) // 2]}


def _query_gallery(items: list[ReidItem], test: set[int], seed: int,
                   query_cam: int | None = None, gallery_cam: int | None = None) -> ReidTrial:
    """One random query per test person (from ``query_cam`` when given, else any camera that
    has a match in another camera); the gallery is every other image of the test persons (in
    ``gallery_cam`` only, when given)."""
    rng = np.random.default_rng([seed, 1])
    by_pid: dict[int, list[ReidItem]] = defaultdict(list)
    for it in items:
        if it.pid in test:
            by_pid[it.pid].append(it)
    query = []
    for pid in sorted(by_pid):
        its = by_pid[pid]
        cams = {it.camid for it in its}
        pool = [it for it in its if (it.camid == query_cam if query_cam is not None
                                     else len(cams - {it.camid}) > 0)]
        if pool:
            query.append(pool[int(rng.integers(len(pool)))])
    taken = set(query)
    gallery = [it for pid in sorted(by_pid) for it in by_pid[pid]
               if it not in taken and (gallery_cam is None or it.camid == gallery_cam)]
    return ReidTrial(0, query, gallery, [])


def _cuhk03(root: Path, seed: int) -> Domain:
    train = CUHK03Subset(root, "train").items
    val = CUHK03Subset(root, "val").items
    rng = np.random.default_rng([seed, 1])
    by_pid: dict[int, list[ReidItem]] = defaultdict(list)
    for it in val:
        by_pid[it.pid].append(it)
    query = []
    for pid in sorted(by_pid):
        cam_a = [it for it in by_pid[pid] if it.camid == 1]
        if cam_a and any(it.camid == 2 for it in by_pid[pid]):
            query.append(cam_a[int(rng.integers(len(cam_a)))])
    gallery = [it for it in val if it.camid == 2]
    return Domain("cuhk03", train, [ReidTrial(0, query, gallery, [])],
                  "CUHK03-subset: train split trains; val split tests, camera A vs camera B")


def _towncentre(peta_root: Path, seed: int) -> Domain:
    images, rows = _peta_rows(peta_root, "TownCentre")
    names = _original_names(peta_root, "TownCentre")
    frames: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for f, pid, _cam, _idx in rows:
        m = re.match(r"^\d+_(\d+)\.", names[f])
        if not m:
            raise ValueError(f"TownCentre file {names[f]!r} is not <person>_<frame>")
        frames[pid].append((int(m.group(1)), f))
    items = []
    for pid, fr in frames.items():
        fr = sorted(fr)
        if len(fr) > TOWNCENTRE_FRAMES:
            fr = [fr[int(i)] for i in np.linspace(0, len(fr) - 1, TOWNCENTRE_FRAMES).round()]
        median = float(np.median([t for t, _ in fr]))
        items += [ReidItem(images / f, pid, 1 if t <= median else 2) for t, f in fr]
    two_sided = [p for p in frames if len({it.camid for it in items if it.pid == p}) == 2]
    test = _split_persons(two_sided, seed)
    return Domain("towncentre", [it for it in items if it.pid not in test],
                  [_query_gallery(items, test, seed, query_cam=1)],
                  "TownCentre (one camera): query from the earlier half of a track, true "
                  "matches only from the later half")


def _threedpes(peta_root: Path, seed: int) -> Domain:
    images, rows = _peta_rows(peta_root, "3DPeS")
    names = _original_names(peta_root, "3DPeS")
    seq_ids: dict[str, int] = {}
    items = []
    for f, pid, _cam, _idx in rows:
        seq = names[f].split("_")[1]
        items.append(ReidItem(images / f, pid, seq_ids.setdefault(seq, len(seq_ids) + 1)))
    by_pid: dict[int, set] = defaultdict(set)
    for it in items:
        by_pid[it.pid].add(it.camid)
    test = _split_persons([p for p, s in by_pid.items() if len(s) >= 2], seed)
    return Domain("3dpes", [it for it in items if it.pid not in test],
                  [_query_gallery(items, test, seed)],
                  "3DPeS: the sequence plays the camera; matches only from other sequences")


def _caviar(peta_root: Path, seed: int) -> Domain:
    images, rows = _peta_rows(peta_root, "CAVIAR4REID")
    names = _original_names(peta_root, "CAVIAR4REID")
    items = []
    for f, pid, _cam, _idx in rows:
        k = int(names[f].split("_")[1].split(".")[0])
        items.append(ReidItem(images / f, pid, 1 if k <= 10 else 2))
    both = sorted({it.pid for it in items if it.camid == 2})
    test = _split_persons(both, seed)
    return Domain("caviar", [it for it in items if it.pid not in test],
                  [_query_gallery(items, test, seed, query_cam=1)],
                  "CAVIAR4REID: query camera 1, matches only from camera 2")


def ilids_trials(peta_root, n_trials: int = 10, seed: int = 0,
                 n_test: int = 60) -> list[ReidTrial]:
    """i-LIDS (PETA's i-LID, no camera labels): per trial ``n_test`` of the persons with two
    or more images; one random query each, the rest of their images the gallery. Query
    camera 1 and gallery camera 2, so no gallery image is dropped by the same-camera rule."""
    images, rows = _peta_rows(peta_root, "i-LID")
    by_pid: dict[int, list[ReidItem]] = defaultdict(list)
    for f, pid, _cam, _idx in rows:
        by_pid[pid].append(ReidItem(images / f, pid, 2))
    eligible = sorted(p for p, its in by_pid.items() if len(its) >= 2)
    if not 1 <= n_test <= len(eligible):
        raise ValueError(f"n_test must be in 1..{len(eligible)}")
    trials = []
    for t in range(n_trials):
        rng = np.random.default_rng([seed, t])
        test = sorted(eligible[i] for i in rng.permutation(len(eligible))[:n_test])
        query, gallery = [], []
        for pid in test:
            its = by_pid[pid]
            q = int(rng.integers(len(its)))
            query.append(ReidItem(its[q].path, pid, 1))
            gallery += [it for i, it in enumerate(its) if i != q]
        train = [it for p in eligible if p not in set(test) for it in by_pid[p]]
        trials.append(ReidTrial(t, query, gallery, train))
    return trials


def validation_domain(domain: Domain, seed: int = 0, share: float = VAL_SHARE) -> Domain:
    """The validation protocol of a seen domain: ``share`` of its training persons with images
    in two cameras (at least 10 where half of them is as many; fewer than 2 is refused) are
    held out and scored like the test persons (the same query and gallery cameras); the rest
    train. The domain's test persons do
    not appear at all."""
    if domain.name not in QUERY_CAMERA:
        raise ValueError(f"{domain.name!r} is not a seen domain: only seen domains have a validation split")
    qcam = QUERY_CAMERA[domain.name]
    cams: dict[int, set] = defaultdict(set)
    for it in domain.train:
        cams[it.pid].add(it.camid)
    eligible = [p for p, c in cams.items() if len(c) >= 2 and (qcam is None or qcam in c)]
    # at least 10 persons where the domain can spare them: fewer queries say little
    n_val = max(min(10, len(eligible) // 2), round(share * len(eligible)))
    if n_val < 2:
        raise ValueError(f"{domain.name}: {len(eligible)} training persons in two cameras, too few "
                         "for a validation split")
    eligible = sorted(eligible)
    perm = np.random.default_rng([seed, 2]).permutation(len(eligible))
    val = {eligible[i] for i in perm[:n_val]}
    return Domain(domain.name, [it for it in domain.train if it.pid not in val],
                  [_query_gallery(domain.train, val, seed, query_cam=qcam,
                                  gallery_cam=GALLERY_CAMERA.get(domain.name))],
                  f"validation split of {domain.name}: {n_val} of its training persons held out",
                  {**domain.meta, "split": "val"})


def load_domain(name: str, peta_root=None, cuhk03_root=None, seed: int = 0,
                n_trials: int = 10, split: str = "test") -> Domain:
    """A seen domain (its split) or an unseen one (its trials, no training list).
    ``split="val"``: a seen domain's validation protocol (:func:`validation_domain`)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if split == "val":
        if name not in SEEN_DOMAINS:
            raise ValueError(f"{name!r} is not a seen domain: only seen domains have a validation split")
        return validation_domain(load_domain(name, peta_root, cuhk03_root, seed, n_trials), seed)
    need_peta = name != "cuhk03"
    root = peta_root if need_peta else cuhk03_root
    if name not in SEEN_DOMAINS + UNSEEN_DOMAINS:
        raise ValueError(f"unknown domain {name!r}; seen: {', '.join(SEEN_DOMAINS)}; "
                         f"unseen: {', '.join(UNSEEN_DOMAINS)}")
    if root is None:
        raise ValueError(f"domain {name} needs {'the PETA root' if need_peta else 'the CUHK03-subset root'}")
    root = Path(root)
    if name == "cuhk03":
        return _cuhk03(root, seed)
    seen = {"towncentre": _towncentre, "3dpes": _threedpes, "caviar": _caviar}
    if name in seen:
        return seen[name](root, seed)
    protocols = {"viper": viper_trials, "prid": prid_trials, "grid": grid_trials,
                 "ilids": ilids_trials}
    trials = protocols[name](root, n_trials=n_trials, seed=seed)
    return Domain(name, [], trials, f"{name}: {n_trials}-trial protocol, never trained on")


# --------------------------------------------------------------------------- a user's cameras

_CAMERA_IN_NAME = re.compile(r"(?:^|[_\-.])c(?:am(?:era)?)?[_\-]?(\d+)", re.IGNORECASE)
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def _camera_of(path: Path, person_dir: Path) -> int | None:
    rel = path.relative_to(person_dir)
    if len(rel.parts) >= 2:                       # person/<camera>/image.jpg
        m = re.search(r"(\d+)", rel.parts[0])
        return int(m.group(1)) if m else zlib.crc32(rel.parts[0].encode())
    m = _CAMERA_IN_NAME.search(path.stem)
    return int(m.group(1)) if m else None


def user_domain(name: str, source: str | Path) -> tuple[list[ReidItem], dict[int, str]]:
    """A user's labelled crops: a CSV (``path,person,camera``; paths relative to the CSV) or a
    folder with one sub-folder per person (the camera from a sub-sub-folder, or from the file
    name: ``c3``, ``cam3``, ``camera_3``). Returns the items (person ids numbered 0..n-1) and
    the person names by id. Refuses, with the reason, a domain that cannot be learned: fewer
    than 2 persons, unknown cameras, or no person seen by two cameras."""
    import csv

    source = Path(source)
    rows: list[tuple[Path, str, int | None]] = []
    if source.is_file():
        with open(source, newline="") as f:
            reader = csv.DictReader(f)
            need = {"path", "person", "camera"}
            if not need <= set(reader.fieldnames or ()):
                raise ValueError(f"{source}: a CSV needs the columns path, person, camera "
                                 f"(found {', '.join(reader.fieldnames or ()) or 'none'})")
            for r in reader:
                cam = r["camera"].strip()
                rows.append((source.parent / r["path"], r["person"].strip(),
                             int(cam) if cam.lstrip("-").isdigit() else zlib.crc32(cam.encode())))
    elif source.is_dir():
        for person in sorted(p for p in source.iterdir() if p.is_dir()):
            for path in sorted(person.rglob("*")):
                if path.suffix.lower() in _IMAGE_SUFFIXES:
                    rows.append((path, person.name, _camera_of(path, person)))
    else:
        raise FileNotFoundError(f"domain {name}: {source} is neither a CSV file nor a folder")
    persons = sorted({p for _, p, _ in rows})
    if len(persons) < 2:
        raise ValueError(f"domain {name}: {len(persons)} person(s) in {source}; need at least 2")
    unknown = [str(p) for p, _, c in rows if c is None]
    if unknown:
        raise ValueError(f"domain {name}: no camera for {len(unknown)} images (e.g. {unknown[0]}); "
                         "put each person's images in per-camera sub-folders, name them with "
                         "c<N>, or give a CSV with a camera column")
    ids = {p: i for i, p in enumerate(persons)}
    items = [ReidItem(path, ids[p], int(c)) for path, p, c in rows]
    cams: dict[int, set] = defaultdict(set)
    for it in items:
        cams[it.pid].add(it.camid)
    if not any(len(c) >= 2 for c in cams.values()):
        raise ValueError(f"domain {name}: no person is seen by two cameras in {source}; "
                         "re-ID needs cross-camera pairs")
    missing = [it.path for it in items if not Path(it.path).is_file()]
    if missing:
        raise FileNotFoundError(f"domain {name}: {len(missing)} images not found (e.g. {missing[0]})")
    return items, {i: p for p, i in ids.items()}
