"""MixStyle on the encoder's trainable top (Zhou et al., "Domain Generalization with
MixStyle", ICLR 2021): a training-time augmentation of feature statistics.

A camera shows in a feature map's per-channel mean and spread (colour cast, contrast,
blur, noise) more than in the normalised map (shapes and layout). Re-styling each map with
statistics mixed between it and another image of the batch, which in PETA is usually from
another sub-dataset and so another camera, shows the top "cameras" between the ones it has.
It works on the cached lower-stage features, where pixel augmentation cannot reach, and
costs a few reductions per step. Inference never mixes.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["mix_styles", "MixStyleHooks"]


def mix_styles(x: torch.Tensor, p: float, alpha: float = 0.1, eps: float = 1e-6) -> torch.Tensor:
    """With probability ``p`` (per batch), give every map of ``x`` (B, C, H, W) the channel
    statistics ``lam * own + (1 - lam) * other's`` for a random other map of the batch,
    ``lam ~ Beta(alpha, alpha)`` per map. Draws from torch's generator (seeded by training)."""
    b = x.shape[0]
    if p <= 0 or b < 2 or float(torch.rand(())) >= p:
        return x
    # statistics are not back-propagated through: the mixed style is an input, not a target
    mu = x.mean((2, 3), keepdim=True).detach()
    sig = (x.var((2, 3), keepdim=True) + eps).sqrt().detach()
    lam = torch.distributions.Beta(alpha, alpha).sample((b, 1, 1, 1)).to(x.dtype)
    perm = torch.randperm(b)
    mu_mix = lam * mu + (1 - lam) * mu[perm]
    sig_mix = lam * sig + (1 - lam) * sig[perm]
    return (x - mu) / sig * sig_mix + mu_mix


class MixStyleHooks:
    """Mix styles at the output of ``modules`` while they train (forward hooks); ``remove``
    takes the hooks off. A module in eval mode passes its output through unchanged."""

    def __init__(self, modules: list[nn.Module], p: float, alpha: float = 0.1):
        self.p, self.alpha = p, alpha
        self._handles = [m.register_forward_hook(self._hook) for m in modules]

    def _hook(self, module: nn.Module, inputs, output):
        return mix_styles(output, self.p, self.alpha) if module.training else output

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
