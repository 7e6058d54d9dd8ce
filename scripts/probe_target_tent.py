"""Probe: does test-time adaptation of the encoder's normalisation layers help on new cameras?

``personlens adapt`` moves thresholds and (opt-in) normalisation statistics; thresholds
cannot change how the scores *rank* people (the ``adabn_top`` rows measure what statistics
do), and self-training the attribute head on the user's crops did not either (``scripts/probe_target_selftrain.py``: mean AUC unchanged). This probe tries the
next step (issue 12, item 3), before anything is built into the command: TENT (Wang et al.,
ICLR 2021), which learns the scale and shift of the BatchNorm layers of the encoder's
trainable top on the unlabelled crops by making the predictions more confident (binary
entropy, per attribute). Entropy alone can collapse (every crop "no hat, no backpack"), so a
second loss can hold each attribute's mean prediction over a batch at its value before
adaptation (a binary KL; SHOT's diversity term, Liang et al. 2020, for multi-label outputs).

On a fold model and its held-out cameras' images (the validation fold by default, never a
test fold for choosing):

1. the frozen lower stages run once over each crop and its mirror image (kept in memory);
2. a copy of the model learns the BatchNorm scale and shift of its top stages (statistics as
   trained, everything else fixed) for ``--epochs`` passes over the crops, a random one of
   the two views per crop;
3. scored with the labels, which nothing above read: mA / F1 with the model's calibrated
   thresholds, and the mean AUC (threshold-free).

    .venv/bin/python scripts/probe_target_tent.py --root ../shared/data/PETA \\
        --model runs/val-lite2-aug2/cuhk --json docs/results/probe_target_tent_cuhk.json
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
from torch import nn
from tqdm import tqdm

from personlens.data.images import load_image
from personlens.eval.metrics import threshold_and_ranking as score
from personlens.eval.unseen import fold, fold_datasets
from personlens.inference.predict import AttributePredictor


@torch.no_grad()
def lower_features(model, preprocess, images, batch: int = 32) -> torch.Tensor:
    """(N, 2, C, H, W) float16 inputs of the model's trainable top (view 1: the mirror)."""
    out = []
    for i in tqdm(range(0, len(images), batch), desc="lower stages", unit="batch", file=sys.stderr):
        x = torch.stack([preprocess(im) for im in images[i:i + batch]])
        h = model.encoder.forward_lower(torch.cat([x, x.flip(-1)]), model.config.stage)
        b = len(x)
        out.append(torch.stack([h[:b], h[b:]], 1).half())
    return torch.cat(out)


def top_norm_parameters(model) -> list[nn.Parameter]:
    """Scale and shift of every BatchNorm layer the model's top stages run through."""
    upper = {id(p) for p in model.encoder.upper_parameters(model.config.stage)}
    return [p for m in model.encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            for p in (m.weight, m.bias) if p is not None and id(p) in upper]


def binary_entropy(p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(1e-6, 1 - 1e-6)
    return -(p * p.log() + (1 - p) * (1 - p).log())


def binary_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(Bernoulli(p) || Bernoulli(q)), elementwise."""
    p, q = p.clamp(1e-6, 1 - 1e-6), q.clamp(1e-6, 1 - 1e-6)
    return p * (p / q).log() + (1 - p) * ((1 - p) / (1 - q)).log()


def tent(model, feats: torch.Tensor, *, epochs: int, lr: float, marginal: float,
         start_mean: torch.Tensor | None = None, seed: int = 0, batch: int = 64):
    """A copy of ``model`` whose top-stage BatchNorm scale and shift learned to make its
    predictions on ``feats`` (from ``lower_features``) confident; ``marginal`` weighs the
    term that holds the batch's mean prediction per attribute at ``start_mean``."""
    if marginal and start_mean is None:
        raise ValueError("the mean-prediction term needs start_mean")
    student = copy.deepcopy(model).eval()      # eval: statistics as trained, no drop-connect
    for p in student.parameters():
        p.requires_grad_(False)
    params = top_norm_parameters(student)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    g = torch.Generator().manual_seed(seed)
    n = feats.shape[0]
    for _ in range(epochs):
        for idx in torch.randperm(n, generator=g).split(batch):
            view = torch.randint(0, feats.shape[1], (len(idx),), generator=g)
            p = torch.sigmoid(student.forward_from_stage(feats[idx, view].float()))
            loss = binary_entropy(p).mean()
            if marginal:
                loss = loss + marginal * binary_kl(p.mean(0), start_mean).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    for p in params:
        p.requires_grad_(False)
    return student


@torch.no_grad()
def adabn_top(model, feats: torch.Tensor, prior: float, batch: int = 64):
    """A copy of ``model`` whose top-stage BatchNorm statistics are re-estimated on ``feats``
    and blended with the trained ones, the trained weighing as ``prior`` views (a crop and
    its mirror are two): AdaBN with Schneider et al.'s source prior, as ``adapt
    --normalisation`` does, here on the top only. Does new normalisation change how the
    scores rank people, or only where they lie?"""
    student = copy.deepcopy(model).eval()
    upper = {id(p) for p in student.encoder.upper_parameters(student.config.stage)}
    layers = [m for m in student.encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
              and m.weight is not None and id(m.weight) in upper]
    source = [(m.running_mean.clone(), m.running_var.clone()) for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None              # cumulative average over every batch
        m.train()
    for f in feats.flatten(0, 1).split(batch):
        student.forward_from_stage(f.float())
    w = feats.shape[0] * feats.shape[1] / (feats.shape[0] * feats.shape[1] + prior)
    for m, (mean, var) in zip(layers, source):
        m.running_mean.copy_((1 - w) * mean + w * m.running_mean)
        m.running_var.copy_((1 - w) * var + w * m.running_var)
        m.eval()
    return student


@torch.no_grad()
def flip_probs(model, feats: torch.Tensor, batch: int = 128) -> np.ndarray:
    """Probabilities averaged over the two views, (N, A)."""
    out = []
    for f in feats.split(batch):
        p = sum(torch.sigmoid(model.forward_from_stage(f[:, v].float())) for v in range(f.shape[1]))
        out.append((p / f.shape[1]).numpy())
    return np.concatenate(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", required=True)
    ap.add_argument("--model", required=True, help="a fold model folder (runs/<run>/<fold>)")
    ap.add_argument("--fold", default="cuhk")
    ap.add_argument("--split", default="test_unseen", choices=["test_unseen", "val_unseen"])
    ap.add_argument("--epochs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--lr", type=float, nargs="+", default=[1e-4, 1e-3])
    ap.add_argument("--marginal", type=float, nargs="*", default=[0.0, 1.0],
                    help="weights of the mean-prediction term; none: no TENT rows")
    ap.add_argument("--adabn-prior", type=float, nargs="*", default=[16.0, 256.0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", required=True)
    a = ap.parse_args(argv)
    torch.manual_seed(a.seed)

    predictor = AttributePredictor(a.model, precision="fp32")
    model = predictor.model
    data = fold_datasets(a.root, fold(a.fold), attributes=list(predictor.names))[a.split]
    names = list(data.schema.names)
    cols = [predictor.names.index(n) for n in names]
    th = predictor.base_thresholds[cols]
    t0 = time.perf_counter()
    feats = lower_features(model, predictor.preprocess, [load_image(p) for p in data.paths])
    encode_s = time.perf_counter() - t0
    base = flip_probs(model, feats)
    start_mean = torch.as_tensor(base.mean(0), dtype=torch.float32)
    rows = [{"setting": "as trained", **score(base[:, cols], data.labels, names, th)}]
    print(rows[-1], flush=True)
    for prior in a.adabn_prior:
        p = flip_probs(adabn_top(model, feats, prior), feats)
        rows.append({"setting": f"AdaBN of the top, source prior {prior:g}", "adabn_prior": prior,
                     **score(p[:, cols], data.labels, names, th)})
        print(rows[-1], flush=True)
    for marginal in a.marginal:
        for lr in a.lr:
            for ep in a.epochs:
                t1 = time.perf_counter()
                student = tent(model, feats, epochs=ep, lr=lr, marginal=marginal,
                               start_mean=start_mean, seed=a.seed)
                p = flip_probs(student, feats)
                rows.append({"setting": f"marginal {marginal}, lr {lr}, {ep} epochs",
                             "marginal": marginal, "lr": lr, "epochs": ep,
                             "seconds": round(time.perf_counter() - t1, 1),
                             **score(p[:, cols], data.labels, names, th)})
                print(rows[-1], flush=True)
    out = {"model": a.model, "fold": a.fold, "split": a.split, "images": len(data.paths),
           "seed": a.seed, "threads": torch.get_num_threads(),
           "lower_stage_seconds": round(encode_s, 1), "rows": rows,
           "command": "python scripts/probe_target_tent.py " + " ".join(argv or sys.argv[1:])}
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(out, indent=2))
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
