"""From tracked boxes to tracks: each track's boxes and times, and its K best crops.

The encoder runs on a few crops per track, not on every frame, so which crops are kept
matters more than how many. A crop's quality is the product of what makes attributes
readable in it:

* **size**: a taller box carries more pixels (saturating at ``full_height`` pixels);
* **sharpness**: variance of the Laplacian (motion blur and defocus lower it), on a log scale;
* **whole**: a box cut by the frame's edge loses the head or the feet;
* **free**: the part of the box not covered by another person's box (occlusion);
* **confidence**: the detector's score.

The K crops are picked greedily by quality, at least ``min_gap`` frames apart, so that they
show the person at different moments rather than K copies of the same frame.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np

from ..data.video import Frame


@dataclass
class CropSettings:
    k: int = 4                  # crops kept per track
    min_gap: int = 5            # frames between two kept crops
    min_frames: int = 3         # a track seen in fewer frames is a false alarm, not a person
    min_height: int = 32        # smaller boxes are never cropped (too few pixels to read)
    full_height: int = 160      # boxes this tall get the full size score
    candidates: int = 24        # best candidates kept in memory per track while it runs


@dataclass(frozen=True)
class Observation:
    frame: int
    time_s: float
    box: tuple[float, float, float, float]   # left, top, width, height (pixels)
    score: float


@dataclass(order=True)
class CropCandidate:
    quality: float
    frame: int = field(compare=False)
    time_s: float = field(compare=False)
    box: tuple = field(compare=False)
    image: np.ndarray = field(compare=False, repr=False)   # RGB uint8 crop


@dataclass
class Track:
    track_id: int
    observations: list[Observation] = field(default_factory=list)
    crops: list[CropCandidate] = field(default_factory=list)   # best first

    @property
    def start_s(self) -> float:
        return self.observations[0].time_s

    @property
    def end_s(self) -> float:
        return self.observations[-1].time_s

    def to_dict(self) -> dict:
        return {"track": self.track_id, "start_s": round(self.start_s, 3), "end_s": round(self.end_s, 3),
                "frames": len(self.observations),
                "boxes": [[o.frame, round(o.time_s, 3), *[round(v, 1) for v in o.box], round(o.score, 3)]
                          for o in self.observations],
                "crops": [{"frame": c.frame, "time_s": round(c.time_s, 3), "quality": round(c.quality, 4),
                           "box": [round(v, 1) for v in c.box]} for c in self.crops]}


def sharpness(gray: np.ndarray) -> float:
    """Variance of the Laplacian, mapped to (0, 1]: log-scaled, 1 at and above 1,000."""
    import cv2

    v = float(cv2.Laplacian(gray, cv2.CV_64F).var())
    return float(np.clip(np.log1p(v) / np.log1p(1000.0), 0.05, 1.0))


def occlusion(box: np.ndarray, others: np.ndarray) -> float:
    """The fraction of ``box`` covered by the union-bound of ``others`` (max over them)."""
    if len(others) == 0:
        return 0.0
    x0 = np.maximum(box[0], others[:, 0])
    y0 = np.maximum(box[1], others[:, 1])
    x1 = np.minimum(box[0] + box[2], others[:, 0] + others[:, 2])
    y1 = np.minimum(box[1] + box[3], others[:, 1] + others[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    return float(np.clip(inter.max() / max(box[2] * box[3], 1e-6), 0.0, 1.0))


def crop_quality(box: np.ndarray, score: float, frame_shape: tuple, gray_crop: np.ndarray,
                 others: np.ndarray, settings: CropSettings) -> float:
    h, w = frame_shape[:2]
    size = min(float(box[3]) / settings.full_height, 1.0)
    margin = 2.0
    cut = (box[0] <= margin or box[1] <= margin or box[0] + box[2] >= w - margin
           or box[1] + box[3] >= h - margin)
    whole = 0.35 if cut else 1.0
    free = 1.0 - occlusion(box, others)
    return size * sharpness(gray_crop) * whole * free * float(score)


def clip_box(box, width: int, height: int) -> tuple[int, int, int, int]:
    x0, y0 = max(int(np.floor(box[0])), 0), max(int(np.floor(box[1])), 0)
    x1 = min(int(np.ceil(box[0] + box[2])), width)
    y1 = min(int(np.ceil(box[1] + box[3])), height)
    return x0, y0, x1, y1


class TrackBuilder:
    """Collects each track's observations and best crop candidates, frame by frame."""

    def __init__(self, settings: CropSettings | None = None):
        self.settings = settings or CropSettings()
        self._tracks: dict[int, Track] = {}
        self._candidates: dict[int, list[CropCandidate]] = {}

    def add(self, frame: Frame, tracked, all_boxes: np.ndarray) -> None:
        """``tracked``: this frame's ``TrackedBox``es (their boxes are detection boxes);
        ``all_boxes``: every detection of the frame worth counting as an occluder."""
        import cv2

        s = self.settings
        img = frame.image
        H, W = img.shape[:2]
        # occluders: every person detected in the frame, tracked yet or not
        boxes = np.asarray(all_boxes, np.float32).reshape(-1, 4)
        for t in tracked:
            box = np.asarray(t.box, np.float32)
            tr = self._tracks.setdefault(t.track_id, Track(t.track_id))
            tr.observations.append(Observation(frame.index, frame.time_s, tuple(float(v) for v in box),
                                               float(t.score)))
            x0, y0, x1, y1 = clip_box(box, W, H)
            if y1 - y0 < s.min_height or x1 - x0 < 8:
                continue
            patch = img[y0:y1, x0:x1]
            others = boxes[~np.all(np.isclose(boxes, box, atol=1e-3), axis=1)]   # not itself
            q = crop_quality(box, t.score, img.shape, cv2.cvtColor(patch, cv2.COLOR_BGR2GRAY), others, s)
            heap = self._candidates.setdefault(t.track_id, [])
            cand = CropCandidate(q, frame.index, frame.time_s, (x0, y0, x1 - x0, y1 - y0),
                                 np.ascontiguousarray(patch[:, :, ::-1]))
            if len(heap) < s.candidates:
                heapq.heappush(heap, cand)
            elif q > heap[0].quality:
                heapq.heapreplace(heap, cand)

    def tracks(self) -> list[Track]:
        """Finished tracks (seen in at least ``min_frames`` frames, with a crop), by id,
        each with its K crops chosen."""
        out = []
        for tid in sorted(self._tracks):
            tr = self._tracks[tid]
            cands = sorted(self._candidates.get(tid, []), key=lambda c: (-c.quality, c.frame))
            if len(tr.observations) < self.settings.min_frames or not cands:
                continue
            chosen: list[CropCandidate] = []
            for c in cands:
                if all(abs(c.frame - o.frame) >= self.settings.min_gap for o in chosen):
                    chosen.append(c)
                if len(chosen) == self.settings.k:
                    break
            tr.crops = chosen
            out.append(tr)
        return out
