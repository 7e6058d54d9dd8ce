"""The files a library directory owns for its records, and removing them with the records.

A library owns only what it wrote inside its own directory:

* ``uploads/ab/<sha256>.<ext>``: the service's copy of an uploaded crop (the record's path);
* ``video/<video>/track-NNNN-K.jpg`` and ``track-NNNN.json``: a video track's best crops and
  its track file (``library.video``).

Crops indexed from the user's own folders, and any file outside the library directory, are
never touched. A file is removed only when no remaining record has it as its path.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ..inference.records import PersonRecord

UPLOADS = "uploads"        # as ``serve.service.UPLOADS``


def _inside(p: Path, folder: Path) -> bool:
    try:
        p.relative_to(folder)
        return True
    except ValueError:
        return False


def owned_files(record: PersonRecord, root: str | Path) -> tuple[list[Path], dict | None]:
    """(files of ``record`` that the library at ``root`` owns, the track file's content for a
    video track record or None). Paths are resolved; none is outside ``root``."""
    from .video import VIDEO_DIR, track_file

    root = Path(root).resolve()
    try:
        p = Path(record.path).resolve()
    except (OSError, RuntimeError):
        return [], None
    if _inside(p, root / UPLOADS):
        return [p], None
    if not _inside(p, root / VIDEO_DIR):
        return [], None
    files, meta = [p], None
    tf = track_file(p)
    if tf is not None:
        try:
            meta = json.loads(tf.read_text())
        except (OSError, ValueError):
            meta = None
        files.append(tf)
        for name in (meta or {}).get("crop_files", []):
            files.append(p.parent / str(name))
    out = []
    for f in dict.fromkeys(files):
        f = f.resolve()
        if _inside(f, root / VIDEO_DIR) and f not in out:
            out.append(f)
    return out, meta


def delete_with_files(store, ids: Sequence[str], root: str | Path,
                      after_delete=None) -> tuple[int, list[str]]:
    """Remove the records ``ids`` from ``store`` (one transaction), then the files the library
    at ``root`` owns for them that no remaining record uses, and forget that their videos
    were indexed (so indexing the video again adds those tracks back). ``after_delete()`` runs
    right after the store write (index updates). Returns (records removed, files removed)."""
    from .video import video_done_key

    ids = list(dict.fromkeys(ids))
    records = store.get_many(ids)
    owned: list[Path] = []
    videos = set()
    for r in records:
        files, meta = owned_files(r, root)
        owned.extend(files)
        if meta and meta.get("video_sha256") and meta.get("settings") is not None:
            videos.add(video_done_key(meta["video_sha256"], meta["settings"]))
    n = store.delete(ids)
    if after_delete is not None:
        after_delete()
    in_use = store.used_paths([str(f) for f in owned]) if owned else set()
    removed, folders = [], set()
    for f in dict.fromkeys(owned):
        if str(f) in in_use:
            continue
        try:
            f.unlink()
            removed.append(str(f))
            folders.add(f.parent)
        except FileNotFoundError:
            pass
        except OSError:
            pass      # not ours to fight over: the record is gone, the file stays
    for d in folders:             # an emptied uploads/ab/ or video/<video>/ folder goes too
        try:
            d.rmdir()
        except OSError:
            pass
    for key in sorted(videos):
        if store.get_meta(key, None) is not None:
            store.set_meta(key, None)
    return n, removed
