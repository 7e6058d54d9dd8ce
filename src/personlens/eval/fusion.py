"""Does fusing several crops of one person beat reading one crop? (issue 13, track-level
attributes.)

PETA has several images of most identities (different frames and often different
cameras of the same sub-dataset), which stand in for the K best crops of a video track.
Each image is scored twice against its own labels: with its own probabilities (single
crop) and with the fused probabilities of its group (``inference.fusion``, the same code
video indexing uses). Groups are an identity's images cut into runs of at most
``group_size`` (a track's K crops), in file order; identities with one image are left out
of both scores, so the two are measured on the same images.
"""
from __future__ import annotations

import numpy as np

from ..inference.fusion import fuse_probabilities
from .metrics import par_metrics


def identity_groups(pids, group_size: int | None = 4, min_size: int = 2) -> list[np.ndarray]:
    """Index arrays of images of one identity, at most ``group_size`` each (None: all)."""
    pids = np.asarray(pids)
    groups = []
    for pid in np.unique(pids):
        idx = np.flatnonzero(pids == pid)
        if len(idx) < min_size:
            continue
        step = group_size or len(idx)
        chunks = [idx[i:i + step] for i in range(0, len(idx), step)]
        if len(chunks) > 1 and len(chunks[-1]) < min_size:   # a lone leftover joins the previous run
            chunks[-2] = np.concatenate(chunks[-2:])
            chunks.pop()
        groups.extend(chunks)
    return groups


def fused_by_group(probs: np.ndarray, groups: list[np.ndarray]) -> np.ndarray:
    """Each grouped image's row replaced by its group's fused probabilities."""
    out = np.array(probs, np.float64, copy=True)
    for g in groups:
        out[g] = fuse_probabilities(probs[g])
    return out


def evaluate_fusion(probs: np.ndarray, labels: np.ndarray, pids, names, thresholds,
                    group_sizes=(4, None)) -> dict:
    """Single-crop vs fused metrics on the images of identities seen more than once."""
    out: dict = {}
    for size in group_sizes:
        groups = identity_groups(pids, size)
        idx = np.sort(np.concatenate(groups)) if groups else np.zeros(0, int)
        if len(idx) == 0:
            raise ValueError("no identity has two or more images")
        fused = fused_by_group(probs, groups)
        single_m = par_metrics(probs[idx], labels[idx], names, thresholds)
        fused_m = par_metrics(fused[idx], labels[idx], names, thresholds)
        key = f"groups_of_{size}" if size else "whole_identity"
        out[key] = {
            "groups": len(groups), "images": int(len(idx)),
            "mean_group_size": round(float(np.mean([len(g) for g in groups])), 2),
            "single": {k: getattr(single_m, k) for k in ("mA", "accuracy", "precision", "recall", "f1")},
            "fused": {k: getattr(fused_m, k) for k in ("mA", "accuracy", "precision", "recall", "f1")},
        }
        out[key]["gain_mA"] = round(out[key]["fused"]["mA"] - out[key]["single"]["mA"], 2)
        out[key]["gain_f1"] = round(out[key]["fused"]["f1"] - out[key]["single"]["f1"], 2)
    return out


def plot_fusion(results: dict, path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(results)
    metrics = ("mA", "f1")
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.8), squeeze=False)
    for ax, k in zip(axes[0], keys):
        x = np.arange(len(metrics))
        for i, which in enumerate(("single", "fused")):
            vals = [results[k][which][m] for m in metrics]
            ax.bar(x + (i - 0.5) * 0.38, vals, 0.38, label=which)
            for xi, v in zip(x, vals):
                ax.text(xi + (i - 0.5) * 0.38, v + 0.5, f"{v:.1f}", ha="center", fontsize=8)
        ax.set_xticks(x, metrics)
        ax.set_ylim(40, 100)
        ax.set_title(f"{k.replace('_', ' ')} ({results[k]['images']} images)", fontsize=9)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
