"""Choose `personlens adapt`'s settings on the *validation* fold (CUHK held out), never on
the test folds: each variant adapts the fold model on the unseen cameras' images without
their labels, then is scored with the labels.

    .venv/bin/personlens train attributes --protocol unseen-cameras --fold cuhk --epochs 6 \
        --root ../shared/data/PETA --out runs/adapt-val
    .venv/bin/python scripts/choose_adapt_settings.py --root ../shared/data/PETA \
        --model runs/adapt-val/cuhk --json docs/results/adapt_settings_validation.json

The encoder pass runs once per normalisation setting; thresholds variants reuse its scores.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from personlens.data.images import load_image
from personlens.eval.metrics import par_metrics
from personlens.eval.unseen import VALIDATION_FOLD, ensure_val_scores, fold_datasets
from personlens.inference.adapt import (AdaptSettings, apply_bn_statistics, bn_statistics, em_priors,
                                        estimate_bn_statistics, fit_score_mixture, shift_thresholds,
                                        transfer_thresholds)
from personlens.inference.predict import AttributePredictor


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", required=True)
    ap.add_argument("--model", required=True, help="the validation fold's model directory")
    ap.add_argument("--json", required=True)
    args = ap.parse_args()

    pred = AttributePredictor(args.model)
    data = fold_datasets(args.root, VALIDATION_FOLD, attributes=list(pred.names))
    ensure_val_scores(pred, data)
    source = pred.score_model
    ds = data["test_unseen"]
    y, names, base_th = ds.labels, ds.schema.names, pred.base_thresholds
    x = torch.stack([pred.preprocess(load_image(p)) for p in ds.paths])
    enc = pred.encoder

    def probs():
        return np.concatenate([enc(x[i:i + 64]).probs for i in range(0, len(x), 64)])

    def score(p, th):
        m = par_metrics(p, y, names, th)
        return {"mA": round(m.mA, 2), "f1": round(m.f1, 2)}

    results, base_bn = {}, bn_statistics(enc.encoder)
    for bn_prior in (None, 16.0, 256.0):
        t0 = time.perf_counter()
        if bn_prior is not None:
            batches = (x[i:i + 32] for i in range(0, len(x), 32))
            apply_bn_statistics(enc.encoder, estimate_bn_statistics(enc.encoder, batches, bn_prior))
        p = probs()
        tag = "bn-none" if bn_prior is None else f"bn-prior{int(bn_prior)}"
        results[f"{tag}/thresholds-kept"] = score(p, base_th)
        results[f"{tag}/saerens-em"] = score(p, shift_thresholds(base_th, source.prior, em_priors(p, source.prior)))
        for k in (10.0, 50.0, 200.0):
            for cap in (1.0, 2.0):
                s = AdaptSettings(score_prior=k, max_shift=cap)
                th = transfer_thresholds(base_th, source, fit_score_mixture(p, source, s), cap)
                results[f"{tag}/mixture-k{int(k)}-cap{cap:g}"] = score(p, th)
        apply_bn_statistics(enc.encoder, base_bn)
        print(tag, f"{time.perf_counter() - t0:.0f} s",
              json.dumps({k: v for k, v in results.items() if k.startswith(tag)}))
    best = max(results, key=lambda k: results[k]["mA"] + results[k]["f1"])
    out = {"fold": VALIDATION_FOLD.name, "held_out": list(VALIDATION_FOLD.held_out),
           "model": args.model, "images": len(ds), "objective": "mA + F1", "best": best,
           "results": results}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2))
    plot_results(args.json)
    print("best:", best, results[best])


def plot_results(json_path: str) -> Path:
    """mA against F1 of every variant (PNG beside the JSON)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = json.loads(Path(json_path).read_text())
    fig, ax = plt.subplots(figsize=(7, 5))
    colours = {"bn-none": "tab:blue", "bn-prior16": "tab:orange", "bn-prior256": "tab:green"}
    for name, r in d["results"].items():
        bn, variant = name.split("/")
        ax.scatter(r["f1"], r["mA"], color=colours.get(bn, "grey"), marker="*" if name == d["best"] else "o")
        ax.annotate(variant.replace("mixture-", "mix "), (r["f1"], r["mA"]), fontsize=6)
    for bn, c in colours.items():
        ax.scatter([], [], color=c, label=bn)
    ax.set_xlabel("instance F1 (%)")
    ax.set_ylabel("mA (%)")
    ax.set_title(f"adapt settings on the validation fold ({d['fold']}, {d['images']} images); * chosen")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(json_path).with_suffix(".png")
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


if __name__ == "__main__":
    main()
