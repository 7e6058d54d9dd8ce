"""``index VIDEO``: people detected and tracked in a video, one library record per track.

What is kept, under the library folder (``video/<first 16 hex of the video's SHA-256>/``):

* ``track-0007-1.jpg`` ... the track's K best crops (``personlens.video.tracks``), so that
  thumbnails, ``similar`` and re-embedding work from files like any crop;
* ``track-0007.json``: the video, camera, start and end time, every box, the crops and the
  attributes its crops disagree on ("uncertain").

The record: attributes fused over the K crops (``inference.fusion``), embeddings their
normalised mean, the description of the crop that agrees best with the fused attributes,
``path`` the best crop, ``timestamp`` the track's start, ``track_id`` ``<video>/<track>``.

Idempotence: a track's record id is a hash of the video's content, the tracking settings
and the track number, and tracking is deterministic, so indexing a video again (or re-running
an interrupted run) replaces nothing that is already there and adds only what is missing.
Crops and the track file are written (atomically) before the record is committed, so a
record never points at files that are not there.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.images import decode_image
from ..data.video import VideoSource, file_start_time
from ..fileperms import make_private_dirs, write_private
from ..video.runner import VideoSettings, track_video

VIDEO_DIR = "video"
JPEG_QUALITY = 95
TRACKS_PER_BATCH = 8


@dataclass
class VideoIndexSummary:
    video: str
    camera: str | None
    tracks: int = 0                 # tracks found (after the minimum length)
    added: int = 0
    skipped_existing: int = 0
    frames: int = 0
    video_seconds: float = 0.0
    tracking_seconds: float = 0.0   # detection + tracking
    encoding_seconds: float = 0.0   # the encoder on the tracks' crops, fusion, storing
    stopped_early: bool = False     # the file stopped decoding before its stated end
    already_indexed: bool = False   # the whole video was done before: nothing was decoded

    @property
    def speed(self) -> float:
        wall = self.tracking_seconds + self.encoding_seconds
        return self.video_seconds / wall if wall > 0 else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["speed_x_real_time"] = round(self.speed, 3)
        for k in ("video_seconds", "tracking_seconds", "encoding_seconds"):
            d[k] = round(d[k], 3)
        return d


def video_digest(path: str | Path) -> str:
    """SHA-256 of a video file's bytes, or of a frame folder's names and bytes in order."""
    h = hashlib.sha256()
    p = Path(path)
    files = sorted(f for f in p.iterdir() if f.is_file()) if p.is_dir() else [p]
    for f in files:
        if p.is_dir():
            h.update(f.name.encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def video_done_key(digest: str, settings_key: str) -> str:
    """The store meta key that marks a video (its full SHA-256) as indexed with these tracking
    settings (``VideoSettings.key()``)."""
    return f"video:{digest}:{hashlib.sha256(settings_key.encode()).hexdigest()[:16]}"


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write_private(tmp, data)
    os.replace(tmp, path)


def _jpeg(rgb: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def track_file(record_path: str | Path) -> Path | None:
    """The ``track-NNNN.json`` beside a track record's best crop, if it is one."""
    p = Path(record_path)
    if p.parent.parent.name != VIDEO_DIR or not p.name.startswith("track-"):
        return None
    j = p.with_name(p.name.rsplit("-", 1)[0] + ".json")
    return j if j.is_file() else None


def read_track(record_path: str | Path) -> dict | None:
    j = track_file(record_path)
    if j is None:
        return None
    try:
        return json.loads(j.read_text())
    except (OSError, ValueError):
        return None


def track_summary(record_path: str | Path) -> dict | None:
    """What a search result shows of a track: video, time span, frames, crops, uncertain."""
    t = read_track(record_path)
    if t is None:
        return None
    folder = Path(record_path).parent
    return {"video": t.get("video"), "start": t.get("start"), "end": t.get("end"),
            "frames": t.get("frames"), "crops": [str(folder / f) for f in t.get("crop_files", [])],
            "uncertain": t.get("uncertain", [])}


def reembed_tracks(lib, stale) -> tuple[int, list]:
    """Re-embed track records ``(id, path, camera, timestamp, track_id)`` from all their crops,
    fused again (not from the best crop alone): (re-embedded, failures)."""
    from ..data.images import ImageLoadError, read_image_bytes
    from ..inference.predict import PredictionError

    sink = LibrarySink(lib)
    done, failed = 0, []
    for rid, path, camera, ts, track_id in stale:
        meta = read_track(path) or {}
        folder = Path(path).parent
        crops = [folder / f for f in meta.get("crop_files", [])]
        try:
            imgs = [decode_image(read_image_bytes(c), str(c)) for c in crops]
        except ImageLoadError as e:
            failed.append(PredictionError(str(e.source), e.reason))
            continue
        if not imgs:
            failed.append(PredictionError(str(path), "the track file lists no crops"))
            continue
        weights = [max(float(c.get("quality", 1.0)), 1e-6) for c in meta.get("crops", [])]
        (rec, uncertain), = sink.encode([imgs], [str(path)], [rid],
                                        [weights if len(weights) == len(imgs) else None],
                                        camera, [ts], [track_id])
        meta.update(uncertain=uncertain, model_version=rec.model_version)
        _atomic_write(track_file(path), json.dumps(meta).encode())
        sink.commit([rec])
        done += 1
    return done, failed


@dataclass
class _Pending:
    rid: str
    track_no: int
    crop_paths: list[str]
    images: list[Image.Image]
    weights: list[float]
    meta: dict = field(default_factory=dict)


class LibrarySink:
    """What ``index_video`` needs from a library. The service passes one whose store calls run
    on its store thread and whose encoder calls hold its inference lock."""

    def __init__(self, lib):
        self.lib = lib
        self.db_dir = Path(lib.db_dir)

    @property
    def pipeline(self):
        return self.lib.pipeline

    def get_meta(self, key: str):
        return self.lib.store.get_meta(key, None)

    def set_meta(self, key: str, value) -> None:
        self.lib.store.set_meta(key, value)

    def stored_version(self, rid: str) -> str | None:
        return self.lib.store.model_version_of(rid)

    def begin(self) -> None:
        self.lib.store.set_meta("models", self.lib.models)
        self.lib.store.set_meta("pipeline", self.pipeline.describe())

    def encode(self, groups, sources, ids, weights, camera, timestamps, track_ids):
        """(record, uncertain attributes) per group of one person's crops."""
        pipe = self.pipeline
        if hasattr(pipe, "use_camera"):
            pipe.use_camera(camera)          # that camera's adaptation, if any
        return pipe.process_groups(groups, sources, ids=ids, weights=weights, camera=camera,
                                   timestamps=timestamps, track_ids=track_ids)

    def commit(self, records) -> None:
        self.lib.add_records(records)

    def finish(self) -> None:
        self.lib.save_indexes()


def index_video(lib, path: str | Path, *, camera: str | None = None, start: float | None = None,
                settings: VideoSettings | None = None, detector=None, progress: bool = True,
                batch_size: int = 32, fps: float | None = None,
                on_frame=None) -> VideoIndexSummary:
    """Detect, track and index one video (file or folder of frames) into ``lib`` (a
    ``PersonLibrary`` or a ``LibrarySink``).

    ``start``: the wall-clock time (epoch seconds) of the first frame; default: the file's
    modification time minus its duration. Raises ``VideoError`` before any change when the
    video cannot be read at all. ``on_frame(done, total)`` reports progress.
    """
    from ..models.factory import create_detector

    sink = lib if isinstance(lib, LibrarySink) else LibrarySink(lib)
    settings = settings or VideoSettings()
    source = VideoSource(path, every=settings.every, fps=fps)
    summary = VideoIndexSummary(video=str(path), camera=camera)
    digest = video_digest(path)
    key = settings.key()
    pipe = sink.pipeline
    mv = pipe.model_version
    done_key = video_done_key(digest, key)
    done = sink.get_meta(done_key)
    # the tracks of a video are the same whatever it is called: indexed once, under the first
    # camera name given (delete its records to index it again under another)
    if done and done.get("model_version") == mv:
        summary.already_indexed = True
        summary.tracks = summary.skipped_existing = int(done.get("tracks", 0))
        summary.camera = done.get("camera")
        return summary
    if start is None:
        start = file_start_time(path, source.info.duration_s)
    detector = detector or create_detector(settings.detector, tiles=settings.tiles)
    embedder = None
    if settings.tracker.appearance_weight > 0:     # the library's own re-ID head
        from ..video.runner import reid_embedder

        embedder = reid_embedder(pipe)
    result = track_video(source, detector, settings, progress=progress, on_frame=on_frame,
                         embedder=embedder)
    summary.tracks, summary.frames = len(result.tracks), result.frames
    summary.video_seconds, summary.tracking_seconds = result.video_seconds, result.seconds
    summary.stopped_early = result.stopped_early

    t0 = time.perf_counter()
    sink.begin()
    out_dir = sink.db_dir / VIDEO_DIR / digest[:16]
    make_private_dirs(out_dir)
    pending: list[_Pending] = []

    def flush():
        if not pending:
            return
        made = sink.encode([p.images for p in pending], [p.crop_paths[0] for p in pending],
                           [p.rid for p in pending], [p.weights for p in pending], camera,
                           [p.meta["start"] for p in pending],
                           [f"{digest[:16]}/{p.track_no}" for p in pending])
        for p, (_, uncertain) in zip(pending, made):
            p.meta.update(uncertain=uncertain, model_version=mv)
            _atomic_write(out_dir / f"track-{p.track_no:04d}.json", json.dumps(p.meta).encode())
        sink.commit([r for r, _ in made])          # the commit point: files are already in place
        summary.added += len(made)
        pending.clear()

    try:
        for tr in result.tracks:
            rid = hashlib.sha256(f"{digest}|{key}|{tr.track_id}".encode()).hexdigest()
            if sink.stored_version(rid) == mv:
                summary.skipped_existing += 1
                continue
            crop_paths, images = [], []
            for k, c in enumerate(tr.crops, 1):
                data = _jpeg(c.image)
                p = out_dir / f"track-{tr.track_id:04d}-{k}.jpg"
                _atomic_write(p, data)
                crop_paths.append(str(p.resolve()))
                # the stored JPEG, decoded: what re-embedding from the files will see too
                images.append(decode_image(data, str(p)))
            meta = {"video": str(Path(path).resolve()), "video_sha256": digest, "camera": camera,
                    "settings": key, "fps": source.info.fps, "start": start + tr.start_s,
                    "end": start + tr.end_s, **tr.to_dict(),
                    "crop_files": [Path(p).name for p in crop_paths]}
            pending.append(_Pending(rid, tr.track_id, crop_paths, images,
                                    [max(c.quality, 1e-6) for c in tr.crops], meta))
            if len(pending) >= TRACKS_PER_BATCH:
                flush()
        flush()
    finally:
        sink.finish()
    sink.set_meta(done_key, {"model_version": mv, "camera": camera, "tracks": len(result.tracks),
                             "video": str(Path(path).resolve()), "settings": key})
    summary.encoding_seconds = time.perf_counter() - t0
    if progress:
        print(f"{Path(path).name}: {summary.tracks} tracks in {summary.frames} frames, "
              f"{summary.speed:.2f}x real time", file=sys.stderr)
    return summary
