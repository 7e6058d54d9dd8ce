"""Which projection of the colour descriptor, and which weight? The comparison behind the choice.

    .venv/bin/python scripts/check_reid_colour_projection.py --par runs/par-clean \
        --reid-head runs/reid-clean --json docs/results/reid_colour_projection_choice.json

The re-ID head's colour part (``personlens.models.lomo``) projects a 20,480-value LOMO
descriptor to a short vector fitted on the re-ID training identities (CUHK03-subset train,
TownCentre, CAVIAR4REID). Candidates: no projection, PCA to 128/256/512, and LDA
(``fit_lomo_projection``) from 512 or 1,024 principal components to 128 or 256. Each is
scored alone and fused with the head (``[sqrt(1 - w) * head, sqrt(w) * colour]``) for
w in 0.25/0.5/0.75 on the validation domains (3DPeS and i-LIDS, held out of training): that
is what the choice was made on. The same grid on VIPeR, PRID and GRID (10 trials, with
per-camera centring) is reported beside it, for reading only. ``--reid-head``: a head
*without* a colour part (its token part is fused here). ~8 minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from personlens.eval.reid import evaluate_trials, load_reid_models, reid_trials, trial_images
from personlens.eval.report import metrics_entry
from personlens.models.camera_norm import unit_rows
from personlens.train.lomo_fit import fit_lomo_projection
from personlens.inference.pooled import lomo_features, head_embeddings, pooled_features
from personlens.train.reid import PETA_TRAIN_SUBSETS, reid_training_items
from personlens.train.reid_val import VAL_DOMAINS, domain_val_set, rank_features

WEIGHTS = (0.25, 0.5, 0.75)



def projections(train: np.ndarray, labels: np.ndarray) -> dict:
    from sklearn.utils.extmath import randomized_svd

    mean = train.mean(0)
    _, _, vt = randomized_svd(train - mean, 512, n_oversamples=64, n_iter=3, random_state=0)
    out = {"raw": (np.zeros_like(mean), None)}
    for k in (128, 256, 512):
        out[f"pca{k}"] = (mean, vt[:k].T)
    for pca_dim, k in ((512, 128), (512, 256), (1024, 256)):
        out[f"lda{pca_dim}-{k}"] = fit_lomo_projection(train, labels, k, pca_dim)
    return out


def project(desc: np.ndarray, p) -> np.ndarray:
    mean, proj = p
    return unit_rows(desc - mean if proj is None else (desc - mean) @ proj)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--par", type=Path, default=None, help="PAR model directory (default: shipped)")
    ap.add_argument("--reid-head", type=Path, required=True, help="re-ID head without colour part")
    ap.add_argument("--root", type=Path, default=Path("../shared/data/PETA"))
    ap.add_argument("--cuhk03-root", type=Path, default=Path("../shared/data/CUHK03-subset"))
    ap.add_argument("--cache", type=Path, default=Path("cache"))
    ap.add_argument("--json", type=Path, required=True)
    args = ap.parse_args()

    model, head, head_src = load_reid_models(args.par, args.reid_head)
    if head.needs_lomo:
        raise SystemExit("give a re-ID head without a colour part (train reid --lomo-dim 0)")
    subsets = tuple(s for s in PETA_TRAIN_SUBSETS if s not in VAL_DOMAINS)
    paths, labels, _ = reid_training_items(args.root, args.cuhk03_root, subsets)
    train = lomo_features(paths, cache_root=args.cache / "colour", name="reid-train")
    projs = projections(train, labels)
    val = domain_val_set(model, args.root, VAL_DOMAINS, True, args.cache / "pooled", True, 64, 0)
    val_head = head_embeddings(head, val["pooled"], True)
    val_colour = lomo_features(val["paths"], cache_root=args.cache / "colour", name="reid-val")

    def val_score(f):
        m = rank_features(f, val["query"], val["gallery"], val["pids"], val["camids"])
        return {"R1": round(m["R1"], 2), "mAP": round(m["mAP"], 2)}

    result: dict = {"validation": {}, "test_R1_with_camera_centring": {}}
    for name, p in projs.items():
        c = project(val_colour, p)
        result["validation"][name] = {"alone": val_score(c), **{
            f"w={w}": val_score(np.concatenate([np.sqrt(1 - w) * val_head, np.sqrt(w) * c], 1))
            for w in WEIGHTS}}
        print(name, result["validation"][name], flush=True)
    for ds in ("viper", "prid", "grid"):
        trials = reid_trials(ds, args.root, 10, 0)
        items, index, _ = trial_images(trials)
        h = head_embeddings(head, pooled_features(model, items, flip=True,
                                                  cache_root=args.cache / "pooled",
                                                  name=f"reid-{ds}"), True)
        desc = lomo_features(items, cache_root=args.cache / "colour", name=f"reid-{ds}")
        feats = {}
        for name, p in projs.items():
            c = project(desc, p)
            feats[name] = c
            feats.update({f"{name} w={w}": np.concatenate([np.sqrt(1 - w) * h, np.sqrt(w) * c], 1)
                          for w in WEIGHTS})
        res = evaluate_trials(feats, trials, index, camera_centring=True)
        result["test_R1_with_camera_centring"][ds] = {
            k[:-len("+camera")]: metrics_entry(v)["R1"] for k, v in res.items() if k.endswith("+camera")}
        print(ds, result["test_R1_with_camera_centring"][ds], flush=True)
    best = max(((n, w) for n in result["validation"] for w in result["validation"][n] if w != "alone"),
               key=lambda nw: sum(result["validation"][nw[0]][nw[1]].values()))
    result["chosen_on_validation"] = {"projection": best[0], "weight": best[1],
                                      "by": "R1 + mAP on the validation domains"}
    result["meta"] = {"par": str(args.par) if args.par else "shipped:par-peta", "reid_head": head_src,
                      "validation": f"PETA {', '.join(VAL_DOMAINS)} (held out of training)",
                      "projections_fitted_on": "CUHK03-subset train, PETA " + ", ".join(subsets)}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"chosen on validation: {best}; wrote {args.json}")


if __name__ == "__main__":
    main()
