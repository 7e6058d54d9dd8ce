"""One result schema for every way a record leaves personlens (CLI JSON, the HTTP API,
exports), and the time values filters take.

``result_json(record)``::

    {"id", "rank"?, "score"?, "path", "attributes" (every probability), "present" (the
     calibrated yes-list, most probable first), "camera", "timestamp", "timestamp_iso" (UTC
     ISO 8601 or null), "track_id", "description", "model_version",
     "track"? (video tracks: video, start, end, frames, uncertain)}

``root`` set (the service): ``path`` (and a track's ``video``) is made relative to that
library directory when the file is inside it, else only the file name, so a client never
sees the server's absolute paths. The service adds ``image_url``.

Exports (``export_lines``): ``jsonl`` is one ``result_json`` per line; ``csv`` has the columns
``CSV_COLUMNS`` then one column per attribute probability.
"""
from __future__ import annotations

import csv
import io
import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from ..inference.records import PersonRecord

CSV_COLUMNS = ("id", "path", "camera", "timestamp_iso", "track_id", "present", "description")
EXPORT_FORMATS = ("csv", "jsonl")
TRACK_KEYS = ("video", "start", "end", "frames", "uncertain")


# ---------------------------------------------------------------------- time
def iso_time(t: float | None) -> str | None:
    """Epoch seconds as UTC ISO 8601 (``2026-11-29T13:00:00Z``; fractions kept); None stays None."""
    if t is None:
        return None
    return datetime.fromtimestamp(float(t), timezone.utc).isoformat().replace("+00:00", "Z")


def parse_time(value, name: str = "time", *, allow_epoch: bool = True) -> float | None:
    """A filter time as epoch seconds: ISO 8601 (``2026-11-29``, ``2026-11-29T14:00:00``,
    ``...Z``, ``...+01:00``; no zone = UTC) or, with ``allow_epoch``, a number of seconds
    since the epoch. None or "" is None; anything else is a ValueError naming ``name``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    hint = "an ISO 8601 time such as 2026-11-29T14:00:00Z (no zone: UTC)" + \
           (" or seconds since the epoch" if allow_epoch else "")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{name} {value!r}: expected {hint}")
    t = None
    if isinstance(value, (int, float)):
        if not allow_epoch:
            raise ValueError(f"{name} {value!r}: expected {hint}")
        t = float(value)
    else:
        s = value.strip()
        if allow_epoch:
            try:
                t = float(s)
            except ValueError:
                pass
        if t is None:
            try:
                d = datetime.fromisoformat(s)
            except ValueError:
                raise ValueError(f"{name} {s!r}: expected {hint}") from None
            if d.tzinfo is None:
                d = d.replace(tzinfo=timezone.utc)
            t = d.timestamp()
    if not math.isfinite(t):
        raise ValueError(f"{name} {value!r}: not a finite time")
    return t


EXIF_IFD, DATETIME_ORIGINAL, OFFSET_TIME_ORIGINAL = 0x8769, 36867, 36881


def exif_time(data: bytes) -> float | None:
    """The EXIF DateTimeOriginal of an image file's bytes as epoch seconds (its
    OffsetTimeOriginal zone when given, else UTC); None when there is none or it is unreadable."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            ifd = im.getexif().get_ifd(EXIF_IFD)
        value, offset = ifd.get(DATETIME_ORIGINAL), ifd.get(OFFSET_TIME_ORIGINAL)
        if not isinstance(value, str):
            return None
        d = datetime.strptime(value.strip().rstrip("\x00"), "%Y:%m:%d %H:%M:%S")
        zone = timezone.utc
        if isinstance(offset, str) and offset.strip():
            zone = datetime.strptime(offset.strip().rstrip("\x00"), "%z").tzinfo
        return d.replace(tzinfo=zone).timestamp()
    except Exception:  # noqa: BLE001 - a missing or malformed tag means: no time
        return None


def file_time(path, data: bytes, source: str) -> float | None:
    """A crop's time from its file: ``"mtime"`` (modification time) or ``"exif"``
    (``exif_time``); None when unavailable."""
    if source == "mtime":
        try:
            return Path(path).stat().st_mtime
        except OSError:
            return None
    if source == "exif":
        return exif_time(data)
    raise ValueError(f"timestamps from 'mtime' or 'exif', not {source!r}")


# ---------------------------------------------------------------------- records
def display_path(path: str | None, root: str | Path | None) -> str | None:
    """``path`` as a result shows it: unchanged without ``root``; with ``root``, relative to
    it when inside it, else the file name only."""
    if path is None or root is None:
        return path
    p = Path(path)
    try:
        return p.resolve().relative_to(Path(root).resolve()).as_posix()
    except (ValueError, OSError):
        return p.name


def track_json(record: PersonRecord, root: str | Path | None = None) -> dict | None:
    """A video track record's ``track`` (video, start, end, frames, uncertain); None for a crop
    or when its track file is gone."""
    if not record.track_id:
        return None
    from .video import track_summary

    t = track_summary(record.path)
    if t is None:
        return None
    out = {k: t.get(k) for k in TRACK_KEYS}
    out["video"] = display_path(out["video"], root)
    return out


def result_json(record: PersonRecord, *, score: float | None = None, rank: int | None = None,
                root: str | Path | None = None, track: dict | None = None) -> dict:
    """The one JSON shape of a record (module docstring). ``track``: the record's track
    summary when the caller already has it (else read from the track file)."""
    d: dict = {"id": record.id}
    if rank is not None:
        d["rank"] = int(rank)
    if score is not None:
        d["score"] = round(float(score), 4)
    d.update({"path": display_path(record.path, root),
              "attributes": dict(record.attributes),
              "present": record.top_present(),
              "camera": record.camera, "timestamp": record.timestamp,
              "timestamp_iso": iso_time(record.timestamp), "track_id": record.track_id,
              "description": record.description, "model_version": record.model_version})
    if track is not None:
        track = {k: track.get(k) for k in TRACK_KEYS}
        track["video"] = display_path(track["video"], root)
    else:
        track = track_json(record, root)
    if track is not None:
        d["track"] = track
    return d


# ---------------------------------------------------------------------- exports
def csv_header(attribute_names: Sequence[str]) -> list[str]:
    return [*CSV_COLUMNS, *attribute_names]


def csv_row(record: PersonRecord, attribute_names: Sequence[str],
            root: str | Path | None = None) -> list:
    return [record.id, display_path(record.path, root), record.camera or "",
            iso_time(record.timestamp) or "", record.track_id or "",
            ";".join(record.top_present()), record.description or "",
            *[("" if record.attributes.get(n) is None else round(record.attributes[n], 6))
              for n in attribute_names]]


def export_lines(records: Iterable[PersonRecord], fmt: str, attribute_names: Sequence[str],
                 root: str | Path | None = None, header: bool = True,
                 to_json=None) -> Iterator[str]:
    """The export of ``records`` as text lines (each ending in a newline): ``csv`` (a header
    unless ``header`` is False, then one row per record) or ``jsonl`` (``to_json(record)``
    per line, default ``result_json``)."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"export format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    if fmt == "jsonl":
        for r in records:
            yield json.dumps(to_json(r) if to_json else result_json(r, root=root)) + "\n"
        return
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")

    def line(row) -> str:
        buf.seek(0)
        buf.truncate()
        w.writerow(row)
        return buf.getvalue()

    if header:
        yield line(csv_header(attribute_names))
    for r in records:
        yield line(csv_row(r, attribute_names, root))
