"""Multi-object tracking of people across video frames, in the SORT / ByteTrack manner.

Each track carries a constant-velocity Kalman filter on ``(cx, cy, aspect, height)`` and
their velocities. Every frame (``ByteTracker.update``):

1. all tracks are predicted one frame ahead (lost ones too, so a person walking behind a
   pillar is looked for where they should come out);
2. **stage 1**: high-score detections are matched to the confirmed tracks, active and lost,
   by IoU with the predicted box (blended with the cosine distance of appearance embeddings
   when ``appearance_weight > 0``);
3. **stage 2** (ByteTrack's idea, Zhang et al. 2022): low-score detections, which are
   mostly people partly hidden, may only *extend* the active tracks left over, with a
   stricter IoU. They never start a track, so the noise among them costs little;
4. **re-linking**: when embeddings are given, a high detection still unmatched may take over
   a lost track that looks like it, wherever it is (IoU would fail after a long or fast
   disappearance);
5. remaining high detections are matched to tentative (not yet confirmed) tracks, and the
   rest start new tentative tracks when their score reaches ``new_track_score``.

A tentative track is confirmed after ``min_hits`` matched frames in a row (on the first
frame of the video at once, as ByteTrack does); it gets its id then, so the ids reported are
1, 2, 3 ... without gaps left by spurious detections. A confirmed track that goes unmatched
is lost; it is removed after more than ``max_lost`` frames in a row without a match.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["ByteTracker", "KalmanFilter", "TrackedBox", "TrackerConfig", "iou_matrix"]

# Cost given to forbidden pairs before solving: large enough that the solver prefers any
# number of allowed pairs over one forbidden pair, so a forbidden pair never pushes an
# allowed one out of the assignment.
_FORBIDDEN = 1e6


@dataclass
class TrackerConfig:
    """Thresholds of the tracker; the defaults follow ByteTrack's for people at video rate."""

    high_score: float = 0.5      # detections >= this go into the first association stage
    low_score: float = 0.1       # detections in [low, high) only extend existing tracks (second stage)
    new_track_score: float = 0.6  # an unmatched high detection starts a track only above this
    match_iou: float = 0.2       # first stage (and tentative tracks): match when IoU >= this
    low_match_iou: float = 0.5   # second stage (low-score boxes): stricter
    max_lost: int = 30           # frames a lost track is kept for re-linking before it is removed
    min_hits: int = 2            # matched frames before a track is confirmed (first frame: at once)
    appearance_weight: float = 0.0   # >0: blend cosine distance of embeddings into the first stage cost
    relink_similarity: float = 0.6   # lost tracks: cosine similarity needed to re-link when IoU fails
    embedding_momentum: float = 0.9  # EMA weight of a track's old embedding (as in BoT-SORT)

    def __post_init__(self) -> None:
        if not 0.0 <= self.low_score <= self.high_score:
            raise ValueError(f"need 0 <= low_score <= high_score, got {self.low_score}, {self.high_score}")
        for name in ("match_iou", "low_match_iou", "appearance_weight", "embedding_momentum"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.max_lost < 0 or self.min_hits < 1:
            raise ValueError(f"need max_lost >= 0 and min_hits >= 1, got {self.max_lost}, {self.min_hits}")


@dataclass
class TrackedBox:
    """One confirmed track matched to a detection in the current frame."""

    track_id: int       # 1, 2, 3 ... in order of confirmation
    box: np.ndarray     # (4,) left, top, width, height: the matched detection box
    score: float        # the detection score
    detection: int      # index of the matched detection in this frame's input arrays


def ltwh_to_xyah(box: np.ndarray) -> np.ndarray:
    """(left, top, width, height) -> (centre x, centre y, width / height, height)."""
    left, top, w, h = box
    return np.array([left + w / 2, top + h / 2, w / h, h], dtype=float)


def xyah_to_ltwh(xyah: np.ndarray) -> np.ndarray:
    """(centre x, centre y, aspect, height) -> (left, top, width, height); sizes clipped at 0."""
    cx, cy, a, h = xyah[:4]
    h = max(h, 0.0)
    w = max(a * h, 0.0)
    return np.array([cx - w / 2, cy - h / 2, w, h], dtype=float)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (M,4) with every box in ``b`` (N,4), both left,top,width,height."""
    a_lo, a_hi = a[:, None, :2], a[:, None, :2] + a[:, None, 2:]
    b_lo, b_hi = b[None, :, :2], b[None, :, :2] + b[None, :, 2:]
    inter = np.clip(np.minimum(a_hi, b_hi) - np.maximum(a_lo, b_lo), 0.0, None).prod(axis=2)
    union = a[:, None, 2:].prod(axis=2) + b[None, :, 2:].prod(axis=2) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


class KalmanFilter:
    """Constant-velocity Kalman filter on ``(cx, cy, a, h, vcx, vcy, va, vh)``, one frame a step.

    The noise is proportional to the box height (as in SORT's successors DeepSORT and
    ByteTrack): a near, tall person moves and jitters more pixels per frame than a far one.
    The aspect ratio gets a small fixed noise, it hardly changes for a walking person.
    """

    def __init__(self, position_noise: float = 1 / 20, velocity_noise: float = 1 / 160):
        self._position_noise = position_noise
        self._velocity_noise = velocity_noise
        self._motion = np.eye(8)
        self._motion[:4, 4:] = np.eye(4)    # x' = x + v (dt = one frame)
        self._observe = np.eye(4, 8)        # we measure the position part only

    def _position_std(self, h: float) -> np.ndarray:
        return np.array([self._position_noise * h, self._position_noise * h, 1e-2, self._position_noise * h])

    def _velocity_std(self, h: float) -> np.ndarray:
        return np.array([self._velocity_noise * h, self._velocity_noise * h, 1e-5, self._velocity_noise * h])

    def initiate(self, measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A new state at ``measurement`` (cx, cy, a, h), at rest, with wide velocity uncertainty."""
        mean = np.concatenate([measurement, np.zeros(4)])
        h = measurement[3]
        std = np.concatenate([2 * self._position_std(h), 10 * self._velocity_std(h)])
        std[2], std[6] = 1e-2, 1e-5
        return mean, np.diag(std ** 2)

    def predict(self, mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The state one frame later."""
        h = mean[3]
        noise = np.diag(np.concatenate([self._position_std(h), self._velocity_std(h)]) ** 2)
        return self._motion @ mean, self._motion @ cov @ self._motion.T + noise

    def project(self, mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The state in measurement space, with measurement noise added."""
        std = self._position_std(mean[3])
        std[2] = 1e-1
        return self._observe @ mean, self._observe @ cov @ self._observe.T + np.diag(std ** 2)

    def update(self, mean: np.ndarray, cov: np.ndarray,
               measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The state corrected by ``measurement`` (cx, cy, a, h)."""
        projected, innovation_cov = self.project(mean, cov)
        # gain = P H^T S^-1, solved rather than inverted (S is symmetric positive definite)
        gain = np.linalg.solve(innovation_cov, self._observe @ cov).T
        mean = mean + gain @ (measurement - projected)
        cov = cov - gain @ innovation_cov @ gain.T
        return mean, cov


@dataclass(eq=False)
class _Track:
    mean: np.ndarray
    cov: np.ndarray
    embedding: np.ndarray | None = None
    hits: int = 1          # matched frames in a row so far (only matters until confirmed)
    missed: int = 0        # frames in a row without a match (lost when > 0)
    track_id: int = 0      # 0 while tentative
    box: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.box = xyah_to_ltwh(self.mean)

    @property
    def confirmed(self) -> bool:
        return self.track_id > 0


def _match(cost: np.ndarray, allowed: np.ndarray) -> list[tuple[int, int]]:
    """Minimum-cost one-to-one (row, column) pairs among the allowed ones."""
    if cost.size == 0:
        return []
    rows, cols = linear_sum_assignment(np.where(allowed, cost, _FORBIDDEN))
    return [(int(r), int(c)) for r, c in zip(rows, cols) if allowed[r, c]]


class ByteTracker:
    """Tracks people from per-frame detections; call ``update`` once per frame, in order."""

    def __init__(self, config: TrackerConfig | None = None):
        self.config = config or TrackerConfig()
        self._kf = KalmanFilter()
        self._tracks: list[_Track] = []
        self._frame = 0
        self._next_id = 1
        self._embedding_dim: int | None = None

    @property
    def frame(self) -> int:
        """Frames seen so far."""
        return self._frame

    def update(self, boxes: np.ndarray, scores: np.ndarray,
               embeddings: np.ndarray | None = None) -> list[TrackedBox]:
        """One frame. boxes (N,4) left,top,width,height; scores (N,); embeddings (N,D) unit vectors or None.
        Returns confirmed tracks matched to a detection in this frame, sorted by track_id."""
        boxes, scores, embeddings = self._check(boxes, scores, embeddings)
        cfg = self.config
        self._frame += 1
        for track in self._tracks:
            self._predict(track)

        # Boxes of zero width or height (a detector clipping at the image border can make
        # them) carry no position to track: they are left out rather than failing the video.
        usable = (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
        high = [int(i) for i in np.flatnonzero(usable & (scores >= cfg.high_score))]
        low = [int(i) for i in np.flatnonzero(usable & (scores >= cfg.low_score) & (scores < cfg.high_score))]
        confirmed = [t for t in self._tracks if t.confirmed]
        tentative = [t for t in self._tracks if not t.confirmed]
        matched: dict[int, int] = {}   # id(track) -> detection index
        by_key = {id(t): t for t in self._tracks}

        def assign(tracks: list[_Track], dets: list[int], cost: np.ndarray, allowed: np.ndarray) -> list[int]:
            """Record the pairs; return the detections left unmatched."""
            for r, c in _match(cost, allowed):
                matched[id(tracks[r])] = dets[c]
            taken = set(matched.values())
            return [d for d in dets if d not in taken]

        # Stage 1: high detections against every confirmed track, lost ones included.
        iou = self._iou(confirmed, high, boxes)
        cost = self._first_stage_cost(confirmed, high, iou, embeddings)
        high = assign(confirmed, high, cost, iou >= cfg.match_iou)

        # Stage 2: low detections only extend tracks that were matched last frame. A lost
        # track's prediction is too uncertain to trust a weak box near it.
        active = [t for t in confirmed if id(t) not in matched and t.missed == 0]
        iou = self._iou(active, low, boxes)
        assign(active, low, 1.0 - iou, iou >= cfg.low_match_iou)

        # Re-linking: a confirmed track that found nothing near its prediction may be the
        # person of a remaining high detection that looks like it, wherever that is.
        if embeddings is not None:
            left = [t for t in confirmed if id(t) not in matched and t.embedding is not None]
            sim = self._similarity(left, high, embeddings)
            relinked_from = set(matched)
            high = assign(left, high, 1.0 - sim, sim >= cfg.relink_similarity)
            relinked = {k for k in matched if k not in relinked_from}
        else:
            relinked = set()

        # Tentative tracks: high detections only, they have no history to vouch for weak boxes.
        iou = self._iou(tentative, high, boxes)
        high = assign(tentative, high, 1.0 - iou, iou >= cfg.match_iou)

        for key, det in matched.items():
            self._correct(by_key[key], boxes[det], scores[det], embeddings, det, reinit=key in relinked)
        survivors = []
        for track in self._tracks:
            if id(track) in matched:
                survivors.append(track)
            elif track.confirmed:
                track.missed += 1
                if track.missed <= cfg.max_lost:
                    survivors.append(track)
            # an unmatched tentative track is dropped: a real person is seen frame after frame
        self._tracks = survivors

        for det in high:
            if scores[det] >= cfg.new_track_score:
                track = _Track(*self._kf.initiate(ltwh_to_xyah(boxes[det])))
                if embeddings is not None:
                    track.embedding = embeddings[det].copy()
                self._tracks.append(track)
                matched[id(track)] = det

        # Ids are given at confirmation, in track order, so reported ids have no gaps.
        for track in self._tracks:
            if not track.confirmed and (track.hits >= cfg.min_hits or self._frame == 1):
                track.track_id = self._next_id
                self._next_id += 1

        out = [TrackedBox(t.track_id, boxes[matched[id(t)]].copy(), float(scores[matched[id(t)]]),
                          matched[id(t)])
               for t in self._tracks if t.confirmed and id(t) in matched]
        return sorted(out, key=lambda b: b.track_id)

    # -- steps ---------------------------------------------------------------------------

    def _predict(self, track: _Track) -> None:
        if track.missed > 0:
            # Lost: stop the height changing, or a box that was shrinking (someone walking
            # away) would shrink to nothing during a long occlusion (as ByteTrack does).
            track.mean[7] = 0.0
        track.mean, track.cov = self._kf.predict(track.mean, track.cov)
        track.box = xyah_to_ltwh(track.mean)

    def _correct(self, track: _Track, box: np.ndarray, score: float,
                 embeddings: np.ndarray | None, det: int, reinit: bool) -> None:
        measurement = ltwh_to_xyah(box)
        if reinit:
            # Re-linked far from its prediction: the old velocity says nothing about where
            # the person goes next, so start the motion afresh at the detection.
            track.mean, track.cov = self._kf.initiate(measurement)
        else:
            track.mean, track.cov = self._kf.update(track.mean, track.cov, measurement)
        track.box = xyah_to_ltwh(track.mean)
        track.hits += 1
        track.missed = 0
        # Only high-score boxes update the appearance: low ones are mostly occluded people,
        # whose crops show someone else as much as them.
        if embeddings is not None and score >= self.config.high_score:
            new = embeddings[det]
            if track.embedding is None:
                track.embedding = new.copy()
            else:
                m = self.config.embedding_momentum
                mixed = m * track.embedding + (1 - m) * new
                norm = np.linalg.norm(mixed)
                track.embedding = mixed / norm if norm > 0 else mixed

    def _iou(self, tracks: list[_Track], dets: list[int], boxes: np.ndarray) -> np.ndarray:
        if not tracks or not dets:
            return np.zeros((len(tracks), len(dets)))
        return iou_matrix(np.stack([t.box for t in tracks]), boxes[dets])

    def _similarity(self, tracks: list[_Track], dets: list[int], embeddings: np.ndarray) -> np.ndarray:
        if not tracks or not dets:
            return np.zeros((len(tracks), len(dets)))
        return np.stack([t.embedding for t in tracks]) @ embeddings[dets].T

    def _first_stage_cost(self, tracks: list[_Track], dets: list[int], iou: np.ndarray,
                          embeddings: np.ndarray | None) -> np.ndarray:
        cost = 1.0 - iou
        w = self.config.appearance_weight
        if embeddings is None or w == 0 or iou.size == 0:
            return cost
        # Appearance only re-ranks pairs the IoU gate already allows: it tells apart people
        # who overlap (crossing, walking side by side), where IoU alone is ambiguous.
        for r, track in enumerate(tracks):
            if track.embedding is not None:
                distance = np.clip(1.0 - embeddings[dets] @ track.embedding, 0.0, 1.0)
                cost[r] = (1 - w) * cost[r] + w * distance
        return cost

    def _check(self, boxes: np.ndarray, scores: np.ndarray,
               embeddings: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Validated float arrays; embeddings normalised to unit length."""
        boxes = np.asarray(boxes, dtype=float)
        scores = np.asarray(scores, dtype=float)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if scores.size == 0:
            scores = scores.reshape(0)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"boxes must have shape (N, 4) (left, top, width, height), got {boxes.shape}")
        if scores.shape != (len(boxes),):
            raise ValueError(f"scores must have shape ({len(boxes)},) to match boxes, got {scores.shape}")
        if not np.isfinite(boxes).all():
            raise ValueError("boxes contain NaN or infinite values")
        if not np.isfinite(scores).all():
            raise ValueError("scores contain NaN or infinite values")
        if (boxes[:, 2:] < 0).any():
            raise ValueError("boxes have a negative width or height (expected left, top, width, height)")
        if embeddings is None:
            return boxes, scores, None
        embeddings = np.asarray(embeddings, dtype=float)
        if embeddings.size == 0 and len(boxes) == 0:
            embeddings = embeddings.reshape(0, embeddings.shape[-1] if embeddings.ndim == 2 else 0)
        if embeddings.ndim != 2 or len(embeddings) != len(boxes):
            raise ValueError(f"embeddings must have shape ({len(boxes)}, D), got {embeddings.shape}")
        if len(embeddings) and self._embedding_dim not in (None, embeddings.shape[1]):
            raise ValueError(f"embeddings have dimension {embeddings.shape[1]}, earlier frames had "
                             f"{self._embedding_dim}")
        if not np.isfinite(embeddings).all():
            raise ValueError("embeddings contain NaN or infinite values")
        if len(embeddings):
            self._embedding_dim = embeddings.shape[1]
        # Unit length makes a dot product the cosine similarity; a zero vector stays zero
        # (similar to nothing) instead of dividing by zero.
        norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
        return boxes, scores, np.divide(embeddings, norms, out=np.zeros_like(embeddings), where=norms > 0)
