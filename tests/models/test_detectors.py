"""Person detectors: SSDLite on a real frame against its ground truth, its anchors and box
decoding, tiling (grid, edge-cut boxes, coordinates), HOG, the registry and frame checks."""
from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from personlens.models.detectors import (
    MAX_FRAME_PIXELS,
    Detections,
    HogDetector,
    TiledDetector,
    check_frame,
    nms,
    tile_grid,
)
from personlens.models.factory import create_detector, list_models
from personlens.models.ssdlite import anchors, decode_boxes

VIDEO_DATA = Path(__file__).resolve().parents[2].parent / "shared/data/video"
STADTMITTE = VIDEO_DATA / "TUD-Stadtmitte"
real_video = pytest.mark.skipif(not (STADTMITTE / "TUD-Stadtmitte.mp4").is_file(),
                                reason="needs ../shared/data/video/TUD-Stadtmitte")

SSD_SHAPES = ((19, 19), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1))   # the 300x300 net's feature maps


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of ltwh boxes."""
    ax0, ay0, ax1, ay1 = a[:, 0:1], a[:, 1:2], a[:, 0:1] + a[:, 2:3], a[:, 1:2] + a[:, 3:4]
    bx0, by0, bx1, by1 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    inter = (np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None)
             * np.clip(np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None))
    return inter / (a[:, 2:3] * a[:, 3:4] + b[:, 2] * b[:, 3] - inter)


@pytest.fixture(scope="module")
def stadtmitte_frame0() -> np.ndarray:
    if not (STADTMITTE / "TUD-Stadtmitte.mp4").is_file():
        pytest.skip("needs ../shared/data/video/TUD-Stadtmitte")
    from personlens.data.video import VideoSource

    return next(iter(VideoSource(STADTMITTE / "TUD-Stadtmitte.mp4"))).image


@pytest.fixture(scope="module")
def ssdlite():
    return create_detector("ssdlite")


# -- SSDLite on a real frame -----------------------------------------------------------------

@real_video
def test_ssdlite_finds_the_people_of_a_real_frame(ssdlite, stadtmitte_frame0):
    frame = stadtmitte_frame0
    h, w = frame.shape[:2]
    det = ssdlite(frame)
    assert isinstance(det, Detections) and ssdlite.name == "ssdlite"
    assert np.all((det.scores >= 0) & (det.scores <= 1))
    assert np.all(np.diff(det.scores) <= 1e-6)                  # best first (NMS order)
    b = det.boxes
    assert np.all(b[:, 2:] >= 1)
    assert np.all(b[:, 0] >= 0) and np.all(b[:, 1] >= 0)
    assert np.all(b[:, 0] + b[:, 2] <= w + 1e-3) and np.all(b[:, 1] + b[:, 3] <= h + 1e-3)
    sure = det.above(0.3)
    assert len(sure) >= 5
    gt = np.loadtxt(STADTMITTE / "gt.txt", delimiter=",", ndmin=2)
    people = gt[(gt[:, 0] == 1) & (gt[:, 6] != 0), 2:6]        # gt frame 1 is decoded frame 0
    assert len(people) >= 5
    matched = (iou(people, sure.boxes).max(axis=1) >= 0.5).sum()
    assert matched >= 5, f"only {matched} of {len(people)} people found"
    # the whole-frame detector is deterministic
    again = ssdlite(frame)
    np.testing.assert_array_equal(again.boxes, det.boxes)


@real_video
def test_ssdlite_raw_outputs_one_box_per_anchor(ssdlite, stadtmitte_frame0):
    boxes, scores = ssdlite.raw(stadtmitte_frame0)
    assert boxes.shape == (1917, 4) and scores.shape == (1917,)
    assert np.isfinite(boxes).all() and np.all((scores >= 0) & (scores <= 1))


def test_ssdlite_on_a_blank_frame_finds_nobody_sure(ssdlite):
    det = ssdlite(np.zeros((240, 320, 3), np.uint8))
    assert len(det.above(0.5)) == 0


def test_ssdlite_refuses_a_bad_frame(ssdlite):
    with pytest.raises(ValueError, match="uint8"):
        ssdlite(np.zeros((48, 64, 3), np.float32))


# -- anchors and box decoding ----------------------------------------------------------------

def test_anchor_count_and_layout_for_the_300_net():
    a = anchors(SSD_SHAPES)
    assert a.shape == (19 * 19 * 3 + 10 * 10 * 6 + 5 * 5 * 6 + 3 * 3 * 6 + 2 * 2 * 6 + 1 * 1 * 6, 4)
    assert len(a) == 1917
    # lowest layer: 3 anchors a cell, (0.1, 1:1), (0.2, 2:1), (0.2, 1:2); centred on the cell
    c = 0.5 / 19
    np.testing.assert_allclose(a[0], [c, c, 0.1, 0.1], rtol=1e-5)
    np.testing.assert_allclose(a[1], [c, c, 0.2 / math.sqrt(2), 0.2 * math.sqrt(2)], rtol=1e-5)
    np.testing.assert_allclose(a[2], [c, c, 0.2 * math.sqrt(2), 0.2 / math.sqrt(2)], rtol=1e-5)
    np.testing.assert_allclose(a[3, :2], [c, 3 * c], rtol=1e-5)          # next cell: one column right
    # the last layer: one cell, 6 anchors, the extra one at sqrt(0.95 * 1.0), 1:1
    last = a[-6:]
    np.testing.assert_allclose(last[:, :2], 0.5)
    np.testing.assert_allclose(last[0, 2:], [0.95, 0.95], rtol=1e-5)
    np.testing.assert_allclose(last[-1, 2:], [math.sqrt(0.95), math.sqrt(0.95)], rtol=1e-5)
    assert np.all(a[:, 2:] > 0)


def test_decode_boxes():
    a = anchors(SSD_SHAPES)
    np.testing.assert_allclose(decode_boxes(np.zeros((len(a), 4), np.float32), a), a, rtol=1e-6)
    anc = np.array([[0.5, 0.5, 0.2, 0.1]], np.float32)
    # ty = 10 moves the centre by one anchor height; tw = 5 ln 2 doubles the width
    out = decode_boxes(np.array([[10.0, -10.0, 0.0, 5 * math.log(2)]], np.float32), anc)
    np.testing.assert_allclose(out, [[0.7, 0.4, 0.2, 0.2]], rtol=1e-5)
    wild = decode_boxes(np.array([[0, 0, 1e6, -1e6]], np.float32), anc)
    assert np.isfinite(wild).all()


# -- tiling ----------------------------------------------------------------------------------

@pytest.mark.parametrize("w,h,cols,rows,overlap", [(1920, 1080, 3, 2, 0.25), (640, 480, 2, 2, 0.2),
                                                   (1001, 701, 4, 3, 0.5), (640, 480, 2, 1, 0.0)])
def test_tile_grid_covers_the_frame_with_the_overlap(w, h, cols, rows, overlap):
    tiles = tile_grid(w, h, cols, rows, overlap)
    assert len(tiles) == cols * rows
    tw, th = tiles[0][2], tiles[0][3]
    assert all(t[2:] == (tw, th) for t in tiles)
    covered = np.zeros((h, w), bool)
    for x, y, tw_, th_ in tiles:
        assert 0 <= x and 0 <= y and x + tw_ <= w and y + th_ <= h
        covered[y:y + th_, x:x + tw_] = True
    assert covered.all()
    lefts = sorted({t[0] for t in tiles})
    tops = sorted({t[1] for t in tiles})
    assert len(lefts) == cols and len(tops) == rows
    for a, b in itertools.pairwise(lefts):
        assert a + tw - b >= overlap * tw - 1          # neighbours overlap by the share asked
    for a, b in itertools.pairwise(tops):
        assert a + th - b >= overlap * th - 1


def test_tile_grid_of_one_tile_is_the_frame():
    assert tile_grid(640, 480, 1, 1, 0.25) == [(0, 0, 640, 480)]


class ScriptedDetector:
    """Returns a fixed answer per call (call 0: the whole frame, then the tiles in grid
    order), in the coordinates of the image it is given; remembers the images."""

    name = "fake"

    def __init__(self, answers):
        self.answers, self.seen = answers, []

    def __call__(self, frame):
        check_frame(frame)
        self.seen.append(frame)
        boxes, scores = self.answers[len(self.seen) - 1]
        return Detections(np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32))


def test_tiled_detector_drops_boxes_cut_by_inner_edges_and_maps_back():
    frame = np.random.default_rng(0).integers(0, 256, (100, 200, 3), np.uint8)
    # 2x1 tiles with overlap 0.25: (0, 0, 115, 100) and (85, 0, 115, 100)
    assert tile_grid(200, 100, 2, 1, 0.25) == [(0, 0, 115, 100), (85, 0, 115, 100)]
    fake = ScriptedDetector([
        ([[10, 10, 20, 40]], [0.5]),                              # whole frame: A, weaker
        ([[10, 10, 20, 40], [100, 10, 15, 40]], [0.9, 0.8]),      # tile 0: A again; B cut by its right edge
        ([[0, 10, 20, 40], [90, 10, 25, 40], [40, 0, 20, 30]],    # tile 1: C cut by its left edge,
         [0.8, 0.7, 0.6]),                                        # D and E touch the frame's edges only
    ])
    det = TiledDetector(fake, cols=2, rows=1, overlap=0.25)
    assert det.name == "fake+tiles2x1"
    out = det(frame)
    assert len(fake.seen) == 3
    np.testing.assert_array_equal(fake.seen[0], frame)
    np.testing.assert_array_equal(fake.seen[1], frame[:, :115])
    np.testing.assert_array_equal(fake.seen[2], frame[:, 85:])
    got = sorted((tuple(b), round(float(s), 3)) for b, s in zip(out.boxes.tolist(), out.scores))
    assert got == sorted([((10, 10, 20, 40), 0.9),                # A: merged with the whole-frame box
                          ((175, 10, 25, 40), 0.7),               # D in frame coordinates
                          ((125, 0, 20, 30), 0.6)])               # E
    assert np.all(np.diff(out.scores) <= 0)


def test_tiled_detector_checks_its_arguments():
    fake = ScriptedDetector([])
    for kw in ({"cols": 0}, {"rows": 0}, {"overlap": 1.0}, {"overlap": -0.1}):
        with pytest.raises(ValueError, match="tiles"):
            TiledDetector(fake, **kw)
    with pytest.raises(ValueError):
        TiledDetector(ScriptedDetector([]))(np.zeros((10, 10), np.uint8))


def test_create_detector_with_tiles(ssdlite):
    det = create_detector("ssdlite", tiles=(2, 2))
    assert isinstance(det, TiledDetector) and (det.cols, det.rows) == (2, 2)
    assert det.name == "ssdlite+tiles2x2"
    assert not isinstance(create_detector("ssdlite", tiles=(1, 1)), TiledDetector)
    out = det(np.zeros((120, 160, 3), np.uint8))
    assert isinstance(out, Detections)


# -- HOG, the registry -----------------------------------------------------------------------

@real_video
def test_hog_detector_runs_on_a_frame(stadtmitte_frame0):
    det = create_detector("hog")
    assert isinstance(det, HogDetector) and det.name == "hog"
    out = det(stadtmitte_frame0)
    assert len(out) >= 1
    assert np.all((out.scores > 0) & (out.scores < 1))
    assert np.all(out.boxes[:, 2:] > 0)
    assert len(HogDetector()(np.zeros((200, 100, 3), np.uint8))) == 0


def test_hog_detector_on_frames_smaller_than_its_window():
    """Run in a child process: the failure is a crash (SIGSEGV) that would end pytest itself."""
    import subprocess
    import sys

    code = (
        "import numpy as np\n"
        "from personlens.models.factory import create_detector\n"
        "hog, tiled = create_detector('hog'), create_detector('hog', tiles=(2, 2))\n"
        "for h, w in [(100, 64), (64, 128), (100, 100), (128, 40), (1, 1)]:\n"
        "    assert len(hog(np.zeros((h, w, 3), np.uint8))) == 0, (h, w)\n"
        "assert len(tiled(np.zeros((120, 160, 3), np.uint8))) == 0\n"
        "print('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0 and r.stdout.strip() == "ok", (r.returncode, r.stderr[-500:])


def test_unknown_detector_lists_the_known_ones():
    assert {"hog", "ssdlite"} <= set(list_models("detector"))
    with pytest.raises(KeyError) as e:
        create_detector("nope")
    msg = str(e.value.args[0])
    assert "nope" in msg and "hog" in msg and "ssdlite" in msg


# -- frames, Detections, NMS -----------------------------------------------------------------

def test_check_frame():
    ok = np.zeros((4, 6, 3), np.uint8)
    assert check_frame(ok) is ok
    for bad, match in [(np.zeros((4, 6), np.uint8), "HxWx3"),
                       (np.zeros((4, 6, 4), np.uint8), "HxWx3"),
                       (np.zeros((4, 6, 1, 3), np.uint8), "HxWx3"),
                       ([[[0, 0, 0]]], "HxWx3"),
                       (np.zeros((0, 6, 3), np.uint8), "empty"),
                       (np.zeros((4, 6, 3), np.float32), "uint8"),
                       (np.zeros((4, 6, 3), np.uint16), "uint8")]:
        with pytest.raises(ValueError, match=match):
            check_frame(bad)
    # over the limit, without allocating it: a broadcast view has the shape but no memory
    huge = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (7000, 6000, 3))
    assert 7000 * 6000 > MAX_FRAME_PIXELS
    with pytest.raises(ValueError, match="limit"):
        check_frame(huge)


def test_detections_and_nms():
    with pytest.raises(ValueError, match="2 boxes but 1 scores"):
        Detections(np.zeros((2, 4)), np.zeros(1))
    empty = Detections()
    assert len(empty) == 0 and empty.boxes.shape == (0, 4)
    d = Detections([[0, 0, 10, 20], [1, 1, 10, 20], [50, 50, 10, 20]], [0.4, 0.9, 0.6])
    assert d.boxes.dtype == np.float32
    assert d.above(0.5).scores.tolist() == pytest.approx([0.9, 0.6])
    assert nms(d.boxes, d.scores, 0.5).tolist() == [1, 2]          # the weaker twin goes, best first
    assert nms(d.boxes, d.scores, 0.5, min_score=0.7).tolist() == [1]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).shape == (0,)
