"""Adapting a library to its cameras (``personlens adapt``), resetting it, re-embedding.

An adaptation is part of the library's model version: records made before it (or before a
reset) are stale, so both operations end by re-embedding the stale records from their files,
keeping camera, timestamp and track. Records whose file is gone stay stale and are counted.
Nothing is changed when the crops cannot be read or are too few: the check comes first.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ..data.images import ImageLoadError, decode_image, read_image_bytes
from ..inference.adapt import AdaptSettings
from ..inference.adaptation import ALL_CAMERAS, Adaptation, AdaptationError, fit_camera
from ..inference.predict import PredictionError

__all__ = ["AdaptSummary", "adapt_library", "reembed_stale", "reset_adaptation"]


@dataclass
class AdaptSummary:
    camera: str = ALL_CAMERAS
    crops: int = 0
    unreadable: list[PredictionError] = field(default_factory=list)
    replaced: str | None = None        # why an earlier adaptation was dropped, if one was
    reembedded: int = 0
    reembed_failed: list[PredictionError] = field(default_factory=list)
    model_version: str = ""
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"camera": self.camera, "crops": self.crops, "replaced": self.replaced,
                "reembedded": self.reembedded, "model_version": self.model_version,
                "unreadable": [{"image": e.image, "error": e.error} for e in self.unreadable],
                "reembed_failed": [{"image": e.image, "error": e.error} for e in self.reembed_failed],
                **self.details}


def _read_crops(paths, progress: bool):
    from tqdm import tqdm

    images, failed = [], []
    for p in tqdm(paths, desc="reading crops", unit="crop", disable=not progress, file=sys.stderr):
        try:
            images.append(decode_image(read_image_bytes(p), str(p)))
        except ImageLoadError as e:
            failed.append(PredictionError(str(p), e.reason))
    return images, failed


def _progress(enabled: bool):
    from tqdm import tqdm

    return (lambda it, total, desc: tqdm(it, total=total, desc=desc, unit="batch", file=sys.stderr)) \
        if enabled else None


def adapt_library(lib, paths: Iterable[str | Path], camera: str | None = None,
                  settings: AdaptSettings = AdaptSettings(), progress: bool = True,
                  reembed: bool = True) -> AdaptSummary:
    """Fit the adaptation of ``camera`` (``None``: all cameras) from unlabelled crops, save
    it with the library, use it, and re-embed the records it makes stale."""
    paths = list(paths)
    key = ALL_CAMERAS if camera is None else str(camera)
    if key == ALL_CAMERAS and camera is not None:
        raise AdaptationError(f"{ALL_CAMERAS!r} is not a camera name")
    if not paths:
        raise AdaptationError("no crops given (an empty folder?); nothing was changed")
    images, failed = _read_crops(paths, progress)
    if len(images) < settings.min_crops:
        raise AdaptationError(
            f"adaptation needs at least {settings.min_crops} readable crops; got {len(images)} "
            f"of {len(paths)} ({len(failed)} unreadable); nothing was changed")
    pipe = lib.pipeline_for_adapting()        # this function decides what is applied
    summary = AdaptSummary(camera=key, crops=len(images), unreadable=failed)
    try:
        old = Adaptation.load(lib.db_dir)
    except AdaptationError as e:
        old, summary.replaced = None, f"the earlier adaptation was unreadable ({e})"
    if old is not None:
        try:
            old.check(pipe.predictor.fingerprint, pipe.names)
        except AdaptationError:
            old, summary.replaced = None, "the earlier adaptation was for another attribute model"
    pipe.set_adaptation(None)                 # fit from the model as trained
    try:
        entry = fit_camera(pipe.predictor, images, settings, progress=_progress(progress))
    except BaseException:
        if old is not None:
            pipe.set_adaptation(old)
        raise
    new = Adaptation(model=pipe.predictor.fingerprint, names=list(pipe.names), settings=settings,
                     cameras={**(old.cameras if old else {}), key: entry})
    new.save(lib.db_dir)
    pipe.set_adaptation(new)
    lib.store.set_meta("pipeline", pipe.describe())
    summary.details = entry.summary(list(pipe.names), pipe.predictor.base_thresholds)
    if reembed:
        summary.reembedded, summary.reembed_failed = reembed_stale(lib, progress=progress)
    summary.model_version = pipe.model_version
    return summary


def reset_adaptation(lib, progress: bool = True, reembed: bool = True) -> tuple[bool, int, list]:
    """Remove the library's adaptation: (whether there was one, re-embedded, failures)."""
    found = Adaptation.remove(lib.db_dir)
    pipe = lib.pipeline_for_adapting()
    pipe.set_adaptation(None)
    lib.store.set_meta("pipeline", pipe.describe())
    n, failures = reembed_stale(lib, progress=progress) if reembed else (0, [])
    return found, n, failures


def reembed_stale(lib, batch_size: int = 32, progress: bool = True) -> tuple[int, list[PredictionError]]:
    """Re-embed, from their files, the records made by another model version (camera by
    camera, so each gets its camera's adaptation); returns (re-embedded, failures)."""
    from tqdm import tqdm

    from .video import reembed_tracks, track_file

    mv = lib.model_version
    stale = [(r.id, r.path, r.camera, r.timestamp, r.track_id)
             for r in lib.store.iterate() if r.model_version != mv]
    tracks = [s for s in stale if s[4] and track_file(s[1]) is not None]   # video tracks: all crops
    stale = [s for s in stale if not (s[4] and track_file(s[1]) is not None)]
    done, failed = reembed_tracks(lib, tracks) if tracks else (0, [])
    by_camera: dict = {}
    for s in stale:
        by_camera.setdefault(s[2], []).append(s)
    bar = tqdm(total=len(stale), desc="re-embedding", unit="crop", disable=not progress or not stale,
               file=sys.stderr)
    try:
        for cam, rows in by_camera.items():
            for i in range(0, len(rows), batch_size):
                ok, imgs = [], []
                for rid, path, _, ts, track in rows[i:i + batch_size]:
                    bar.update(1)
                    try:
                        imgs.append(decode_image(read_image_bytes(path), str(path)))
                        ok.append((rid, path, ts, track))
                    except ImageLoadError as e:
                        failed.append(PredictionError(str(path), e.reason))
                if not ok:
                    continue
                lib.pipeline.use_camera(cam)
                records = lib.pipeline.process(imgs, [o[1] for o in ok], ids=[o[0] for o in ok],
                                               camera=cam, timestamps=[o[2] for o in ok],
                                               track_ids=[o[3] for o in ok])
                lib.add_records(records)
                done += len(records)
    finally:
        bar.close()
        lib.save_indexes()
    return done, failed
