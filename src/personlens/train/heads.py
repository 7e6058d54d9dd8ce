"""Shared pieces for training embedding heads on pooled features (search and re-ID).

* :class:`Standardize`: per-dimension standardisation of the pooled inputs during training,
  folded into the head's first linear layer when saving (:func:`fold_input_standardization`),
  so the saved ``EmbeddingHead`` is unchanged in shape and exact.
* :func:`fold_output_affine`: fold a per-dimension affine map on the head's output (a BNNeck's
  inference-mode BatchNorm) into its last linear layer.

The fingerprint of the encoder a head was trained on (``models.hub.encoder_fingerprint``)
is recorded in every trained head's config.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn



def _first_last_linear(head) -> tuple[nn.Linear, nn.Linear]:
    proj = head.proj
    if isinstance(proj, nn.Linear):
        return proj, proj
    linears = [m for m in proj.modules() if isinstance(m, nn.Linear)]
    return linears[0], linears[-1]


class Standardize(nn.Module):
    """``(x - mean) / std`` per input dimension (statistics from the training features)."""

    def __init__(self, mean: np.ndarray, std: np.ndarray):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(np.asarray(mean, np.float32)))
        self.register_buffer("std", torch.as_tensor(np.asarray(std, np.float32)))

    @classmethod
    def fit(cls, pooled: np.ndarray, eps: float = 1e-3, max_rows: int = 20000,
            seed: int = 0) -> "Standardize":
        """Statistics over all views of (at most ``max_rows``) training images."""
        x = np.asarray(pooled)
        if len(x) > max_rows:
            x = x[np.sort(np.random.default_rng(seed).choice(len(x), max_rows, replace=False))]
        x = x.reshape(-1, x.shape[-1]).astype(np.float32)
        return cls(x.mean(0), x.std(0) + eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


@torch.no_grad()
def fold_input_standardization(head, std: Standardize) -> None:
    """Make ``head.forward_pooled(x)`` equal what it computed on ``std(x)`` (in place)."""
    first, _ = _first_last_linear(head)
    w = first.weight / std.std[None, :]
    first.bias.sub_(w @ std.mean)
    first.weight.copy_(w)


@torch.no_grad()
def fold_output_affine(head, scale: torch.Tensor, shift: torch.Tensor) -> None:
    """Make the head's last linear layer output ``scale * y + shift`` (in place)."""
    _, last = _first_last_linear(head)
    last.weight.mul_(scale[:, None])
    last.bias.mul_(scale).add_(shift)


@torch.no_grad()
def fold_batchnorm(head, bn: nn.BatchNorm1d) -> None:
    """Fold an inference-mode ``BatchNorm1d`` on the head's output into its last layer."""
    scale = (bn.weight if bn.affine else torch.ones_like(bn.running_var)) / torch.sqrt(
        bn.running_var + bn.eps)
    shift = (bn.bias if bn.affine and bn.bias is not None else 0) - bn.running_mean * scale
    fold_output_affine(head, scale, shift)


def cosine_schedule(opt: torch.optim.Optimizer, total_steps: int, warmup_steps: int):
    """Linear warm-up, then cosine decay to zero."""
    warmup_steps = max(1, warmup_steps)
    total_steps = max(total_steps, warmup_steps + 1)

    def f(s):
        if s < warmup_steps:
            return (s + 1) / warmup_steps
        t = (s - warmup_steps) / (total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return torch.optim.lr_scheduler.LambdaLR(opt, f)
