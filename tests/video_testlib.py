"""Helpers for the video tests: short clips written from frames."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def write_clip(path: Path, frames: list[np.ndarray], fps: float = 25.0) -> Path:
    """Frames (BGR uint8) as an MPEG-4 Part 2 file, as OpenCV writes it."""
    h, w = frames[0].shape[:2]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for f in frames:
        out.write(f)
    out.release()
    assert path.stat().st_size > 0
    return path
