"""Ablation on the same cached features: linear probe vs cross-attention, encoder frozen,
next to the shipped model (cross-attention, encoder top fine-tuned).

    .venv/bin/python scripts/ablate_par.py --root ../shared/data/PETA --json docs/ablation_par.json

Every variant is trained on PETA partition 0 train, selected and calibrated on val, and
reported on test, all from the same stage-8 feature cache (flip TTA as in the shipped path).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from personlens.data.peta import PETA
from personlens.eval.metrics import calibrate_thresholds, par_metrics
from personlens.models.io import load_par
from personlens.models.par import HeadConfig
from personlens.train.features import cache_dir_for, load_cache
from personlens.train.par import TrainConfig, run_batched, train_par

KEYS = ("mA", "accuracy", "precision", "recall", "f1")


def cached_probs(model, feats, idx) -> np.ndarray:
    model.eval()
    p = [torch.sigmoid(torch.from_numpy(run_batched(model.forward_from_stage, feats, idx, f))).numpy()
         for f in (0, 1)]
    return (p[0] + p[1]) / 2


def report(model, feats, pos, val, test, objective) -> dict:
    idx = {s: np.array([pos[str(p.resolve())] for p in ds.paths]) for s, ds in (("val", val), ("test", test))}
    pv, pt = cached_probs(model, feats, idx["val"]), cached_probs(model, feats, idx["test"])
    th = calibrate_thresholds(pv, val.labels, objective)
    names = test.schema.names
    fixed, cal = par_metrics(pt, test.labels, names), par_metrics(pt, test.labels, names, th)
    return {"test_fixed_0.5": {k: round(getattr(fixed, k), 2) for k in KEYS},
            "test_calibrated": {k: round(getattr(cal, k), 2) for k in KEYS}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="../shared/data/PETA")
    ap.add_argument("--shipped", default=None, help="model dir of the fine-tuned variant (default: shipped)")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--objective", default="joint")
    ap.add_argument("--json", default="docs/ablation_par.json")
    args = ap.parse_args()
    torch.set_num_threads(2)
    tr, va, te = (PETA(args.root, s) for s in ("train", "val", "test"))
    all_paths = tr.paths + va.paths + te.paths
    out = {}
    for kind in ("linear", "cross_attention"):
        cfg = TrainConfig(head=HeadConfig(kind=kind), unfreeze_top=False, epochs=args.epochs,
                          calibration=args.objective)
        model, _ = train_par(tr, va, all_paths, cfg)
        feats, meta = load_cache(cache_dir_for(Path(cfg.cache_root), model.encoder, cfg.stage))
        pos = {p: i for i, p in enumerate(meta["paths"])}
        out[f"{kind}, encoder frozen"] = report(model, np.ascontiguousarray(feats), pos, va, te, args.objective)
    shipped = load_par(args.shipped)
    feats, meta = load_cache(cache_dir_for(Path("cache/features"), shipped.encoder, shipped.config.stage))
    pos = {p: i for i, p in enumerate(meta["paths"])}
    name = f"{shipped.config.head.kind}, encoder stages >= {shipped.config.stage} fine-tuned (shipped)"
    out[name] = report(shipped, np.ascontiguousarray(feats), pos, va, te, args.objective)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2))
    print("| variant | mA (0.5) | F1 (0.5) | mA (cal.) | F1 (cal.) |\n|---|---|---|---|---|")
    for k, v in out.items():
        f, c = v["test_fixed_0.5"], v["test_calibrated"]
        print(f"| {k} | {f['mA']} | {f['f1']} | {c['mA']} | {c['f1']} |")


if __name__ == "__main__":
    main()
