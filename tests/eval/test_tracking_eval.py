"""Tracking scores: IoU gating, a hand-scored case, ground truth against itself, and the report."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from personlens.data.mot import read_mot
from personlens.eval.tracking import iou_distance, score_tracking, write_tracking_report

VIDEO = Path(__file__).resolve().parents[2].parent / "shared/data/video"


def _rows(*boxes) -> np.ndarray:
    """MOTChallenge rows from ``(frame, id, left, top, width, height)`` tuples."""
    return np.array([[*b, 1, -1, -1, -1] for b in boxes], dtype=np.float64).reshape(-1, 10)


def test_iou_distance_gates_with_nan():
    gt = [[0, 0, 10, 10]]
    hyp = [[0, 0, 10, 10],   # IoU 1          -> 0
           [0, 0, 10, 5],    # IoU 50/100     -> 0.5, exactly at the gate: kept
           [5, 0, 10, 10],   # IoU 50/150=1/3 -> NaN
           [50, 50, 5, 5]]   # no overlap     -> NaN
    d = iou_distance(gt, hyp)
    assert d.shape == (1, 4)
    np.testing.assert_allclose(d[0, :2], [0.0, 0.5])
    assert np.isnan(d[0, 2:]).all()
    np.testing.assert_allclose(iou_distance(gt, hyp, min_iou=0.3)[0, 2], 2 / 3)
    assert iou_distance(np.empty((0, 4)), hyp).shape == (0, 4)
    assert iou_distance(gt, np.empty((0, 4))).shape == (1, 0)


def test_hand_scored_switch_miss_and_false_positive():
    # Two objects over 4 frames (8 objects in all). Object 2 is tracked by hyp 20 in every
    # frame with a wider box (10x10 vs 12.5x10: IoU 100/125 = 0.8). Object 1 is tracked by
    # hyp 10 in frames 1-2, by hyp 11 in frame 3 (1 ID switch) and by nobody in frame 4
    # (1 miss); hyp 12 in frame 4 is far from everything (1 false positive).
    #   matches TP = 8 - 1 miss = 7;            predictions = 7 + 1 FP = 8
    #   MOTA      = 1 - (miss + FP + switch) / objects = 1 - 3/8 = 62.5 %
    #   precision = TP / predictions = 7/8 = 87.5 %; recall = TP / objects = 7/8 = 87.5 %
    #   MOTP(IoU) = (3 x 1.0 + 4 x 0.8) / 7 = 6.2/7 = 88.571... -> 88.57
    #   IDF1: best one-to-one identity pairs 1<->10 (2 frames), 2<->20 (4): IDTP = 6,
    #         IDF1 = 2 * 6 / (8 objects + 8 predictions) = 75 %
    gt = _rows(*[(f, 1, 0, 0, 10, 10) for f in range(1, 5)],
               *[(f, 2, 100, 0, 10, 10) for f in range(1, 5)])
    hyp = _rows((1, 10, 0, 0, 10, 10), (2, 10, 0, 0, 10, 10), (3, 11, 0, 0, 10, 10),
                *[(f, 20, 100, 0, 12.5, 10) for f in range(1, 5)],
                (4, 12, 300, 300, 10, 10))
    s = score_tracking(gt, hyp)
    assert s["mota"] == 62.5
    assert s["precision"] == 87.5 and s["recall"] == 87.5
    assert s["motp_iou"] == 88.57
    assert s["idf1"] == 75.0
    assert (s["num_switches"], s["num_misses"], s["num_false_positives"]) == (1, 1, 1)
    assert (s["num_objects"], s["num_predictions"], s["num_unique_objects"]) == (8, 8, 2)
    assert s["num_frames"] == 4
    assert all(isinstance(s[k], int) for k in ("num_switches", "mostly_tracked", "num_frames"))


def test_hypotheses_only_in_frames_without_ground_truth_are_false_positives():
    gt = _rows((1, 1, 0, 0, 10, 10))
    hyp = _rows((1, 5, 0, 0, 10, 10), (3, 6, 0, 0, 10, 10))  # frame 3 has no ground truth
    s = score_tracking(gt, hyp)
    assert (s["num_frames"], s["num_false_positives"], s["mota"]) == (2, 1, 0.0)


def test_empty_inputs_give_undefined_percentages():
    s = score_tracking(np.empty((0, 10)), np.empty((0, 10)))
    assert s["mota"] is None and s["precision"] is None and s["motp_iou"] is None
    assert s["num_objects"] == 0 and s["num_frames"] == 0


@pytest.mark.parametrize("seq, ids", [("TUD-Stadtmitte", 10), ("TUD-Campus", 8)])
def test_ground_truth_against_itself_is_perfect(seq, ids):
    path = VIDEO / seq / "gt.txt"
    if not path.is_file():
        pytest.skip(f"needs {path}")
    gt = read_mot(path, scored_only=True)
    s = score_tracking(gt, gt)
    assert s["mota"] == 100.0 and s["idf1"] == 100.0 and s["motp_iou"] == 100.0
    assert s["num_switches"] == 0 and s["num_misses"] == 0 and s["num_false_positives"] == 0
    assert s["mostly_tracked"] == ids and s["num_objects"] == len(gt)


def test_report_writes_json_and_png(tmp_path):
    gt = _rows((1, 1, 0, 0, 10, 10), (2, 1, 0, 0, 10, 10))
    results = {"perfect": score_tracking(gt, gt),
               "noisy": score_tracking(gt, _rows((1, 3, 50, 50, 5, 5), (2, 3, 0, 0, 10, 10))),
               "empty": score_tracking(np.empty((0, 10)), np.empty((0, 10)))}
    assert results["noisy"]["mota"] == 0.0  # 1 miss + 1 FP over 2 objects
    data, png = write_tracking_report(tmp_path / "out" / "tracking.json", results,
                                      {"title": "toy", "min_iou": 0.5})
    assert png == tmp_path / "out" / "tracking.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    on_disk = json.loads((tmp_path / "out" / "tracking.json").read_text())
    assert on_disk == data
    assert on_disk["title"] == "toy" and set(on_disk["sequences"]) == {"perfect", "noisy", "empty"}
    assert on_disk["sequences"]["empty"]["mota"] is None  # valid JSON null, not NaN
