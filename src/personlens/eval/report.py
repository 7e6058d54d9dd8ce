"""JSON + PNG reports for retrieval evaluations (text search and re-ID): several methods,
their headline metrics (Rank-1/5/10, mAP, mINP) and CMC curves, in one file each."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .retrieval import RetrievalMetrics

HEADLINE = ("R1", "R5", "R10", "mAP", "mINP")
CURVE_RANKS = tuple(range(1, 21))
EVAL_RANKS = tuple(sorted(set(CURVE_RANKS) | {1, 5, 10}))


def mean_std(mean: float, std: float, n: int, digits: int = 2, single: str = "") -> str:
    """``"65.00 ± 7.07"`` for a mean over ``n`` runs (folds, seeds, orders); for one run,
    ``"57.84"`` + ``single``: a std of one value is 0 and would read as a measurement."""
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if n > 1 else single)


def metrics_entry(m: RetrievalMetrics | list[RetrievalMetrics], **extra) -> dict:
    """Headline metrics + CMC curve; a list (trials) is averaged, with standard deviations."""
    ms = m if isinstance(m, list) else [m]
    d: dict = {}
    for k in HEADLINE:
        vals = [x.to_dict()[k] for x in ms]
        d[k] = round(float(np.mean(vals)), 3)
        if len(ms) > 1:
            d[f"{k}_std"] = round(float(np.std(vals)), 3)
    d["cmc"] = [round(float(np.mean([x.cmc[r] for x in ms])), 3) for r in CURVE_RANKS]
    d["num_queries"] = int(np.mean([x.num_queries for x in ms]))
    d["num_gallery"] = int(np.mean([x.num_gallery for x in ms]))
    d["num_skipped"] = int(sum(x.num_skipped for x in ms))
    if len(ms) > 1:
        d["trials"] = len(ms)
    d.update(extra)
    return d


def write_retrieval_report(json_path: str | Path, meta: dict, methods: dict[str, dict],
                           title: str) -> tuple[dict, Path]:
    """Write ``{**meta, "cmc_ranks": [...], "methods": methods}`` and a PNG plot beside it
    (bars: headline metrics per method; line: CMC). Returns (the JSON data, the PNG path)."""
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    out = {**meta, "cmc_ranks": list(CURVE_RANKS), "methods": methods}
    json_path.write_text(json.dumps(out, indent=2))
    png = json_path.with_suffix(".png")
    plot_methods(methods, png, title)
    return out, png


def plot_methods(methods: dict[str, dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    names = [n for n, m in methods.items() if m]
    x = np.arange(len(HEADLINE))
    w = 0.8 / max(1, len(names))
    for i, n in enumerate(names):
        vals = [methods[n][k] for k in HEADLINE]
        bars = ax1.bar(x + (i - (len(names) - 1) / 2) * w, vals, w, label=n)
        ax1.bar_label(bars, fmt="%.1f", fontsize=6)
        ax2.plot(CURVE_RANKS, methods[n]["cmc"], marker="o", ms=3, label=n)
    ax1.set_xticks(x, HEADLINE)
    ax1.set_ylabel("%")
    ax1.set_ylim(0, 100)
    ax1.legend(fontsize=8)
    ax1.set_title("headline metrics")
    ax2.set_xlabel("rank")
    ax2.set_ylabel("CMC (%)")
    ax2.set_ylim(0, 100)
    ax2.set_xticks([1, 5, 10, 15, 20])
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    ax2.set_title("CMC")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
