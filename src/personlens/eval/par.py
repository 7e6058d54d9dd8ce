"""Evaluate a PAR model end to end (images -> shipped inference path -> metrics, JSON, plot)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..data.base import PersonDataset
from ..inference.predict import AttributePredictor, PredictionError
from .metrics import PARMetrics, par_metrics


def predict_dataset(predictor: AttributePredictor, dataset: PersonDataset,
                    batch_size: int = 32) -> np.ndarray:
    """(N, A_dataset) probabilities in the dataset's attribute order."""
    missing = [n for n in dataset.schema.names if n not in predictor.names]
    if missing:
        raise ValueError(f"model was not trained on these dataset attributes: {missing[:8]}"
                         f"{' ...' if len(missing) > 8 else ''}; pass --weights trained on this dataset")
    cols = [predictor.names.index(n) for n in dataset.schema.names]
    rows = []
    results = predictor.predict_paths(dataset.paths, batch_size=batch_size)
    for r in tqdm(results, total=len(dataset), desc="evaluating", unit="img"):
        if isinstance(r, PredictionError):
            raise ValueError(f"cannot evaluate: {r.image}: {r.error}")
        rows.append([r.attributes[predictor.names[c]] for c in cols])
    return np.asarray(rows, np.float32)


def evaluate_par(predictor: AttributePredictor, dataset: PersonDataset,
                 batch_size: int = 32) -> dict[str, PARMetrics]:
    probs = predict_dataset(predictor, dataset, batch_size)
    names = dataset.schema.names
    th = np.asarray([predictor.thresholds[predictor.names.index(n)] for n in names])
    return {"fixed_0.5": par_metrics(probs, dataset.labels, names, 0.5),
            "calibrated": par_metrics(probs, dataset.labels, names, th)}


def write_report(results: dict[str, PARMetrics], json_path: str | Path, meta: dict) -> Path:
    """JSON with headline metrics (calibrated at top level), and a per-attribute bar plot."""
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    main = results["calibrated"]
    out = {**meta, **{k: getattr(main, k) for k in ("mA", "accuracy", "precision", "recall", "f1")},
           "thresholds": "calibrated on the validation split",
           "num_images": main.num_images,
           "per_attribute": main.to_dict()["per_attribute"],
           "fixed_0.5": {k: v for k, v in results["fixed_0.5"].to_dict().items() if k != "per_attribute"}}
    json_path.write_text(json.dumps(out, indent=2))
    plot_path = json_path.with_suffix(".png")
    plot_per_attribute(results, plot_path, title=meta.get("title", "per-attribute mA"))
    return plot_path


def plot_per_attribute(results: dict[str, PARMetrics], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [a.name for a in results["calibrated"].per_attribute]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(8, 0.32 * len(names)), 4.5))
    w = 0.4
    for i, (label, m) in enumerate(results.items()):
        ax.bar(x + (i - 0.5) * w, [a.ma for a in m.per_attribute], w, label=f"{label} (mA {m.mA:.1f})")
    ax.set_xticks(x, names, rotation=90, fontsize=7)
    ax.set_ylabel("mA (%)")
    ax.set_ylim(40, 100)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
