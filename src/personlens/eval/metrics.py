"""Pedestrian attribute recognition metrics, as the PAR literature defines them.

Label-based: mA = mean over attributes of (positive recall + negative recall) / 2.
Instance-based (Li et al. 2016; Rethinking_of_PAR): per image, accuracy = |P & G| / |P | G|,
precision = |P & G| / |P|, recall = |P & G| / |G|, averaged over images; F1 is the harmonic
mean of the averaged precision and recall. Reported as percentages.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

EPS = 1e-20


@dataclass(frozen=True)
class AttributeResult:
    name: str
    ma: float
    positive_recall: float
    negative_recall: float
    precision: float
    f1: float
    positives: int
    threshold: float


@dataclass(frozen=True)
class PARMetrics:
    mA: float
    accuracy: float
    precision: float
    recall: float
    f1: float
    num_images: int
    per_attribute: tuple[AttributeResult, ...]

    def __post_init__(self):
        for k in ("mA", "accuracy", "precision", "recall", "f1"):
            v = getattr(self, k)
            if not 0.0 <= v <= 100.0 or np.isnan(v):
                raise ValueError(f"{k}={v} outside [0, 100]")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["per_attribute"] = {a.name: {k: v for k, v in asdict(a).items() if k != "name"}
                              for a in self.per_attribute}
        return d


def _check(pred: np.ndarray, labels: np.ndarray) -> None:
    if pred.shape != labels.shape or pred.ndim != 2:
        raise ValueError(f"predictions {pred.shape} and labels {labels.shape} must be equal (N, A)")
    if pred.shape[0] == 0:
        raise ValueError("no images to evaluate")


def par_metrics(probs: np.ndarray, labels: np.ndarray, names: list[str],
                thresholds: float | np.ndarray = 0.5) -> PARMetrics:
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels) > 0.5
    _check(probs, labels)
    th = np.broadcast_to(np.asarray(thresholds, np.float64), (probs.shape[1],))
    pred = probs >= th

    tp = (pred & labels).sum(0)
    tn = (~pred & ~labels).sum(0)
    pos, neg = labels.sum(0), (~labels).sum(0)
    pos_recall = tp / (pos + EPS)
    neg_recall = tn / (neg + EPS)
    ma_attr = (pos_recall + neg_recall) / 2
    prec_attr = tp / (pred.sum(0) + EPS)
    f1_attr = 2 * prec_attr * pos_recall / (prec_attr + pos_recall + EPS)

    inter = (pred & labels).sum(1)
    union = (pred | labels).sum(1)
    acc = np.mean(inter / (union + EPS))
    prec = np.mean(inter / (pred.sum(1) + EPS))
    rec = np.mean(inter / (labels.sum(1) + EPS))
    f1 = 2 * prec * rec / (prec + rec + EPS)

    per = tuple(
        AttributeResult(n, 100 * float(ma_attr[i]), 100 * float(pos_recall[i]),
                        100 * float(neg_recall[i]), 100 * float(prec_attr[i]),
                        100 * float(f1_attr[i]), int(pos[i]), float(th[i]))
        for i, n in enumerate(names)
    )
    return PARMetrics(100 * float(ma_attr.mean()), 100 * float(acc), 100 * float(prec),
                      100 * float(rec), 100 * float(f1), int(probs.shape[0]), per)


def attribute_aucs(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per attribute, the ROC AUC (Mann-Whitney U / (positives x negatives), ties counted
    half); NaN for an attribute without positives or without negatives. How well the scores
    separate the classes, whatever the thresholds: 0.5 is chance."""
    from scipy.stats import mannwhitneyu

    probs, labels = np.asarray(probs, np.float64), np.asarray(labels) > 0.5
    _check(probs, labels)
    out = np.full(probs.shape[1], np.nan)
    for i in range(probs.shape[1]):
        p, n = probs[labels[:, i], i], probs[~labels[:, i], i]
        if len(p) and len(n):
            out[i] = mannwhitneyu(p, n).statistic / (len(p) * len(n))
    return out


def mean_auc(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean of ``attribute_aucs`` over the attributes that have one; NaN when none has."""
    aucs = attribute_aucs(probs, labels)
    return float(np.nanmean(aucs)) if np.isfinite(aucs).any() else float("nan")


def threshold_and_ranking(probs: np.ndarray, labels: np.ndarray, names: list[str],
                          thresholds: float | np.ndarray) -> dict:
    """mA and instance F1 at ``thresholds`` beside the mean AUC (in points, rounded to 0.01):
    what a change moves in where the scores lie against the thresholds, and what it moves in
    how they rank people."""
    m = par_metrics(probs, labels, names, thresholds)
    return {"mA": round(m.mA, 2), "f1": round(m.f1, 2), "mean_auc": round(100 * mean_auc(probs, labels), 2)}


def group_weights(groups, n: int, power: float = 1.0) -> np.ndarray:
    """Per-sample weights (mean 1) under which every group weighs the same in total: with the
    sub-dataset (its cameras) as group, no single source's cameras decide the thresholds.
    ``power`` < 1 balances part way (a group of size c weighs c^(1 - power) in total), so that
    a group of a few dozen crops does not weigh as much as one of hundreds."""
    if groups is None:
        return np.ones(n)
    groups = np.asarray(groups)
    if len(groups) != n:
        raise ValueError(f"{len(groups)} groups for {n} samples")
    _, inv, counts = np.unique(groups, return_inverse=True, return_counts=True)
    w = counts[inv].astype(np.float64) ** -power
    return w * n / w.sum()


def calibrate_thresholds(probs: np.ndarray, labels: np.ndarray, objective: str = "balanced",
                         grid: np.ndarray | None = None, groups=None,
                         group_power: float = 1.0) -> np.ndarray:
    """One threshold per attribute, fitted on a validation split.

    objective: "ma" maximises the attribute's balanced accuracy, "f1" its F1, and
    "balanced" the mean of the two. "joint" maximises mA + instance F1 of the whole set
    (coordinate ascent from "balanced"): per-attribute objectives ignore that instance
    F1 couples attributes through each image's predicted set. "keep_ma" maximises instance
    F1 while keeping mA at least at its fixed-0.5 value (recover F1 without losing mA).
    ``groups`` (one label per sample, e.g. its sub-dataset): every group weighs the same
    (``group_weights``, ``group_power``) instead of every sample.
    """
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels) > 0.5
    _check(probs, labels)
    w = group_weights(groups, probs.shape[0], group_power)
    if objective not in ("ma", "f1", "balanced", "joint", "keep_ma"):
        raise ValueError(f"unknown objective {objective!r} (ma|f1|balanced|joint|keep_ma)")
    grid = np.linspace(0.05, 0.95, 91) if grid is None else np.asarray(grid)
    pred = probs[None] >= grid[:, None, None]              # (G, N, A)

    def wsum(x):                                            # weighted count over the samples
        return np.einsum("gna,n->ga", x, w)

    tp = wsum(pred & labels)
    tn = wsum(~pred & ~labels)
    pos, neg = w @ labels, w @ ~labels
    rec = tp / (pos + EPS)
    ma = (rec + tn / (neg + EPS)) / 2
    prec = tp / (wsum(pred) + EPS)
    f1 = 2 * prec * rec / (prec + rec + EPS)
    score = {"ma": ma, "f1": f1, "balanced": (ma + f1) / 2, "joint": (ma + f1) / 2,
             "keep_ma": (ma + f1) / 2}[objective]
    best = grid[score.argmax(0)]
    # an attribute with no positives (or no negatives) in val gives no evidence: keep 0.5
    valid = (pos > 0) & (neg > 0)
    best = np.where(valid, best, 0.5)
    if objective in ("joint", "keep_ma"):
        floor = None
        if objective == "keep_ma":
            floor = ma[np.abs(grid - 0.5).argmin()].mean()
        best = _joint_ascent(probs, labels, best, grid, ma, valid, ma_floor=floor, weights=w)
    return best


def _joint_ascent(probs, labels, th, grid, ma_grid, valid, passes: int = 3,
                  ma_floor: float | None = None, weights=None) -> np.ndarray:
    """Coordinate ascent, one attribute's threshold at a time, on mA + instance F1, or
    (with ``ma_floor``) on instance F1 with a steep penalty for mA below the floor."""
    th = th.copy()
    gi = np.abs(grid[:, None] - th[None]).argmin(0)          # grid index per attribute
    pred = probs >= th
    lab_count = labels.sum(1) + EPS
    wn = np.full(len(probs), 1 / len(probs)) if weights is None else weights / weights.sum()
    for _ in range(passes):
        changed = False
        for a in np.flatnonzero(valid):
            others = np.delete(np.arange(probs.shape[1]), a)
            base_inter = (pred[:, others] & labels[:, others]).sum(1)
            base_pred = pred[:, others].sum(1)
            pa = probs[None, :, a] >= grid[:, None]            # (G, N)
            inter = base_inter[None] + (pa & labels[None, :, a])
            prec = (inter / (base_pred[None] + pa + EPS)) @ wn
            rec = (inter / lab_count[None]) @ wn
            f1 = 2 * prec * rec / (prec + rec + EPS)
            ma_other = ma_grid[gi[others], others].sum()
            total_ma = (ma_other + ma_grid[:, a]) / probs.shape[1]
            if ma_floor is None:
                score = total_ma + f1
            else:
                score = f1 - 10 * np.maximum(0, ma_floor - total_ma)
            g = int(score.argmax())
            if g != gi[a]:
                gi[a], th[a], changed = g, grid[g], True
                pred[:, a] = probs[:, a] >= grid[g]
        if not changed:
            break
    return th
