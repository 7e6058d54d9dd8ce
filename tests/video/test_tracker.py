"""ByteTracker on synthetic boxes: ids kept through crossings and occlusions, re-linking by
appearance, the two score stages, confirmation, validation, and the Kalman filter itself."""
from __future__ import annotations

import numpy as np
import pytest

from personlens.video.tracker import (
    ByteTracker,
    KalmanFilter,
    TrackerConfig,
    iou_matrix,
)

W, H = 40.0, 100.0


def frame(*people: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Boxes and scores from (left, top, score) triples; every box W x H."""
    boxes = np.array([[x, y, W, H] for x, y, _ in people], dtype=float).reshape(-1, 4)
    return boxes, np.array([s for _, _, s in people], dtype=float)


def empty() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((0, 4)), np.zeros(0)


def ids(result) -> list[int]:
    return [t.track_id for t in result]


def unit(i: int, dim: int = 8) -> np.ndarray:
    v = np.zeros(dim)
    v[i] = 1.0
    return v


# -- Kalman filter ------------------------------------------------------------------------

def test_kalman_filter_learns_and_extrapolates_constant_velocity():
    kf = KalmanFilter()
    mean, cov = kf.initiate(np.array([100.0, 200.0, 0.4, 100.0]))
    for t in range(1, 20):
        mean, cov = kf.predict(mean, cov)
        mean, cov = kf.update(mean, cov, np.array([100.0 + 5 * t, 200.0 - 2 * t, 0.4, 100.0]))
    np.testing.assert_allclose(mean[4:6], [5.0, -2.0], atol=0.2)
    position_var = cov[0, 0]
    for _ in range(10):  # no measurements: it keeps moving at the learned velocity
        mean, cov = kf.predict(mean, cov)
    np.testing.assert_allclose(mean[:4], [100 + 5 * 29, 200 - 2 * 29, 0.4, 100.0], atol=2.0)
    assert cov[0, 0] > position_var  # and grows less sure


def test_iou_matrix():
    a = np.array([[0, 0, 10, 10], [100, 100, 10, 10]], dtype=float)
    b = np.array([[5, 0, 10, 10]], dtype=float)
    np.testing.assert_allclose(iou_matrix(a, b), [[50 / 150], [0.0]])


# -- identities ---------------------------------------------------------------------------

def test_first_frame_confirms_at_once_later_tracks_after_min_hits():
    tracker = ByteTracker()
    assert ids(tracker.update(*frame((0, 0, 0.9), (300, 0, 0.9)))) == [1, 2]
    assert ids(tracker.update(*frame((0, 0, 0.9), (300, 0, 0.9), (600, 0, 0.9)))) == [1, 2]
    out = tracker.update(*frame((0, 0, 0.9), (300, 0, 0.9), (600, 0, 0.9)))
    assert ids(out) == [1, 2, 3]
    assert [t.detection for t in out] == [0, 1, 2]
    np.testing.assert_array_equal(out[2].box, [600, 0, W, H])  # the detection, not the estimate
    assert out[2].score == pytest.approx(0.9)
    assert tracker.frame == 3


def test_crossing_people_keep_their_ids():
    # A walks right at 6 px/frame, B left at 4 px/frame, 8 px lower: they overlap for
    # about ten frames. Without motion prediction the nearest boxes swap at the crossing.
    tracker = ByteTracker()
    first_a = first_b = None
    for t in range(40):
        xa, xb = 100 + 6 * t, 320 - 4 * t
        out = tracker.update(*frame((xa, 50, 0.9), (xb, 58, 0.9)))
        by_det = {b.detection: b.track_id for b in out}
        assert sorted(by_det) == [0, 1], t
        if t == 0:
            first_a, first_b = by_det[0], by_det[1]
        assert (by_det[0], by_det[1]) == (first_a, first_b), f"ids swapped at frame {t}"
    assert (first_a, first_b) == (1, 2)


def test_appearance_resolves_a_swap_that_iou_gets_wrong():
    # Two people stand side by side, then trade places in one frame: IoU prefers the swap,
    # the embeddings do not.
    def run(weight: float) -> list[int]:
        tracker = ByteTracker(TrackerConfig(appearance_weight=weight))
        emb = np.stack([unit(0), unit(1)])
        for _ in range(5):
            tracker.update(*frame((100, 0, 0.9), (130, 0, 0.9)), emb)
        out = tracker.update(*frame((125, 0, 0.9), (105, 0, 0.9)), emb)  # 0 is still person A
        return [b.track_id for b in sorted(out, key=lambda b: b.detection)]

    assert run(0.0) == [2, 1]
    assert run(0.8) == [1, 2]


def test_occluded_person_keeps_id_along_the_predicted_path():
    tracker = ByteTracker()
    for t in range(15):
        assert ids(tracker.update(*frame((100 + 5 * t, 50, 0.9)))) == [1]
    for t in range(15, 25):  # hidden for 10 frames
        assert tracker.update(*empty()) == []
    # Reappears where it would be: 50 px from where it was last seen, more than a box
    # width, so only the prediction links it.
    out = tracker.update(*frame((100 + 5 * 25, 50, 0.9)))
    assert ids(out) == [1]


def test_return_after_more_than_max_lost_frames_gets_a_new_id():
    cfg = TrackerConfig(max_lost=5)
    for embeddings in (None, np.stack([unit(0)])):
        tracker = ByteTracker(cfg)
        for _ in range(3):
            assert ids(tracker.update(*frame((100, 50, 0.9)), embeddings)) == [1]
        for _ in range(6):  # one frame more than max_lost
            tracker.update(*empty(), None if embeddings is None else np.zeros((0, 8)))
        assert tracker.update(*frame((100, 50, 0.9)), embeddings) == []  # tentative again
        assert ids(tracker.update(*frame((100, 50, 0.9)), embeddings)) == [2]


def test_return_within_max_lost_same_place_keeps_id():
    tracker = ByteTracker(TrackerConfig(max_lost=5))
    tracker.update(*frame((100, 50, 0.9)))
    for _ in range(5):  # exactly max_lost frames: still kept
        tracker.update(*empty())
    assert ids(tracker.update(*frame((100, 50, 0.9)))) == [1]


def test_embeddings_relink_a_lost_person_who_reappears_far_away():
    def run(with_embeddings: bool, appearance: np.ndarray) -> list[list[int]]:
        tracker = ByteTracker(TrackerConfig(max_lost=30))
        e = (lambda v: np.stack([v])) if with_embeddings else (lambda v: None)
        history = []
        for t in range(5):
            history.append(ids(tracker.update(*frame((500 + 5 * t, 50, 0.9)), e(unit(0)))))
        for _ in range(15):  # off screen, within max_lost
            tracker.update(*empty(), np.zeros((0, 8)) if with_embeddings else None)
        for _ in range(2):   # back at the other side of the image: no IoU with the prediction
            history.append(ids(tracker.update(*frame((20, 50, 0.9)), e(appearance))))
        return history

    same = 0.8 * unit(0) + 0.6 * unit(1)  # cosine 0.8 >= relink_similarity
    other = 0.5 * unit(0) + np.sqrt(0.75) * unit(1)  # cosine 0.5 < relink_similarity
    assert run(True, same)[5:] == [[1], [1]]
    assert run(False, same)[5:] == [[], [2]]
    assert run(True, other)[5:] == [[], [2]]


# -- score stages and confirmation ---------------------------------------------------------

def test_low_score_boxes_extend_a_track_but_never_start_one():
    tracker = ByteTracker()
    tracker.update(*frame((100, 50, 0.9)))
    tracker.update(*frame((103, 50, 0.9)))
    for t in range(2, 8):  # partly hidden: the detector is unsure
        out = tracker.update(*frame((100 + 3 * t, 50, 0.2), (600, 300, 0.2)))
        assert ids(out) == [1] and out[0].detection == 0 and out[0].score == pytest.approx(0.2)
    assert ids(tracker.update(*frame((124, 50, 0.9)))) == [1]

    lonely = ByteTracker()
    for _ in range(5):  # first frame included
        assert lonely.update(*frame((100, 50, 0.2))) == []


def test_low_score_boxes_do_not_extend_a_lost_track():
    tracker = ByteTracker()
    tracker.update(*frame((100, 50, 0.9)))
    tracker.update(*empty())
    assert tracker.update(*frame((100, 50, 0.2))) == []
    assert ids(tracker.update(*frame((100, 50, 0.9)))) == [1]


def test_high_but_not_new_track_score_matches_yet_does_not_start():
    tracker = ByteTracker()  # high 0.5, new_track 0.6
    tracker.update(*frame((100, 50, 0.9)))
    assert ids(tracker.update(*frame((100, 50, 0.55)))) == [1]
    for _ in range(3):
        assert ids(tracker.update(*frame((100, 50, 0.55), (500, 50, 0.55)))) == [1]


def test_spurious_one_frame_box_is_never_confirmed_and_takes_no_id():
    tracker = ByteTracker()
    tracker.update(*frame((100, 50, 0.9)))
    assert ids(tracker.update(*frame((100, 50, 0.9), (500, 300, 0.95)))) == [1]
    assert ids(tracker.update(*frame((100, 50, 0.9)))) == [1]
    assert ids(tracker.update(*frame((100, 50, 0.9), (500, 300, 0.95)))) == [1]  # tentative anew
    out = tracker.update(*frame((100, 50, 0.9), (500, 300, 0.95)))
    assert ids(out) == [1, 2]  # the first id after 1: the spurious box used none


def test_empty_frames_count_and_return_nothing():
    tracker = ByteTracker()
    assert tracker.update(*empty()) == []
    assert tracker.update([], []) == []
    assert tracker.update(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 16))) == []
    assert tracker.frame == 3
    # not the first frame any more: a new person waits for a second sighting
    assert tracker.update(*frame((0, 0, 0.9))) == []
    assert ids(tracker.update(*frame((0, 0, 0.9)))) == [1]


def test_zero_size_boxes_are_ignored():
    tracker = ByteTracker()
    out = tracker.update(np.array([[0, 0, 0, 100], [50, 0, 40, 100]], dtype=float), np.array([0.9, 0.9]))
    assert [(b.track_id, b.detection) for b in out] == [(1, 1)]


# -- validation ---------------------------------------------------------------------------

@pytest.mark.parametrize("boxes, scores, embeddings, message", [
    (np.zeros((2, 3)), np.zeros(2), None, "shape"),
    (np.zeros(4), np.zeros(1), None, "shape"),
    (np.ones((2, 4)), np.ones(3), None, "scores"),
    (np.array([[0, 0, np.nan, 10]]), np.ones(1), None, "NaN"),
    (np.array([[0, 0, 10, np.inf]]), np.ones(1), None, "NaN"),
    (np.ones((1, 4)), np.array([np.nan]), None, "NaN"),
    (np.array([[0, 0, -5, 10]]), np.ones(1), None, "negative"),
    (np.array([[0, 0, 5, -10]]), np.ones(1), None, "negative"),
    (np.ones((2, 4)), np.ones(2), np.ones((3, 8)), "embeddings"),
    (np.ones((2, 4)), np.ones(2), np.ones(8), "embeddings"),
    (np.ones((1, 4)), np.ones(1), np.array([[np.nan, 1.0]]), "NaN"),
])
def test_bad_inputs_raise(boxes, scores, embeddings, message):
    tracker = ByteTracker()
    with pytest.raises(ValueError, match=message):
        tracker.update(boxes, scores, embeddings)
    assert tracker.frame == 0


def test_embedding_dimension_must_not_change():
    tracker = ByteTracker()
    tracker.update(np.ones((1, 4)), np.ones(1), np.ones((1, 8)))
    with pytest.raises(ValueError, match="dimension"):
        tracker.update(np.ones((1, 4)), np.ones(1), np.ones((1, 4)))


@pytest.mark.parametrize("kwargs", [{"low_score": 0.6, "high_score": 0.5}, {"match_iou": 1.5},
                                    {"max_lost": -1}, {"min_hits": 0}])
def test_bad_config_raises(kwargs):
    with pytest.raises(ValueError):
        TrackerConfig(**kwargs)
