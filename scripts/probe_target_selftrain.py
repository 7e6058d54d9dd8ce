"""Probe: does self-training the attribute head on the user's unlabelled crops help on new cameras?

A candidate for ``personlens adapt`` beyond thresholds and normalisation statistics (issue 12,
item 3), measured before anything is built into the command. On a fold model and its held-out
cameras' images (the validation fold by default, never a test fold for choosing):

1. the encoder runs once over each crop, its mirror image and ``--views`` pixel-augmented
   copies (``PixelAugment``, as in training); the tokens are kept in memory;
2. the teacher is the model as trained: its flip-averaged probabilities on the clean crops;
3. a copy of the attribute head (the encoder stays as it is) learns on the tokens of the
   mirrored and augmented views to give the teacher's targets (soft, or sharpened by
   ``--temperature`` < 1), for ``--epochs`` passes, pulled towards its starting weights
   (``--anchor``, L2-SP) so that it cannot drift far from what PETA taught it;
4. scored with the labels, which nothing above read: mA / F1 with the model's calibrated
   thresholds, and the mean AUC (threshold-free: what the head ranks better or worse).

    .venv/bin/python scripts/probe_target_selftrain.py --root ../shared/data/PETA \\
        --model runs/val-lite2-aug2/cuhk --json docs/results/probe_target_selftrain_cuhk.json
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from personlens.data.augment import PixelAugment
from personlens.data.images import load_image
from personlens.eval.metrics import threshold_and_ranking as score
from personlens.eval.unseen import fold, fold_datasets
from personlens.inference.predict import AttributePredictor


@torch.no_grad()
def view_tokens(predictor, images, views: int, seed: int, batch: int = 32):
    """(N, 2 + views, T, C) float16 tokens (view 0 clean, 1 mirror, then augmented copies)
    and the teacher's (N, A) flip-averaged probabilities on the clean crops."""
    enc, aug, rng = predictor.encoder, PixelAugment(), np.random.default_rng(seed)
    toks, probs = [], []
    for i in tqdm(range(0, len(images), batch), desc="encoding views", unit="batch", file=sys.stderr):
        ims = images[i:i + batch]
        out = enc(ims, mirror=True)
        b = len(ims)
        per = [out.tokens[:b], out.tokens[b:]]
        for _ in range(views):
            # the model's flip TTA adds a mirror view to every pass: keep the first view only
            per.append(enc([aug(im, rng) for im in ims], probs=False).tokens[:b])
        toks.append(torch.stack([t.float() for t in per], 1).half())
        probs.append(out.probs)
    return torch.cat(toks), np.concatenate(probs)


def self_train(head, tokens, targets, *, epochs: int, lr: float, anchor: float, seed: int,
               batch: int = 64):
    """A copy of ``head`` trained on the non-clean views towards ``targets`` (N, A)."""
    student = copy.deepcopy(head).train()
    start = [p.detach().clone() for p in student.parameters()]
    opt = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    n, v = tokens.shape[0], tokens.shape[1]
    y = torch.as_tensor(targets, dtype=torch.float32)
    for _ in range(epochs):
        for idx in torch.randperm(n, generator=g).split(batch):
            view = torch.randint(1, v, (len(idx),), generator=g)        # never the clean view
            x = tokens[idx, view].float()
            loss = F.binary_cross_entropy_with_logits(student(x), y[idx])
            if anchor:
                loss = loss + anchor * sum(((p - s) ** 2).sum() for p, s in zip(student.parameters(), start))
            opt.zero_grad()
            loss.backward()
            opt.step()
    return student.eval()


@torch.no_grad()
def head_probs(head, tokens) -> np.ndarray:
    """Flip-averaged probabilities of ``head`` on the clean and mirror views."""
    out = []
    for t in tokens.split(256):
        p = torch.sigmoid(head(t[:, 0].float())) + torch.sigmoid(head(t[:, 1].float()))
        out.append((p / 2).numpy())
    return np.concatenate(out)


def sharpen(p: np.ndarray, temperature: float) -> np.ndarray:
    if temperature == 1.0:
        return p
    logit = np.log(np.clip(p, 1e-6, 1 - 1e-6)) - np.log(np.clip(1 - p, 1e-6, 1))
    return 1 / (1 + np.exp(-logit / temperature))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", required=True)
    ap.add_argument("--model", required=True, help="a fold model folder (runs/<run>/<fold>)")
    ap.add_argument("--fold", default="cuhk")
    ap.add_argument("--split", default="test_unseen", choices=["test_unseen", "val_unseen"])
    ap.add_argument("--views", type=int, default=2)
    ap.add_argument("--epochs", type=int, nargs="+", default=[1, 3])
    ap.add_argument("--lr", type=float, nargs="+", default=[1e-4, 3e-4])
    ap.add_argument("--anchor", type=float, default=1e-3)
    ap.add_argument("--temperature", type=float, nargs="+", default=[1.0, 0.5])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", required=True)
    a = ap.parse_args(argv)
    torch.manual_seed(a.seed)

    predictor = AttributePredictor(a.model, precision="fp32")
    data = fold_datasets(a.root, fold(a.fold), attributes=list(predictor.names))[a.split]
    names = list(data.schema.names)
    cols = [predictor.names.index(n) for n in names]
    th = predictor.base_thresholds[cols]
    t0 = time.perf_counter()
    images = [load_image(p) for p in data.paths]
    tokens, teacher = view_tokens(predictor, images, a.views, a.seed)
    encode_s = time.perf_counter() - t0
    head = predictor.model.head
    base = head_probs(head, tokens)
    rows = [{"setting": "as trained", **score(base[:, cols], data.labels, names, th)}]
    print(rows[-1], flush=True)
    for temp in a.temperature:
        for lr in a.lr:
            for ep in a.epochs:
                t1 = time.perf_counter()
                student = self_train(head, tokens, sharpen(teacher, temp), epochs=ep, lr=lr,
                                     anchor=a.anchor, seed=a.seed)
                p = head_probs(student, tokens)
                rows.append({"setting": f"temperature {temp}, lr {lr}, {ep} epochs",
                             "temperature": temp, "lr": lr, "epochs": ep,
                             "seconds": round(time.perf_counter() - t1, 1),
                             **score(p[:, cols], data.labels, names, th)})
                print(rows[-1], flush=True)
    out = {"model": a.model, "fold": a.fold, "split": a.split, "images": len(images),
           "views": a.views, "anchor": a.anchor, "seed": a.seed,
           "encode_seconds": round(encode_s, 1), "rows": rows,
           "command": "python scripts/probe_target_selftrain.py " + " ".join(argv or sys.argv[1:])}
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(out, indent=2))
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
