"""Multi-object-tracking scores (CLEAR-MOT and identity metrics, as the MOTChallenge devkit
computes them) for tracker output against MOTChallenge ground truth, and their JSON + PNG report.

Both inputs are arrays in the :func:`personlens.data.mot.read_mot` layout (``frame, id, left,
top, width, height, ...``); pass ground truth read with ``scored_only=True`` so unscored boxes
count neither as objects nor as misses. A hypothesis matches an object at IoU >= 0.5.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

# motmetrics metric names: fractions, reported here as 0-100 percentages; then counts.
PERCENT_METRICS = ("mota", "idf1", "idp", "idr", "precision", "recall")
COUNT_METRICS = ("num_switches", "num_fragmentations", "mostly_tracked", "mostly_lost",
                 "num_false_positives", "num_misses", "num_objects", "num_predictions",
                 "num_unique_objects", "num_frames")
PLOTTED = (("mota", "MOTA"), ("idf1", "IDF1"), ("precision", "precision"), ("recall", "recall"))


def iou_distance(gt_boxes: np.ndarray, hyp_boxes: np.ndarray, min_iou: float = 0.5) -> np.ndarray:
    """``(M, N)`` matrix of ``1 - IoU`` between ``(left, top, width, height)`` boxes, NaN
    where IoU < ``min_iou`` (motmetrics reads NaN as "may not be matched").

    Our own version of ``motmetrics.distances.iou_matrix``, which calls ``np.asfarray`` and so
    fails under numpy 2.
    """
    a = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(hyp_boxes, dtype=np.float64).reshape(-1, 4)
    a_lo, a_hi = a[:, None, :2], a[:, None, :2] + a[:, None, 2:]
    b_lo, b_hi = b[None, :, :2], b[None, :, :2] + b[None, :, 2:]
    wh = np.clip(np.minimum(a_hi, b_hi) - np.maximum(a_lo, b_lo), 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = (a[:, None, 2] * a[:, None, 3]) + (b[None, :, 2] * b[None, :, 3]) - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return np.where(iou < min_iou, np.nan, 1.0 - iou)


def score_tracking(gt: np.ndarray, hyp: np.ndarray, *, min_iou: float = 0.5) -> dict:
    """Score ``hyp`` against ``gt`` frame by frame over every frame either one has.

    Returns MOTA, IDF1, IDP, IDR, precision, recall (0-100, 2 decimals), ``motp_iou`` (mean
    IoU of the matched pairs, 0-100: motmetrics' MOTP is the mean *distance* 1 - IoU), and the
    counts as ints. A metric that is undefined (e.g. precision with no hypotheses) is None.
    """
    import motmetrics as mm

    gt, hyp = _mot_rows(gt, "gt"), _mot_rows(hyp, "hyp")
    acc = mm.MOTAccumulator(auto_id=False)
    for frame in np.union1d(gt[:, 0], hyp[:, 0]).astype(int):
        g, h = gt[gt[:, 0] == frame], hyp[hyp[:, 0] == frame]
        acc.update(g[:, 1].astype(int), h[:, 1].astype(int),
                   iou_distance(g[:, 2:6], h[:, 2:6], min_iou), frameid=int(frame))
    names = [*PERCENT_METRICS, "motp", *COUNT_METRICS]
    row = mm.metrics.create().compute(acc, metrics=names, return_dataframe=False)

    def finite(v) -> float | None:
        v = float(v)
        return v if math.isfinite(v) else None

    out: dict = {}
    for name in PERCENT_METRICS:
        v = finite(row[name])
        out[name] = None if v is None else round(v * 100, 2)
    motp = finite(row["motp"])
    out["motp_iou"] = None if motp is None else round((1 - motp) * 100, 2)
    for name in COUNT_METRICS:
        out[name] = int(row[name])
    return out


def _mot_rows(a, name: str) -> np.ndarray:
    """``a`` as a 2-D float array of at least 6 MOTChallenge columns (an empty one is fine)."""
    a = np.asarray(a, dtype=np.float64)
    if a.size == 0:
        return a.reshape(0, 6)
    if a.ndim != 2 or a.shape[1] < 6:
        raise ValueError(f"{name}: expected (N, >=6) MOTChallenge rows, got shape {a.shape}")
    return a


def write_tracking_report(json_path: str | Path, results: dict[str, dict],
                          meta: dict) -> tuple[dict, Path]:
    """Write ``{**meta, "sequences": results}`` (sequence name -> :func:`score_tracking`
    dict) and a PNG beside it (bars: MOTA, IDF1, precision, recall per sequence).
    Returns (the JSON data, the PNG path)."""
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    out = {**meta, "sequences": results}
    json_path.write_text(json.dumps(out, indent=2))
    png = json_path.with_suffix(".png")
    plot_sequences(results, png, str(meta.get("title", "tracking")))
    return out, png


def plot_sequences(results: dict[str, dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    names = list(results)
    x = np.arange(len(PLOTTED))
    w = 0.8 / max(1, len(names))
    lowest = 0.0
    for i, n in enumerate(names):
        # An undefined metric (None) draws no bar rather than a misleading 0.
        vals = [np.nan if results[n].get(k) is None else results[n][k] for k, _ in PLOTTED]
        lowest = min(lowest, np.nanmin(vals + [0.0]))
        bars = ax.bar(x + (i - (len(names) - 1) / 2) * w, vals, w, label=n)
        ax.bar_label(bars, fmt="%.1f", fontsize=6)
    ax.set_xticks(x, [label for _, label in PLOTTED])
    ax.set_ylabel("%")
    ax.set_ylim(lowest - 5 if lowest < 0 else 0, 100)  # MOTA can go below zero
    ax.axhline(0, color="black", lw=0.6)
    if names:
        ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
