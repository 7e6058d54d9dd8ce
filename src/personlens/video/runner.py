"""Detect and track people through one video: frames in, tracks and MOT rows out."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..data.video import VideoInfo, VideoSource
from .tracker import ByteTracker, TrackerConfig
from .tracks import CropSettings, Track, TrackBuilder


@dataclass
class VideoSettings:
    detector: str = "ssdlite"
    tiles: tuple[int, int] | None = None       # (cols, rows) of detector tiles; None: whole frame
    every: int = 1                             # run on every N-th frame
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    crops: CropSettings = field(default_factory=CropSettings)

    def key(self) -> str:
        """What changes the tracks: part of each track record's id, so a video indexed again
        with the same settings replaces its tracks and never duplicates them."""
        t, c = self.tracker, self.crops
        tiles = "x".join(map(str, self.tiles)) if self.tiles else "1x1"
        app = f"/app{t.appearance_weight}" if t.appearance_weight > 0 else ""
        return (f"{self.detector}/{tiles}/every{self.every}/h{t.high_score}l{t.low_score}n{t.new_track_score}"
                f"{app}/k{c.k}g{c.min_gap}m{c.min_frames}")


@dataclass
class TrackingResult:
    info: VideoInfo
    tracks: list[Track]
    mot_rows: list[tuple]            # (frame 1-based, track id, left, top, width, height, score)
    frames: int                      # frames processed
    seconds: float                   # wall time of detection + tracking
    stopped_early: bool
    video_seconds: float             # how much of the video was covered

    @property
    def speed(self) -> float:
        """Video seconds processed per wall-clock second (1.0 = real time)."""
        return self.video_seconds / self.seconds if self.seconds > 0 else 0.0


def track_video(source: VideoSource, detector, settings: VideoSettings | None = None, *,
                collect_crops: bool = True, progress: bool = True,
                embedder: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
                on_frame: Callable[[int, int], None] | None = None) -> TrackingResult:
    """Run ``detector`` and the tracker over ``source``.

    ``embedder(frame, boxes) -> (N, D)`` unit vectors turns on appearance for the tracker
    (re-linking a person after an occlusion). ``on_frame(done, total)`` reports progress
    (the service's job status).
    """
    from tqdm import tqdm

    settings = settings or VideoSettings()
    tracker = ByteTracker(settings.tracker)
    builder = TrackBuilder(settings.crops) if collect_crops else None
    rows: list[tuple] = []
    n, last_t = 0, 0.0
    t0 = time.perf_counter()
    bar = tqdm(total=source.sampled_frames, unit="frame", desc="video", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    try:
        for frame in source:
            det = detector(frame.image)
            emb = embedder(frame.image, det.boxes) if embedder is not None and len(det) else None
            tracked = tracker.update(det.boxes, det.scores, emb)
            for t in tracked:
                rows.append((frame.index + 1, t.track_id, *map(float, t.box), float(t.score)))
            if builder is not None:
                builder.add(frame, tracked, det.above(settings.tracker.low_score).boxes)
            n += 1
            last_t = frame.time_s
            bar.update(1)
            if on_frame is not None:
                on_frame(n, source.sampled_frames)
            wall = time.perf_counter() - t0
            if n % 10 == 0 and wall > 0:
                bar.set_postfix_str(f"{frame.time_s / wall:.2f}x real time")
    finally:
        bar.close()
    covered = last_t + source.every / source.info.fps if n else 0.0
    return TrackingResult(source.info, builder.tracks() if builder else [], rows, n,
                          time.perf_counter() - t0, source.stopped_early, covered)


def reid_embedder(pipeline) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``embedder`` for ``track_video`` from a ``PersonPipeline``'s re-ID head: each detection's
    crop -> a unit vector, so a person who was hidden can be re-linked by appearance."""
    from PIL import Image

    from .tracks import clip_box

    def embed(frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        crops = []
        for b in boxes:
            x0, y0, x1, y1 = clip_box(b, w, h)
            patch = frame[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1), ::-1]     # BGR -> RGB
            crops.append(Image.fromarray(np.ascontiguousarray(patch)))
        return np.asarray(pipeline.reid_embeddings(crops), np.float32)

    return embed
