"""Readers for the text-based person search benchmarks, in their released JSON formats.

Each reader returns :class:`CaptionedImage` items ``(path, pid, camid, captions)``; ``camid``
is -1 (the annotations carry no camera), ``pid`` is the annotation's ``id`` as released (the
benchmarks' code often shifts CUHK-PEDES and ICFG-PEDES ids by -1 for training; do that
downstream if needed). Layouts, as the datasets ship and as IRRA / TextReID read them:

* CUHK-PEDES (Li et al., CVPR 2017): ``CUHK-PEDES/imgs/...`` and ``reid_raw.json``, a list of
  ``{"split": "train"|"val"|"test", "captions": [...], "file_path": "CUHK01/0363004.png",
  "processed_tokens": [[...], ...], "id": 1}``; 2 captions per image as a rule.
* ICFG-PEDES (Ding et al., 2021): ``ICFG-PEDES/imgs/...`` and ``ICFG-PEDES.json``, same
  entry style with ``split`` "train"|"test" only (no validation split) and 1 caption.
* RSTPReid (Zhu et al., ACM MM 2021): ``RSTPReid/imgs/...`` and ``data_captions.json``, a list
  of ``{"id": 0, "img_path": "0000_c14_0031.jpg", "captions": [...], "split":
  "train"|"val"|"test"}``.

Tolerant of: ``root`` given as the dataset folder or the JSON file itself; images either
under ``imgs/`` or next to the JSON; ``file_path``/``img_path`` spelled either way; ids
as strings; a single caption given as a string; split spellings "validation"/"valid"/"dev";
blank captions (dropped). An entry without an id or image path is an error naming its
position. ``split="all"`` returns every entry.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

__all__ = ["CaptionedImage", "PEDES_DATASETS", "read_pedes", "read_cuhk_pedes",
           "read_icfg_pedes", "read_rstpreid", "read_pedes_json"]


class CaptionedImage(NamedTuple):
    path: Path
    pid: int
    camid: int
    captions: list[str]


_SPLIT_ALIASES = {"validation": "val", "valid": "val", "dev": "val", "training": "train",
                  "testing": "test"}
_PATH_KEYS = ("file_path", "img_path", "image_path", "file", "path")
_ID_KEYS = ("id", "pid", "person_id")

# name -> (annotation file name, splits the release has)
PEDES_DATASETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "cuhk-pedes": ("reid_raw.json", ("train", "val", "test")),
    "icfg-pedes": ("ICFG-PEDES.json", ("train", "test")),
    "rstpreid": ("data_captions.json", ("train", "val", "test")),
}


def _norm_split(split: str) -> str:
    s = str(split).strip().lower()
    return _SPLIT_ALIASES.get(s, s)


def _locate(root: str | Path, json_name: str) -> tuple[Path, Path]:
    """(annotation file, image folder) from a dataset folder or the annotation file."""
    root = Path(root)
    if root.is_file():
        ann, base = root, root.parent
    else:
        ann, base = root / json_name, root
        if not ann.exists():
            found = sorted(root.glob("*.json"))
            hint = f"; JSON files there: {', '.join(p.name for p in found)}" if found else ""
            raise FileNotFoundError(f"{ann} not found{hint}")
    images = base / "imgs"
    return ann, images if images.is_dir() else base


def _first(entry: dict, keys: tuple[str, ...]):
    for k in keys:
        if k in entry and entry[k] is not None:
            return entry[k]
    return None


def read_pedes_json(annotation: str | Path, image_root: str | Path,
                    split: str = "train") -> list[CaptionedImage]:
    """Read a PEDES-style annotation list (any of the three formats) for one split."""
    with Path(annotation).open(encoding="utf-8") as f:
        entries = json.load(f)
    if isinstance(entries, dict):  # some re-packagings wrap the list
        entries = next((v for v in entries.values() if isinstance(v, list)), None)
    if not isinstance(entries, list):
        raise ValueError(f"{annotation}: expected a JSON list of entries")
    want = _norm_split(split)
    image_root = Path(image_root)
    out: list[CaptionedImage] = []
    seen_splits: set[str] = set()
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise ValueError(f"{annotation}: entry {i} is not an object")
        entry_split = _norm_split(e.get("split", ""))
        seen_splits.add(entry_split)
        if want != "all" and entry_split != want:
            continue
        rel = _first(e, _PATH_KEYS)
        pid = _first(e, _ID_KEYS)
        if rel is None or pid is None:
            raise ValueError(f"{annotation}: entry {i} has no image path or id: {e!r:.200}")
        caps = e.get("captions", e.get("caption", []))
        if isinstance(caps, str):
            caps = [caps]
        captions = [str(c).strip() for c in caps if c is not None and str(c).strip()]
        out.append(CaptionedImage(image_root / str(rel).lstrip("/"), int(pid), -1, captions))
    if not out and want != "all" and entries:
        raise ValueError(f"{annotation}: no entry in split {split!r}; splits present: "
                         f"{', '.join(sorted(s or '(none)' for s in seen_splits))}")
    return out


def read_cuhk_pedes(root: str | Path, split: str = "train") -> list[CaptionedImage]:
    """CUHK-PEDES from ``reid_raw.json`` (splits train/val/test)."""
    return read_pedes("cuhk-pedes", root, split)


def read_icfg_pedes(root: str | Path, split: str = "train") -> list[CaptionedImage]:
    """ICFG-PEDES from ``ICFG-PEDES.json`` (splits train/test)."""
    return read_pedes("icfg-pedes", root, split)


def read_rstpreid(root: str | Path, split: str = "train") -> list[CaptionedImage]:
    """RSTPReid from ``data_captions.json`` (splits train/val/test)."""
    return read_pedes("rstpreid", root, split)


def read_pedes(name: str, root: str | Path, split: str = "train") -> list[CaptionedImage]:
    """Read ``name`` ("cuhk-pedes", "icfg-pedes" or "rstpreid") from ``root``."""
    key = {"cuhkpedes": "cuhk-pedes", "icfgpedes": "icfg-pedes", "rstpreid": "rstpreid",
           "rstp": "rstpreid"}.get(name.lower().replace("_", "").replace("-", ""))
    if key is None:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(PEDES_DATASETS)}")
    json_name, splits = PEDES_DATASETS[key]
    s = _norm_split(split)
    if s != "all" and s not in splits:
        raise ValueError(f"{key} has splits {', '.join(splits)} (or 'all'), not {split!r}")
    ann, images = _locate(root, json_name)
    return read_pedes_json(ann, images, s)
