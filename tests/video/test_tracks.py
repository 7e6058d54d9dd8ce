"""From tracked boxes to tracks (TrackBuilder, crop quality) and ``track_video`` end to end on
a scripted detector: short tracks dropped, K crops spread in time, cut, occluded and blurred
crops ranked below whole, free and sharp ones, MOT rows with 1-based frames."""
from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from personlens.data.video import Frame, VideoInfo
from personlens.models.detectors import Detections
from personlens.video.runner import TrackingResult, VideoSettings, track_video
from personlens.video.tracker import TrackedBox
from personlens.video.tracks import (
    CropSettings,
    TrackBuilder,
    crop_quality,
    occlusion,
    sharpness,
)

H, W = 480, 640
BOX_W, BOX_H = 50, 120


def noise(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), np.uint8)


def tb(track_id: int, x: float, y: float = 100, score: float = 0.9, w: float = BOX_W,
       h: float = BOX_H) -> TrackedBox:
    return TrackedBox(track_id, np.array([x, y, w, h], np.float32), score, track_id - 1)


def feed(builder: TrackBuilder, frames: list[tuple[np.ndarray, list[TrackedBox]]], fps: float = 25.0):
    for i, (img, tracked) in enumerate(frames):
        boxes = np.array([t.box for t in tracked], np.float32).reshape(-1, 4)
        builder.add(Frame(i, i / fps, img), tracked, boxes)
    return {t.track_id: t for t in builder.tracks()}


def best_quality(tracks, tid) -> float:
    return tracks[tid].crops[0].quality


# -- which tracks, which crops ---------------------------------------------------------------

def test_short_tracks_are_dropped():
    img = noise()
    frames = [(img, [tb(1, 100)] + ([tb(2, 400)] if i < 2 else [])) for i in range(5)]
    tracks = feed(TrackBuilder(CropSettings(min_frames=3)), frames)
    assert list(tracks) == [1]
    t = tracks[1]
    assert len(t.observations) == 5 and t.start_s == 0.0 and t.end_s == pytest.approx(4 / 25)
    assert [o.frame for o in t.observations] == [0, 1, 2, 3, 4]
    # the same two frames are enough with min_frames=2
    assert list(feed(TrackBuilder(CropSettings(min_frames=2)), frames)) == [1, 2]


def test_boxes_too_small_to_crop_make_no_track():
    img = noise()
    frames = [(img, [tb(1, 100, h=20), tb(2, 300)]) for _ in range(5)]
    tracks = feed(TrackBuilder(CropSettings(min_frames=3, min_height=32)), frames)
    assert list(tracks) == [2]


def test_k_crops_at_least_min_gap_apart_best_first():
    img = noise()
    # the score, hence the quality, rises frame by frame: the best crops are the last ones,
    # all next to each other; the gap spreads the chosen ones out
    frames = [(img, [tb(1, 100, score=0.5 + 0.01 * i)]) for i in range(30)]
    t = feed(TrackBuilder(CropSettings(k=4, min_gap=5)), frames)[1]
    assert [c.frame for c in t.crops] == [29, 24, 19, 14]
    q = [c.quality for c in t.crops]
    assert q == sorted(q, reverse=True)
    for a in t.crops:
        for b in t.crops:
            assert a is b or abs(a.frame - b.frame) >= 5
    t = feed(TrackBuilder(CropSettings(k=10, min_gap=8)), frames)[1]
    assert len(t.crops) <= 10
    frames_kept = sorted(c.frame for c in t.crops)
    assert all(b - a >= 8 for a, b in itertools.pairwise(frames_kept))
    assert len(frames_kept) >= 3           # 30 frames hold at least 3 crops 8 apart
    t = feed(TrackBuilder(CropSettings(k=2, min_gap=1)), frames)[1]
    assert [c.frame for c in t.crops] == [29, 28]


def test_crop_is_the_box_in_rgb_and_to_dict():
    img = noise(3)
    frames = [(img, [tb(1, 100.4, 50.6)]) for _ in range(3)]
    t = feed(TrackBuilder(CropSettings(k=1)), frames)[1]
    c = t.crops[0]
    x, y, w, h = c.box
    assert (x, y) == (100, 50) and (w, h) == (51, 121)    # the box's pixels, rounded outward
    np.testing.assert_array_equal(c.image, img[y:y + h, x:x + w, ::-1])
    d = t.to_dict()
    assert d["track"] == 1 and d["frames"] == 3 and len(d["boxes"]) == 3
    assert d["boxes"][0][:2] == [0, 0.0] and d["crops"][0]["box"] == [100, 50, 51, 121]


# -- crop quality ----------------------------------------------------------------------------

def test_a_crop_cut_by_the_frame_edge_ranks_below_a_whole_one():
    img = noise()
    for cut in (tb(1, 0), tb(1, W - BOX_W), tb(1, 200, y=0), tb(1, 200, y=H - BOX_H)):
        frames = [(img, [cut, tb(2, 300, y=200)]) for _ in range(3)]
        tracks = feed(TrackBuilder(CropSettings(k=1)), frames)
        assert best_quality(tracks, 1) < 0.5 * best_quality(tracks, 2)


def test_an_occluded_box_ranks_below_a_free_one():
    img = noise()
    # 1 and 2 overlap by half their width; 3 stands alone
    frames = [(img, [tb(1, 100), tb(2, 125), tb(3, 400)]) for _ in range(3)]
    tracks = feed(TrackBuilder(CropSettings(k=1)), frames)
    q1, q2, q3 = (best_quality(tracks, i) for i in (1, 2, 3))
    assert q1 < q3 and q2 < q3
    assert q1 == pytest.approx(0.5 * q3, rel=0.05)


def test_a_detected_but_untracked_person_occludes_too():
    """``add``'s ``all_boxes`` (every confident detection, tracked or not, e.g. a person
    whose track is not yet confirmed) are meant to count for occlusion."""
    img = noise()
    alone = feed(TrackBuilder(CropSettings(k=1)), [(img, [tb(1, 100)])] * 3)
    b = TrackBuilder(CropSettings(k=1))
    occluder = np.array([[125, 100, BOX_W, BOX_H]], np.float32)
    for i in range(3):
        t = tb(1, 100)
        b.add(Frame(i, i / 25, img), [t], np.concatenate([t.box[None], occluder]))
    hidden = {t.track_id: t for t in b.tracks()}
    assert best_quality(hidden, 1) < 0.75 * best_quality(alone, 1)


def test_a_blurred_crop_ranks_below_a_sharp_one():
    sharp = noise()
    blurred = cv2.GaussianBlur(sharp, (0, 0), 3)
    frames = [(sharp if i % 2 == 0 else blurred, [tb(1, 100)]) for i in range(10)]
    t = feed(TrackBuilder(CropSettings(k=5, min_gap=1)), frames)[1]
    assert sorted(c.frame for c in t.crops) == [0, 2, 4, 6, 8]
    gray = cv2.cvtColor(sharp, cv2.COLOR_BGR2GRAY)
    assert sharpness(cv2.GaussianBlur(gray, (0, 0), 3)) < 0.8 * sharpness(gray)
    assert 0.05 <= sharpness(np.full((50, 50), 128, np.uint8)) <= sharpness(gray) <= 1.0


def test_crop_quality_factors():
    s = CropSettings(full_height=160)
    gray = cv2.cvtColor(noise()[:160, :60], cv2.COLOR_BGR2GRAY)
    free = np.zeros((0, 4), np.float32)
    full = crop_quality(np.array([100, 100, 60, 160]), 1.0, (H, W, 3), gray, free, s)
    assert full == pytest.approx(1.0)
    assert crop_quality(np.array([100, 100, 30, 80]), 1.0, (H, W, 3), gray, free, s) == pytest.approx(0.5)
    assert crop_quality(np.array([100, 100, 60, 160]), 0.6, (H, W, 3), gray, free, s) == pytest.approx(0.6)
    assert occlusion(np.array([0, 0, 10, 10]), np.array([[5, 0, 10, 10], [0, 0, 2, 2]])) == pytest.approx(0.5)
    assert occlusion(np.array([0, 0, 10, 10]), free) == 0.0


# -- track_video -----------------------------------------------------------------------------

class FakeSource:
    """What ``track_video`` needs of a VideoSource: info, every, sampled_frames, frames."""

    def __init__(self, n: int, every: int = 1, fps: float = 25.0):
        self.info = VideoInfo("fake.mp4", "file", fps, n, W, H)
        self.every, self.stopped_early = every, False
        self._img = noise(7)

    @property
    def sampled_frames(self) -> int:
        return (self.info.frame_count + self.every - 1) // self.every

    def __iter__(self):
        for i in range(0, self.info.frame_count, self.every):
            yield Frame(i, i / self.info.fps, self._img)


class WalkingPeople:
    """Two people walking towards each other on parallel paths, and a low-score ghost."""

    name = "walking"

    def __init__(self):
        self.calls = 0

    def __call__(self, frame):
        i = self.calls
        self.calls += 1
        return Detections([[60 + 4 * i, 100, BOX_W, BOX_H], [500 - 4 * i, 250, BOX_W, BOX_H],
                           [300, 20, 20, 40]], [0.9, 0.85, 0.2])


def test_track_video_on_a_scripted_detector():
    src, det = FakeSource(20), WalkingPeople()
    res = track_video(src, det, VideoSettings(), progress=False)
    assert isinstance(res, TrackingResult)
    assert det.calls == 20 and res.frames == 20 and not res.stopped_early
    assert res.video_seconds == pytest.approx(20 / 25)
    assert {r[0] for r in res.mot_rows} == set(range(1, 21))       # 1-based frames
    assert {r[1] for r in res.mot_rows} == {1, 2}
    assert len(res.mot_rows) == 40
    assert all(len(r) == 7 for r in res.mot_rows)
    first = sorted(r for r in res.mot_rows if r[0] == 1)
    assert first[0][1:6] == (1, 60.0, 100.0, BOX_W, BOX_H)
    assert first[0][6] == pytest.approx(0.9)
    last = sorted(r for r in res.mot_rows if r[0] == 20)
    assert last[0][2] == 60 + 4 * 19
    assert [t.track_id for t in res.tracks] == [1, 2]
    for t in res.tracks:
        assert len(t.observations) == 20
        assert 1 <= len(t.crops) <= 4
        assert all(c.image.ndim == 3 for c in t.crops)


def test_track_video_with_every_keeps_the_frame_numbers():
    src = FakeSource(20, every=3)
    calls = []
    res = track_video(src, WalkingPeople(), VideoSettings(every=3), progress=False,
                      on_frame=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 7) for i in range(1, 8)]
    assert res.frames == 7
    assert sorted({r[0] for r in res.mot_rows}) == [1, 4, 7, 10, 13, 16, 19]
    assert res.video_seconds == pytest.approx(18 / 25 + 3 / 25)


def test_track_video_without_crops_and_on_nothing():
    res = track_video(FakeSource(6), WalkingPeople(), collect_crops=False, progress=False)
    assert res.tracks == [] and len(res.mot_rows) == 12

    class Nobody:
        name = "nobody"

        def __call__(self, frame):
            return Detections()

    res = track_video(FakeSource(6), Nobody(), progress=False)
    assert (res.tracks, res.mot_rows, res.frames) == ([], [], 6)


def test_settings_key_changes_with_what_changes_the_tracks():
    base = VideoSettings().key()
    assert VideoSettings().key() == base
    assert VideoSettings(every=2).key() != base
    assert VideoSettings(tiles=(2, 2)).key() != base
    assert VideoSettings(detector="hog").key() != base
    assert VideoSettings(crops=CropSettings(k=2)).key() != base
