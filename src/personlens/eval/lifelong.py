"""Scoring lifelong re-ID (issue 16): one domain's trials ranked with an embedding, the step x
domain matrix, and its summaries.

* ``score_domain``: mAP / Rank-1 of one domain, averaged over its trials (the same-person,
  same-camera gallery images are left out, as in ``evaluate_ranking``).
* ``summarize``: from the matrix (rows: after each step; columns: domains) the Seen-Avg and
  Unseen-Avg after the last step, and the average forgetting: for each seen domain but the
  last, its best mAP after it was learned minus its mAP at the end (Chaudhry et al., 2018).
* ``gap_closure``: (method - fine-tune) / (joint - fine-tune) on the final Seen-Avg mAP.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from .retrieval import evaluate_ranking

__all__ = ["score_domain", "summarize", "gap_closure", "plot_matrix"]


def score_domain(domain, embed: Callable[[list], np.ndarray]) -> dict:
    """``embed(paths) -> (N, D)`` unit rows; mean over the domain's trials."""
    paths = list(dict.fromkeys(it.path for t in domain.trials for it in (*t.query, *t.gallery)))
    row = {p: i for i, p in enumerate(paths)}
    feats = embed(paths)
    res = []
    for t in domain.trials:
        q = feats[[row[it.path] for it in t.query]]
        g = feats[[row[it.path] for it in t.gallery]]
        a = t.arrays()
        m = evaluate_ranking(q @ g.T, a["q_pids"], a["g_pids"], a["q_camids"], a["g_camids"])
        res.append((m.mAP, m.rank(1)))
    res = np.asarray(res)
    return {"mAP": float(res[:, 0].mean()), "R1": float(res[:, 1].mean()),
            "trials": len(res), "queries": len(domain.trials[0].query)}


def summarize(matrix: list[dict], seen: list[str], unseen: list[str]) -> dict:
    """``matrix``: one dict per step, ``{domain: {"mAP", "R1"}}``, in the order learned
    (``seen`` is that order)."""
    last = matrix[-1]
    out = {f"seen_avg_{m}": float(np.mean([last[d][m] for d in seen])) for m in ("mAP", "R1")}
    if unseen:
        out.update({f"unseen_avg_{m}": float(np.mean([last[d][m] for d in unseen]))
                    for m in ("mAP", "R1")})
    if len(matrix) == len(seen) and len(seen) > 1:
        drops = [max(matrix[s][d]["mAP"] for s in range(i, len(seen))) - last[d]["mAP"]
                 for i, d in enumerate(seen[:-1])]
        out["forgetting_mAP"] = float(np.mean(drops))
    return out


def gap_closure(method: float, finetune: float, joint: float) -> float | None:
    gap = joint - finetune
    return None if abs(gap) < 1e-9 else float((method - finetune) / gap)


def plot_matrix(results: dict, path: str | Path) -> Path:
    """One heat map per strategy of a run (mAP, steps x domains)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [(name, r) for name, r in results.items() if r.get("matrix")]
    cols = min(3, max(1, len(runs)))          # a grid, readable at page width
    rows = -(-max(1, len(runs)) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.flat[len(runs):]:
        ax.axis("off")
    for ax, (name, r) in zip(axes.flat, runs):
        doms = r["domains"]
        m = np.array([[row[d]["mAP"] if d in row else np.nan for d in doms] for row in r["matrix"]])
        ax.imshow(m, vmin=0, vmax=max(1.0, np.nanmax(m)), cmap="viridis")
        ax.set_xticks(range(len(doms)), doms, rotation=60, fontsize=7)
        ax.set_yticks(range(len(m)), r["steps"], fontsize=7)
        for (i, j), v in np.ndenumerate(m):
            if np.isnan(v):
                continue
            ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=6, color="w")
        ax.set_title(name, fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
