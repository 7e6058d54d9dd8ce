"""The target self-training probe: sharpening, and a head copy that learns its targets."""
from __future__ import annotations

import numpy as np
import torch
from script_testlib import load_script
from torch import nn

probe = load_script("scripts/probe_target_selftrain.py")


class MeanLinear(nn.Module):
    """A tiny stand-in for an attribute head: (B, N, C) tokens -> (B, A) logits."""

    def __init__(self, c: int = 4, a: int = 3):
        super().__init__()
        self.fc = nn.Linear(c, a)

    def forward(self, t):
        return self.fc(t.mean(1))


def test_sharpen_keeps_order_and_one_half_and_moves_away_from_it():
    p = np.array([0.1, 0.4, 0.5, 0.7, 0.95])
    assert np.array_equal(probe.sharpen(p, 1.0), p)
    s = probe.sharpen(p, 0.5)
    assert s[2] == 0.5
    assert np.all(np.diff(s) > 0)
    assert np.all(np.abs(s - 0.5) >= np.abs(p - 0.5))
    assert s[0] < p[0] and s[-1] > p[-1]


def test_self_train_fits_targets_on_the_other_views_and_leaves_the_head_alone():
    torch.manual_seed(0)
    head = MeanLinear()
    before = [p.detach().clone() for p in head.parameters()]
    base = torch.randn(64, 1, 5, 4)
    tokens = (base + 0.1 * torch.randn(64, 3, 5, 4)).half()   # (N, views, T, C): noisy copies
    # targets a linear map of the tokens can give: the head has something to learn
    targets = torch.sigmoid(3 * tokens[:, 0].float().mean(1)[:, :3]).numpy()
    loss = lambda h: nn.functional.binary_cross_entropy_with_logits(   # noqa: E731
        h(tokens[:, 1].float()), torch.as_tensor(targets)).item()
    student = probe.self_train(head, tokens, targets, epochs=30, lr=1e-2, anchor=0.0, seed=0)
    assert loss(student) < loss(head) - 0.05
    assert all(torch.equal(a, b) for a, b in zip(before, head.parameters()))
    anchored = probe.self_train(head, tokens, targets, epochs=30, lr=1e-2, anchor=10.0, seed=0)
    moved = lambda h: sum(((p - b) ** 2).sum().item() for p, b in zip(h.parameters(), before))  # noqa: E731
    assert moved(anchored) < moved(student)


def test_head_probs_average_the_clean_and_mirror_views():
    head = MeanLinear()
    tokens = torch.randn(8, 4, 5, 4)
    p = probe.head_probs(head, tokens)
    with torch.no_grad():
        want = (torch.sigmoid(head(tokens[:, 0])) + torch.sigmoid(head(tokens[:, 1]))) / 2
    assert p.shape == (8, 3)
    assert np.allclose(p, want.numpy(), atol=1e-6)
