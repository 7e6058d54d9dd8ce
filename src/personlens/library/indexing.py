"""``PersonLibrary.index_paths``: crops into a library, in batches, idempotent and
crash-safe (the guarantees are in ``library.core``'s docstring)."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from PIL import Image

from ..data.images import ImageLoadError, decode_image, read_image_bytes
from ..inference.predict import PredictionError
from ..inference.records import content_id
from ..store import EMBEDDING_KINDS


@dataclass
class IndexSummary:
    added: int = 0
    skipped_existing: int = 0
    reembedded: int = 0
    failed: list[PredictionError] = field(default_factory=list)
    total: int = 0          # records in the library (current model) after the run
    stale: int = 0          # records still embedded by another model

    def to_dict(self) -> dict:
        return {"added": self.added, "skipped_existing": self.skipped_existing,
                "reembedded": self.reembedded, "total": self.total, "stale": self.stale,
                "failed": [{"image": f.image, "error": f.error} for f in self.failed]}


def _abs(p) -> str | None:
    return None if p is None else str(Path(p).expanduser().resolve())


def index_crops(lib, paths: Iterable[str | Path], batch_size: int = 32, progress: bool = True,
                camera: str | None = None,
                on_error: Callable[[PredictionError], None] | None = None, *,
                timestamp: float | None = None, timestamps_from: str | None = None,
                metadata: Sequence[dict | None] | None = None):
    """``PersonLibrary.index_paths`` (see there); returns an ``IndexSummary``."""
    from tqdm import tqdm

    from .results import file_time

    lib._check_writable()
    paths = list(paths)
    if metadata is not None:
        metadata = list(metadata)
        if len(metadata) != len(paths):
            raise ValueError("metadata needs one entry per path")
    if timestamps_from not in (None, "mtime", "exif"):
        raise ValueError(f"timestamps_from must be 'mtime' or 'exif', got {timestamps_from!r}")
    pipe = lib.pipeline
    mv = pipe.model_version
    lib.store.set_meta("models", lib.models)
    lib.store.set_meta("pipeline", pipe.describe())
    for kind in EMBEDDING_KINDS:
        lib.index(kind)
    summary = IndexSummary()
    pending: list[tuple[str, str, Image.Image, bool, dict]] = []
    pending_ids: set[str] = set()
    last_save = time.monotonic()

    def fail(path, reason):
        err = PredictionError(str(path), reason)
        summary.failed.append(err)
        if on_error:
            on_error(err)

    def flush():
        nonlocal last_save
        if not pending:
            return
        _commit(lib, pending)
        summary.added += sum(1 for p in pending if not p[3])
        summary.reembedded += sum(1 for p in pending if p[3])
        pending.clear()
        pending_ids.clear()
        if time.monotonic() - last_save > lib.checkpoint_every_s:
            lib.save_indexes()
            last_save = time.monotonic()

    bar = tqdm(total=len(paths), disable=not progress, unit="crop", desc="indexing",
               file=sys.stderr, dynamic_ncols=True)
    try:
        for n, path in enumerate(paths):
            bar.update(1)
            try:
                data = read_image_bytes(path)
            except ImageLoadError as e:
                fail(path, e.reason)
                continue
            cid = content_id(data)
            stored = lib.store.model_version_of(cid)
            if cid in pending_ids or stored == mv:
                summary.skipped_existing += 1
                continue
            try:
                img = decode_image(data, str(path))
            except ImageLoadError as e:
                fail(path, e.reason)
                continue
            given = (metadata[n] if metadata is not None else None) or {}
            meta = {"camera": given.get("camera", camera),
                    "timestamp": given.get("timestamp", timestamp),
                    "track_id": given.get("track_id")}
            if meta["timestamp"] is None and timestamps_from:
                meta["timestamp"] = file_time(path, data, timestamps_from)
            if stored is not None:       # re-embedded: keep what this run does not say
                old = lib.store.get(cid)
                for k in meta:
                    if meta[k] is None and old is not None:
                        meta[k] = getattr(old, k)
            pending.append((cid, _abs(path), img, stored is not None, meta))
            pending_ids.add(cid)
            if len(pending) >= batch_size:
                flush()
        flush()
    finally:
        bar.close()
        lib.save_indexes()
    summary.total = lib.store.count(mv)
    summary.stale = lib.store.count() - summary.total
    return summary


def _commit(lib, pending) -> None:
    ids, srcs, imgs, _, metas = zip(*pending)
    cameras = [m["camera"] for m in metas]
    kw = {"ids": list(ids), "timestamps": [m["timestamp"] for m in metas],
          "track_ids": [m["track_id"] for m in metas]}
    pipe = lib.pipeline
    if len(set(cameras)) > 1 and hasattr(pipe, "process_cameras"):
        records = pipe.process_cameras(list(imgs), list(srcs), cameras, **kw)  # per-camera adaptation
    else:
        if hasattr(pipe, "use_camera"):
            pipe.use_camera(cameras[0])     # that camera's adaptation, if any
        records = pipe.process(list(imgs), list(srcs), camera=cameras[0], **kw)
    lib.add_records(records)

