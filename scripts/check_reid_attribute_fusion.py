"""Does adding attribute probabilities to the re-ID embedding help on unseen cameras?

    .venv/bin/python scripts/check_reid_attribute_fusion.py --par runs/par-clean \
        --reid-head runs/reid-clean --json runs/reid-clean/attribute_fusion.json

For each attribute weight w, the embedding is ``[sqrt(1 - w) * re-ID head, sqrt(w) * centred
attribute probabilities]`` (each part a unit vector), scored on VIPeR, PRID and GRID (10 trials)
without and with per-camera centring. Run it with a PAR model that never saw these sub-datasets
(``personlens train attributes --exclude-subsets VIPeR,PRID,GRID``); with the shipped one,
the attribute labels of the test people leak in through the encoder.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from personlens.eval.reid import load_reid_models, rank1_by_method, reid_trials, trial_images
from personlens.models.camera_norm import unit_rows
from personlens.inference.pooled import head_embeddings, pooled_features

WEIGHTS = (0.0, 0.2, 0.35, 0.5)



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--par", type=Path, default=None, help="PAR model directory (default: shipped)")
    ap.add_argument("--reid-head", type=Path, default=None, help="re-ID head (default: shipped)")
    ap.add_argument("--root", type=Path, default=Path("../shared/data/PETA"))
    ap.add_argument("--cache", type=Path, default=Path("cache/pooled"))
    ap.add_argument("--json", type=Path, required=True)
    args = ap.parse_args()

    model, head, head_src = load_reid_models(args.par, args.reid_head or "default")
    if head is None:
        raise SystemExit("no re-ID head for this PAR model: pass --reid-head")
    out = {"par": str(args.par or "shipped"), "reid_head": head_src, "weights": WEIGHTS,
           "rank1": {}}
    for ds in ("viper", "prid", "grid"):
        trials = reid_trials(ds, args.root, 10, 0)
        items, index, _ = trial_images(trials)
        pooled, probs = pooled_features(model, items, flip=True, cache_root=args.cache,
                                        name=f"reid-{ds}", probs=True)
        emb = head_embeddings(head, pooled, True)
        attrs = unit_rows(probs - probs.mean(0))
        feats = {f"w={w}": unit_rows(np.concatenate([np.sqrt(1 - w) * emb, np.sqrt(w) * attrs], 1))
                 for w in WEIGHTS}
        out["rank1"][ds] = rank1_by_method(feats, trials, index)
        print(ds, out["rank1"][ds], flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
