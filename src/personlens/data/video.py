"""Reading video: a file (anything OpenCV's FFmpeg build decodes) or a folder of frames.

Every failure a user can cause is a ``VideoError`` with a one-line reason, raised before any
work is done where it can be known up front (a missing path, a file that does not open, a
resolution over the limit, no frames), so the caller can report it and change nothing.
A file that stops decoding early (truncated, corrupt in the middle) yields the frames before
the damage; ``VideoSource.stopped_early`` then says so.

Frames are BGR ``uint8`` arrays (OpenCV's order), with a 0-based index and the time in
seconds from the start of the video (the container's timestamps where it has them).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg", ".ts", ".wmv", ".flv"}
FRAME_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
MAX_FRAME_PIXELS = 40_000_000     # 8K is 33 MP; more is a mistake or an attack
DEFAULT_FOLDER_FPS = 25.0


# FFmpeg may only read local files: a playlist disguised as a video must not make it fetch URLs.
os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "protocol_whitelist;file")


class VideoError(ValueError):
    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source, self.reason = source, reason


@dataclass(frozen=True)
class Frame:
    index: int          # 0-based position in the video
    time_s: float       # seconds from the video's start
    image: np.ndarray   # HxWx3 uint8, BGR


@dataclass(frozen=True)
class VideoInfo:
    path: str
    kind: str            # "file" or "frames"
    fps: float
    frame_count: int     # as the container states it (an estimate for some formats)
    width: int
    height: int

    @property
    def duration_s(self) -> float:
        return self.frame_count / self.fps if self.fps > 0 else 0.0


def is_video_path(path: str | Path) -> bool:
    """A video file by its suffix, or a folder whose files are all frames (images)."""
    p = Path(path)
    if p.is_dir():
        files = [f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")]
        return bool(files) and all(f.suffix.lower() in FRAME_SUFFIXES for f in files)
    return p.suffix.lower() in VIDEO_SUFFIXES


def _check_size(source: str, width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise VideoError(source, "no frames could be decoded (zero size)")
    if width * height > max_pixels:
        raise VideoError(source, f"resolution {width}x{height} is over the limit of {max_pixels} pixels")


class VideoSource:
    """Frames of one video file or folder of frames, opened and checked on construction."""

    def __init__(self, path: str | Path, *, fps: float | None = None, every: int = 1,
                 max_pixels: int = MAX_FRAME_PIXELS):
        import cv2

        if every < 1:
            raise ValueError("every must be >= 1")
        self.path, self.every, self.max_pixels = Path(path), int(every), max_pixels
        self.stopped_early = False
        src = str(path)
        if not self.path.exists():
            raise VideoError(src, "no such file or folder")
        if self.path.is_dir():
            self._files = sorted(f for f in self.path.iterdir()
                                 if f.is_file() and f.suffix.lower() in FRAME_SUFFIXES)
            if not self._files:
                raise VideoError(src, "the folder holds no frames (.jpg, .png, ...)")
            h, w = self._frame_size(self._files[0])      # the header: refused before decoding
            _check_size(src, w, h, max_pixels)
            rate = float(fps or DEFAULT_FOLDER_FPS)
            self.info = VideoInfo(src, "frames", rate, len(self._files), w, h)
            return
        self._files = None
        if self.path.suffix.lower() not in VIDEO_SUFFIXES:
            # FFmpeg probes content, and "decodes" a text file as a picture of its text
            raise VideoError(src, f"not a video file name (expected one of {', '.join(sorted(VIDEO_SUFFIXES))})")
        if self.path.stat().st_size == 0:
            raise VideoError(src, "empty file (0 bytes)")
        cap = cv2.VideoCapture(src)
        try:
            if not cap.isOpened():
                raise VideoError(src, "cannot be opened as a video (corrupt, or a codec this build "
                                      "of OpenCV cannot decode)")
            w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
            h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            _check_size(src, w, h, max_pixels)
            ok, _ = cap.read()
            if not ok:
                raise VideoError(src, "no frame could be decoded (zero frames, or an unsupported codec)")
            rate = float(fps or cap.get(cv2.CAP_PROP_FPS) or 0.0)
            if not np.isfinite(rate) or rate <= 0 or rate > 1000:
                rate = DEFAULT_FOLDER_FPS
            count = max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 1)
        finally:
            cap.release()
        self.info = VideoInfo(src, "file", rate, count, w, h)

    @staticmethod
    def _frame_size(path: Path) -> tuple[int, int]:
        from PIL import Image

        try:
            with Image.open(path) as im:    # the header only: no decoding of a huge frame
                return im.height, im.width
        except Exception as e:  # noqa: BLE001 - any unreadable header is the same user error
            raise VideoError(str(path), f"not a readable image ({e.__class__.__name__})") from None

    @property
    def sampled_frames(self) -> int:
        """Frames this source will yield (from the stated count)."""
        return (self.info.frame_count + self.every - 1) // self.every

    def __iter__(self) -> Iterator[Frame]:
        return self._folder() if self._files is not None else self._file()

    def _folder(self) -> Iterator[Frame]:
        import cv2

        for i in range(0, len(self._files), self.every):
            f = self._files[i]
            h, w = self._frame_size(f)
            _check_size(str(f), w, h, self.max_pixels)
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None:
                raise VideoError(str(f), "not a readable image")
            if (img.shape[1], img.shape[0]) != (self.info.width, self.info.height):
                raise VideoError(str(f), f"frame size {img.shape[1]}x{img.shape[0]} differs from the "
                                         f"first frame's {self.info.width}x{self.info.height}")
            yield Frame(i, i / self.info.fps, img)

    def _file(self) -> Iterator[Frame]:
        import cv2

        cap = cv2.VideoCapture(str(self.path))
        try:
            i = 0
            while True:
                # grab() without decoding the frames that --every skips
                if not cap.grab():
                    break
                if i % self.every == 0:
                    ok, img = cap.retrieve()
                    if not ok or img is None:
                        self.stopped_early = True
                        break
                    ms = cap.get(cv2.CAP_PROP_POS_MSEC)
                    t = ms / 1000.0 if np.isfinite(ms) and ms > 0 else i / self.info.fps
                    yield Frame(i, t if i else 0.0, img)
                i += 1
            # fewer frames than the container promised: truncated or damaged
            if i < 0.9 * self.info.frame_count - 1:
                self.stopped_early = True
        finally:
            cap.release()


def file_start_time(path: str | Path, duration_s: float) -> float:
    """When a recording started, from the file alone: its modification time (when the
    recorder stopped writing) minus its duration. ``--start`` overrides it."""
    return os.stat(path).st_mtime - (duration_s if Path(path).is_file() else 0.0)
