"""Person detectors for video: a small registry, the shared box type, and tiling.

A detector takes one BGR frame (OpenCV's order, as decoded from video) and returns
``Detections``: boxes as left, top, width, height in frame pixels and a score in [0, 1].
Detectors register with ``@register("detector", name)`` like every other model family, so a
better one (an ONNX model from a local path, say) plugs in without touching the callers:
``models.factory.create_detector("ssdlite")``, or ``("onnx", path=...)`` once one registers.

``TiledDetector`` runs any detector on overlapping tiles as well as on the whole frame and
merges the boxes, for footage where people are only a few dozen pixels tall: a 300x300 input
shrinks a 1080p frame 3.6 times, and small people vanish below the first feature map's stride.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .registry import register

# Frames above this are refused before decoding work is done on them (an 8K frame is 33 MP).
MAX_FRAME_PIXELS = 40_000_000


@dataclass
class Detections:
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))  # l, t, w, h
    scores: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))

    def __post_init__(self):
        self.boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, np.float32).reshape(-1)
        if len(self.boxes) != len(self.scores):
            raise ValueError(f"{len(self.boxes)} boxes but {len(self.scores)} scores")

    def __len__(self) -> int:
        return len(self.scores)

    def above(self, score: float) -> "Detections":
        keep = self.scores >= score
        return Detections(self.boxes[keep], self.scores[keep])


class Detector(Protocol):
    name: str

    def __call__(self, frame: np.ndarray) -> Detections: ...


def check_frame(frame: np.ndarray) -> np.ndarray:
    """A frame every detector accepts: HxWx3 uint8 (BGR), within the pixel limit."""
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"a frame must be an HxWx3 array, got {getattr(frame, 'shape', type(frame))}")
    h, w = frame.shape[:2]
    if h == 0 or w == 0:
        raise ValueError("empty frame")
    if h * w > MAX_FRAME_PIXELS:
        raise ValueError(f"frame of {w}x{h} is over the limit of {MAX_FRAME_PIXELS} pixels")
    if frame.dtype != np.uint8:
        raise ValueError(f"a frame must be uint8, got {frame.dtype}")
    return frame


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float, min_score: float = 0.0) -> np.ndarray:
    """Indices kept by non-maximum suppression (OpenCV's), best first."""
    import cv2

    if len(scores) == 0:
        return np.zeros((0,), np.int64)
    idx = cv2.dnn.NMSBoxes(boxes.astype(np.float32).tolist(), scores.astype(np.float32).tolist(),
                           float(min_score), float(iou))
    return np.asarray(idx, np.int64).reshape(-1)


def tile_grid(width: int, height: int, cols: int, rows: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """(left, top, width, height) of ``cols`` x ``rows`` tiles that overlap by ``overlap``."""
    tw = int(np.ceil(width / (cols - (cols - 1) * overlap))) if cols > 1 else width
    th = int(np.ceil(height / (rows - (rows - 1) * overlap))) if rows > 1 else height
    lefts = np.linspace(0, width - tw, cols).round().astype(int) if cols > 1 else [0]
    tops = np.linspace(0, height - th, rows).round().astype(int) if rows > 1 else [0]
    return [(int(x), int(y), tw, th) for y in tops for x in lefts]


class TiledDetector:
    """The whole frame plus a grid of overlapping tiles, merged by NMS.

    A box cut by a tile's inner edge is dropped from that tile (the whole-frame pass or the
    neighbouring tile sees the person whole), so tiling adds small people without adding
    half-people.
    """

    def __init__(self, detector: Detector, cols: int = 2, rows: int = 2, overlap: float = 0.25,
                 nms_iou: float = 0.5):
        if cols < 1 or rows < 1 or not 0.0 <= overlap < 1.0:
            raise ValueError("tiles: cols and rows >= 1, overlap in [0, 1)")
        self.detector, self.cols, self.rows, self.overlap, self.nms_iou = detector, cols, rows, overlap, nms_iou
        self.name = f"{detector.name}+tiles{cols}x{rows}"

    def __call__(self, frame: np.ndarray) -> Detections:
        h, w = check_frame(frame).shape[:2]
        found = [self.detector(frame)]
        edge = 2.0
        for x, y, tw, th in tile_grid(w, h, self.cols, self.rows, self.overlap):
            d = self.detector(np.ascontiguousarray(frame[y:y + th, x:x + tw]))
            b = d.boxes.copy()
            inner = np.ones(len(b), bool)
            if x > 0:
                inner &= b[:, 0] > edge
            if y > 0:
                inner &= b[:, 1] > edge
            if x + tw < w:
                inner &= b[:, 0] + b[:, 2] < tw - edge
            if y + th < h:
                inner &= b[:, 1] + b[:, 3] < th - edge
            b[:, 0] += x
            b[:, 1] += y
            found.append(Detections(b[inner], d.scores[inner]))
        boxes = np.concatenate([d.boxes for d in found])
        scores = np.concatenate([d.scores for d in found])
        keep = nms(boxes, scores, self.nms_iou)
        return Detections(boxes[keep], scores[keep])


@register("detector", "hog")
def hog_detector(**kw) -> Detector:
    """OpenCV's built-in HOG + linear SVM people detector (Dalal-Triggs): no weights file, weak,
    and slow on large frames; kept as a dependency-free fallback."""
    return HogDetector(**kw)


class HogDetector:
    name = "hog"

    def __init__(self, scale: float = 1.05, stride: int = 8, min_score: float = 0.0):
        import cv2

        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.scale, self.stride, self.min_score = scale, stride, min_score

    def __call__(self, frame: np.ndarray) -> Detections:
        h, w = check_frame(frame).shape[:2]
        if h < 128 or w < 64:     # smaller than HOG's window: OpenCV would read past the frame
            return Detections()
        rects, weights = self._hog.detectMultiScale(frame, winStride=(self.stride, self.stride),
                                                    scale=self.scale)
        if len(rects) == 0:
            return Detections()
        # SVM margins -> (0, 1) so that the tracker's score thresholds mean the same for every detector
        scores = 1.0 / (1.0 + np.exp(-np.asarray(weights, np.float32).reshape(-1)))
        return Detections(np.asarray(rects, np.float32), scores).above(self.min_score)
