"""PAR loss: binary cross-entropy + focal term, with label smoothing and imbalance weights.

Two presets (``train attributes --loss``): ``ce_focal``, VLM-PAR's CE + focal + label
smoothing with imbalance weights (the default), and ``wce``, the weighted cross-entropy of
the Mamba PAR study: positives weighted by exp(1 - r), negatives by exp(r), nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class LossConfig:
    ce_weight: float = 1.0
    focal_weight: float = 1.0
    focal_gamma: float = 2.0
    label_smoothing: float = 0.1
    balance: bool = True  # weight positives by exp(1 - r), negatives by exp(r) (r = positive rate)


def imbalance_weights(targets: torch.Tensor, pos_rate: torch.Tensor) -> torch.Tensor:
    """Per-element weights that stop rare attributes from being ignored (Li et al., DeepMAR)."""
    return torch.where(targets > 0.5, torch.exp(1 - pos_rate), torch.exp(pos_rate))


def par_loss(logits: torch.Tensor, targets: torch.Tensor, cfg: LossConfig,
             pos_rate: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the batch of the per-sample sum over attributes.

    Binary CE over one logit is the two-class cross-entropy; label smoothing moves the
    targets towards 0.5, the focal term down-weights easy examples.
    """
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ")
    s = cfg.label_smoothing
    smooth = targets * (1 - s) + 0.5 * s
    bce = F.binary_cross_entropy_with_logits(logits, smooth, reduction="none")
    loss = cfg.ce_weight * bce
    if cfg.focal_weight:
        p = torch.sigmoid(logits)
        p_true = torch.where(targets > 0.5, p, 1 - p)
        loss = loss + cfg.focal_weight * (1 - p_true).pow(cfg.focal_gamma) * bce
    if cfg.balance and pos_rate is not None:
        loss = loss * imbalance_weights(targets, pos_rate)
    return loss.sum(1).mean()


LOSS_PRESETS = {
    "ce_focal": LossConfig(),
    "wce": LossConfig(ce_weight=1.0, focal_weight=0.0, label_smoothing=0.0, balance=True),
}
