"""VideoSource on a real file and on folders of frames: frames, indices, times, sampling;
every unreadable input a VideoError with its reason; damaged files never read silently."""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from personlens.data.video import (
    VideoError,
    VideoSource,
    file_start_time,
    is_video_path,
)

VIDEO_DATA = Path(__file__).resolve().parents[2].parent / "shared/data/video"
CAMPUS = VIDEO_DATA / "TUD-Campus" / "TUD-Campus.mp4"
real_video = pytest.mark.skipif(not CAMPUS.is_file(), reason="needs ../shared/data/video/TUD-Campus")


def write_frames(folder: Path, sizes: list[tuple[int, int]], suffix: str = ".png") -> list[Path]:
    """One image per (width, height), filled with its position (0, 10, 20, ...) so that the
    order frames come out in can be read back from the pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, (w, h) in enumerate(sizes):
        p = folder / f"frame{i:04d}{suffix}"
        assert cv2.imwrite(str(p), np.full((h, w, 3), 10 * i, np.uint8))
        out.append(p)
    return out


# -- a real file -----------------------------------------------------------------------------

@real_video
def test_real_file_info_frames_and_times():
    src = VideoSource(CAMPUS)
    info = src.info
    assert (info.kind, info.width, info.height, info.frame_count) == ("file", 640, 480, 71)
    assert info.fps == pytest.approx(25.0)
    assert info.duration_s == pytest.approx(71 / 25)
    assert src.sampled_frames == 71
    frames = list(src)
    assert len(frames) == 71 and not src.stopped_early
    assert [f.index for f in frames] == list(range(71))
    np.testing.assert_allclose([f.time_s for f in frames], np.arange(71) * 0.04, atol=1e-3)
    assert frames[0].time_s == 0.0
    img = frames[0].image
    assert img.shape == (480, 640, 3) and img.dtype == np.uint8
    assert not np.array_equal(img, frames[-1].image)   # real, different frames


@real_video
def test_real_file_every_third_frame():
    src = VideoSource(CAMPUS, every=3)
    frames = list(src)
    assert src.sampled_frames == math.ceil(71 / 3) == len(frames) == 24
    assert [f.index for f in frames] == list(range(0, 71, 3))
    np.testing.assert_allclose([f.time_s for f in frames], np.arange(0, 71, 3) * 0.04, atol=1e-3)
    # the sampled frames are the very frames a full read gives at those indices
    full = {f.index: f.image for f in VideoSource(CAMPUS)}
    for f in frames[:3]:
        np.testing.assert_array_equal(f.image, full[f.index])


@real_video
def test_fps_argument_overrides_the_container():
    src = VideoSource(CAMPUS, fps=10)
    assert src.info.fps == 10 and src.info.duration_s == pytest.approx(7.1)


def test_every_must_be_positive(tmp_path):
    write_frames(tmp_path / "f", [(32, 24)] * 2)
    with pytest.raises(ValueError, match="every"):
        VideoSource(tmp_path / "f", every=0)


# -- a folder of frames ----------------------------------------------------------------------

def test_folder_of_frames_sorted_by_name_with_fps(tmp_path):
    d = tmp_path / "frames"
    d.mkdir()
    for i in (3, 0, 4, 2, 1):           # created out of order: only the names order them
        assert cv2.imwrite(str(d / f"frame{i:04d}.png"), np.full((30, 40, 3), 10 * i, np.uint8))
    (d / "notes.txt").write_text("not a frame: ignored")
    src = VideoSource(d, fps=10)
    assert (src.info.kind, src.info.width, src.info.height, src.info.frame_count) == ("frames", 40, 30, 5)
    assert src.info.fps == 10
    frames = list(src)
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    np.testing.assert_allclose([f.time_s for f in frames], [0, 0.1, 0.2, 0.3, 0.4])
    assert [int(f.image[0, 0, 0]) for f in frames] == [0, 10, 20, 30, 40]
    assert all(f.image.shape == (30, 40, 3) and f.image.dtype == np.uint8 for f in frames)


def test_folder_default_fps_and_every(tmp_path):
    write_frames(tmp_path / "f", [(40, 30)] * 5, suffix=".jpg")
    src = VideoSource(tmp_path / "f", every=2)
    assert src.info.fps == 25.0 and src.sampled_frames == 3
    frames = list(src)
    assert [f.index for f in frames] == [0, 2, 4]
    np.testing.assert_allclose([f.time_s for f in frames], [0, 0.08, 0.16])


# -- errors ----------------------------------------------------------------------------------

def _error(path, **kw) -> VideoError:
    with pytest.raises(VideoError) as e:
        src = VideoSource(path, **kw)
        list(src)
    assert e.value.source and e.value.reason
    assert "\n" not in str(e.value)          # one line: printed as it is by the CLI
    return e.value


def test_missing_path(tmp_path):
    e = _error(tmp_path / "nothing.mp4")
    assert e.source == str(tmp_path / "nothing.mp4") and "no such file" in e.reason


def test_empty_file(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert "empty file" in _error(tmp_path / "empty.mp4").reason


def test_random_bytes_named_mp4(tmp_path):
    p = tmp_path / "noise.mp4"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    e = _error(p)
    assert "cannot be opened" in e.reason or "no frame" in e.reason


def test_text_file_named_avi(tmp_path):
    p = tmp_path / "notes.avi"
    p.write_text("this is not a video\n" * 200)
    e = _error(p)
    assert "cannot be opened" in e.reason or "no frame" in e.reason


def test_a_file_without_a_video_suffix(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("FFmpeg would render this text as a picture\n")
    assert "not a video file name" in _error(p).reason


def test_folder_without_frames(tmp_path):
    d = tmp_path / "nothing"
    d.mkdir()
    (d / "readme.txt").write_text("no images here")
    e = _error(d)
    assert "no frames" in e.reason


def test_folder_whose_first_frame_is_not_an_image(tmp_path):
    d = tmp_path / "f"
    write_frames(d, [(40, 30)] * 2)
    (d / "frame0000.png").write_bytes(b"not a png at all")
    assert "not a readable image" in _error(d).reason


def test_frame_of_another_size_is_refused_while_iterating(tmp_path):
    d = tmp_path / "f"
    write_frames(d, [(40, 30), (48, 30), (40, 30)])
    src = VideoSource(d)                  # opening checks only the first frame
    it = iter(src)
    assert next(it).index == 0
    with pytest.raises(VideoError) as e:
        next(it)
    assert e.value.source.endswith("frame0001.png")
    assert "48x30" in e.value.reason and "40x30" in e.value.reason


def test_frame_over_the_pixel_limit(tmp_path):
    d = tmp_path / "f"
    write_frames(d, [(40, 30)] * 2)
    e = _error(d, max_pixels=1000)
    assert "40x30" in e.reason and "limit" in e.reason
    # a later frame over the limit: refused when it is reached
    d2 = tmp_path / "g"
    write_frames(d2, [(20, 10), (20, 10)])
    cv2.imwrite(str(d2 / "frame0002.png"), np.zeros((60, 60, 3), np.uint8))
    src = VideoSource(d2, max_pixels=1000)
    with pytest.raises(VideoError, match="over the limit"):
        list(src)


@real_video
def test_file_over_the_pixel_limit():
    e = _error(CAMPUS, max_pixels=640 * 480 - 1)
    assert "640x480" in e.reason


@real_video
def test_truncated_mp4_is_never_read_silently(tmp_path):
    data = CAMPUS.read_bytes()
    p = tmp_path / "truncated.mp4"
    p.write_bytes(data[: int(len(data) * 0.4)])
    try:
        src = VideoSource(p)
        n = len(list(src))
    except VideoError as e:
        assert e.reason                       # refused up front (this mp4's index is at the end)
        return
    assert src.stopped_early or n < 71


def _clip(tmp_path, n: int, suffix: str, fourcc: str) -> Path:
    cap = cv2.VideoCapture(str(CAMPUS))
    p = tmp_path / f"clip{suffix}"
    out = cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*fourcc), 25, (640, 480))
    for _ in range(n):
        ok, img = cap.read()
        assert ok
        out.write(img)
    out.release()
    cap.release()
    return p


@real_video
def test_truncated_avi_yields_the_frames_before_the_damage(tmp_path):
    p = _clip(tmp_path, 20, ".avi", "MJPG")        # an index-less read still finds frames
    full = VideoSource(p)
    assert len(list(full)) == 20 and not full.stopped_early
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    src = VideoSource(p)
    frames = list(src)
    assert 0 < len(frames) < 20
    assert src.stopped_early


@real_video
def test_written_mp4_clip_reads_back(tmp_path):
    p = _clip(tmp_path, 12, ".mp4", "mp4v")
    src = VideoSource(p)
    frames = list(src)
    assert src.info.frame_count == 12 and len(frames) == 12 and not src.stopped_early
    assert [f.index for f in frames] == list(range(12))


# -- helpers ---------------------------------------------------------------------------------

def test_is_video_path(tmp_path):
    assert is_video_path("a/b/clip.mp4") and is_video_path("x.MKV") and is_video_path("x.avi")
    assert not is_video_path("crop.jpg") and not is_video_path("notes.txt") and not is_video_path("mp4")
    frames = tmp_path / "frames"
    write_frames(frames, [(8, 8)] * 2)
    assert is_video_path(frames)
    (frames / ".hidden").write_text("hidden files do not count")
    assert is_video_path(frames)
    (frames / "notes.txt").write_text("x")
    assert not is_video_path(frames)              # not only frames
    (tmp_path / "empty").mkdir()
    assert not is_video_path(tmp_path / "empty")


def test_file_start_time(tmp_path):
    p = tmp_path / "v.mp4"
    p.write_bytes(b"x")
    import os

    os.utime(p, (1_800_000_000, 1_800_000_000))
    assert file_start_time(p, 10.0) == pytest.approx(1_800_000_000 - 10.0)
    d = tmp_path / "frames"
    d.mkdir()
    os.utime(d, (1_800_000_000, 1_800_000_000))
    assert file_start_time(d, 10.0) == pytest.approx(1_800_000_000)
