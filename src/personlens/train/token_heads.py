"""Attribute heads trained on cached encoder tokens: the head ablation of issue 15.

Every head (``models.factory.build_head``: linear, cross_attention, vim, vim_uni, vim_text,
transformer, transformer_text, hybrid) is trained on the same ``inference.tokens`` cache of
one fixed encoder, with the same schedule (AdamW, warm-up then cosine), the same data
(each step draws the image or its mirror), its epoch chosen by val mA + F1 (mirror-averaged
probabilities), thresholds calibrated on val; test is scored once, at the end, at 0.5 and
calibrated. ``run_head`` returns the head and a JSON-ready report.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from tqdm import tqdm

from ..eval.metrics import calibrate_thresholds, par_metrics
from ..models.factory import build_head, head_needs
from ..models.par import HeadConfig
from .losses import LOSS_PRESETS, par_loss
from .par import warmup_cosine

METRICS = ("mA", "accuracy", "precision", "recall", "f1")


@dataclass
class HeadRun:
    kind: str
    seed: int = 0
    epochs: int = 12
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    loss: str = "wce"
    layers: int = 2
    embed_dim: int = 256
    d_state: int = 8
    expand: int = 1
    calibration: str = "joint"

    def head_config(self, tokens: int) -> HeadConfig:
        return HeadConfig(kind=self.kind, embed_dim=self.embed_dim, layers=self.layers,
                          d_state=self.d_state, expand=self.expand, tokens=tokens)


def _metrics(probs, labels, names, th=0.5) -> dict:
    m = par_metrics(probs, labels, names, th)
    return {k: getattr(m, k) for k in METRICS}


@torch.inference_mode()
def predict(head, tokens: np.ndarray, batch: int = 256) -> np.ndarray:
    """Mirror-averaged probabilities ``(N, A)`` from cached tokens ``(N, 2, T, C)``."""
    head.eval()
    out = []
    for i in range(0, len(tokens), batch):
        t = torch.from_numpy(np.asarray(tokens[i:i + batch], np.float32))
        p = torch.sigmoid(head(t[:, 0])) + torch.sigmoid(head(t[:, 1]))
        out.append(p / 2)
    return torch.cat(out).numpy()


def run_head(run: HeadRun, data: dict, names: list[str], prompts: torch.Tensor | None,
             log=print, progress: bool = True):
    """Train ``run`` on ``data['train']`` (tokens, labels), choose on ``'val'``, score on
    ``'test'``. Returns ``(head, report)``."""
    torch.manual_seed(run.seed)
    rng = np.random.default_rng(run.seed)
    x_tr, y_tr = data["train"]
    x_va, y_va = data["val"]
    n, _, t, c = x_tr.shape
    use_prompts, _ = head_needs(run.kind)
    cfg = run.head_config(t)
    head = build_head(c, prompts if use_prompts else None, len(names), cfg)
    loss_cfg = replace(LOSS_PRESETS[run.loss])
    y_train = torch.from_numpy(np.asarray(y_tr, np.float32))
    pos_rate = y_train.mean(0)
    opt = torch.optim.AdamW(head.parameters(), lr=run.lr, weight_decay=run.weight_decay)
    steps = math.ceil(n / run.batch_size)
    total, warmup = run.epochs * steps, max(1, steps // 2)
    sched = warmup_cosine(opt, warmup, total)
    best, best_state, best_probs, history = -1.0, None, None, []
    t0 = time.time()
    for epoch in range(run.epochs):
        head.train()
        order = rng.permutation(n)
        running = 0.0
        bar = tqdm(range(steps), desc=f"{run.kind} s{run.seed} epoch {epoch + 1}/{run.epochs}",
                   unit="step", leave=False, disable=not progress)
        for s in bar:
            b = np.sort(order[s * run.batch_size:(s + 1) * run.batch_size])   # sorted: memmap reads
            view = rng.integers(0, 2, size=len(b))
            x = torch.from_numpy(np.asarray(x_tr[b], np.float32)[np.arange(len(b)), view])
            loss = par_loss(head(x), y_train[b], loss_cfg, pos_rate)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            running += loss.item()
            bar.set_postfix(loss=f"{running / (s + 1):.3f}")
        probs = predict(head, x_va)
        m = _metrics(probs, y_va, names)
        history.append({"epoch": epoch + 1, "loss": running / steps, "val_mA": m["mA"],
                        "val_f1": m["f1"], "seconds": round(time.time() - t0, 1)})
        log(f"{run.kind} seed {run.seed} epoch {epoch + 1}: loss {running / steps:.3f}  "
            f"val mA {m['mA']:.2f}  F1 {m['f1']:.2f}")
        if m["mA"] + m["f1"] > best:
            best, best_probs = m["mA"] + m["f1"], probs
            best_state = {k: v.detach().clone() for k, v in head.state_dict().items()}
    head.load_state_dict(best_state)
    head.eval()
    th = calibrate_thresholds(best_probs, y_va, run.calibration)
    x_te, y_te = data["test"]
    p_te = predict(head, x_te)
    report = {
        "run": asdict(run), "head_config": asdict(cfg),
        "parameters": sum(p.numel() for p in head.parameters()),
        "history": history, "best_epoch": int(np.argmax([h["val_mA"] + h["val_f1"] for h in history]) + 1),
        "thresholds": [float(v) for v in th],
        "val_fixed": _metrics(best_probs, y_va, names), "val_calibrated": _metrics(best_probs, y_va, names, th),
        "test_fixed": _metrics(p_te, y_te, names), "test_calibrated": _metrics(p_te, y_te, names, th),
        "train_seconds": round(time.time() - t0, 1),
    }
    return head, report


@torch.inference_mode()
def head_speed(head, tokens: int, dim: int, repeats: int = 20) -> dict:
    """The head alone on random tokens (mirror view included, as at inference): median ms
    per crop at batch 1, crops/s at batch 32."""
    head.eval()
    out = {}
    for b in (1, 32):
        x = torch.randn(2 * b, tokens, dim)
        head(x)
        times = []
        for _ in range(repeats if b == 1 else max(3, repeats // 4)):
            t0 = time.perf_counter()
            head(x)
            times.append(time.perf_counter() - t0)
        med = float(np.median(times))
        out["ms_per_crop_b1" if b == 1 else "crops_per_s_b32"] = 1000 * med if b == 1 else b / med
    return out
