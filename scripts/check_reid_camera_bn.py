"""Camera-based batch normalisation at test time: does it beat per-camera centring?

    .venv/bin/python scripts/check_reid_camera_bn.py --par runs/par-clean \
        --reid-head runs/reid-clean --datasets grid --json runs/reid-clean/camera_bn.json

For each camera, every BN layer of the encoder gets statistics re-estimated on that camera's
images and their mirrors (no labels; Zhuang et al., ECCV 2020), then that camera's images are
embedded with them. Scored (10 trials, Rank-1) for the re-ID head, the encoder's mean-pooled
tokens and the raw ImageNet encoder, each without and with per-camera centring of the output.
The statistics use all of a dataset's images from the camera (its unlabeled footage), not one
trial's. Slow: every image is encoded twice per encoder (~10 min for GRID on 2 cores).
"""
from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import torch

from personlens.data.images import Preprocess
from personlens.eval.reid import load_reid_models, rank1_by_method, reid_trials, trial_images
from personlens.models.factory import create_image_encoder
from personlens.inference.pooled import (PreprocessedImages, head_embeddings,
                                         mean_pooled_embeddings, pooled_features)


@torch.no_grad()
def pooled_with_camera_bn(encoder, images: torch.Tensor, batch: int = 64) -> np.ndarray:
    """``(N, 2, 2C)`` [mean, max] tokens of images and mirrors, BN statistics from them."""
    enc = copy.deepcopy(encoder)
    for m in enc.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None           # cumulative average over all batches
            m.train()
    both = torch.cat([images, images.flip(-1)])
    for s in range(0, len(both), batch):
        enc(both[s:s + batch])
    enc.eval()
    out = []
    for s in range(0, len(images), batch):
        b = images[s:s + batch]
        t = enc(torch.cat([b, b.flip(-1)])).float()
        p = torch.cat([t.mean(1), t.amax(1)], -1)
        out.append(torch.stack([p[:len(b)], p[len(b):]], 1))
    return torch.cat(out).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--par", type=Path, default=None, help="PAR model directory (default: shipped)")
    ap.add_argument("--reid-head", type=Path, default=None, help="re-ID head (default: shipped)")
    ap.add_argument("--root", type=Path, default=Path("../shared/data/PETA"))
    ap.add_argument("--datasets", default="grid,viper,prid")
    ap.add_argument("--cache", type=Path, default=Path("cache/pooled"))
    ap.add_argument("--json", type=Path, required=True)
    args = ap.parse_args()

    model, head, head_src = load_reid_models(args.par, args.reid_head or "default")
    if head is None:
        raise SystemExit("no re-ID head for this PAR model: pass --reid-head")
    pre = Preprocess.from_dict(model.config.preprocess)
    imagenet = create_image_encoder(model.config.encoder, pretrained=True, preprocess=pre).freeze()
    out = {"par": str(args.par or "shipped"), "reid_head": head_src, "rank1": {}}
    for ds in args.datasets.split(","):
        trials = reid_trials(ds, args.root, 10, 0)
        items, index, cams = trial_images(trials)
        loader = PreprocessedImages(items, pre)
        images = torch.stack([loader[i] for i in range(len(items))])
        pooled = pooled_features(model, items, flip=True, cache_root=args.cache, name=f"reid-{ds}")
        base = pooled_features(imagenet, items, flip=True, cache_root=args.cache, name=f"reid-{ds}")
        bn = np.zeros(pooled.shape, np.float32)
        bn_imagenet = np.zeros(base.shape, np.float32)
        for c in np.unique(cams):
            rows = np.where(cams == c)[0]
            bn[rows] = pooled_with_camera_bn(model.encoder, images[rows])
            bn_imagenet[rows] = pooled_with_camera_bn(imagenet, images[rows])
        feats = {"head": head_embeddings(head, pooled, True),
                 "head camera-BN": head_embeddings(head, bn, True),
                 "encoder": mean_pooled_embeddings(pooled, True),
                 "encoder camera-BN": mean_pooled_embeddings(bn, True),
                 "imagenet": mean_pooled_embeddings(base, True),
                 "imagenet camera-BN": mean_pooled_embeddings(bn_imagenet, True)}
        out["rank1"][ds] = rank1_by_method(feats, trials, index)
        print(ds, out["rank1"][ds], flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
