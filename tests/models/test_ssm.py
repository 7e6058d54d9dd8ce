"""The selective scan: the sequential scan (hand-written backward) and the parallel one (log
space) equal the naive autograd loop, forward and backward; the Vim layer keeps shapes, is
causal when one-directional, and learns."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from personlens.models.ssm import (SelectiveSSM, VimLayer, selective_scan_parallel,
                                   selective_scan_reference, selective_scan_sequential)

SCANS = [selective_scan_parallel, selective_scan_sequential]


def _inputs(b=3, l=83, d=16, n=8, step=-3.0, spread=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(b, l, d, generator=g)
    delta = F.softplus(torch.randn(b, l, d, generator=g) * spread + step)
    A = -torch.arange(1, n + 1).float().repeat(d, 1)
    B, C = torch.randn(b, l, n, generator=g), torch.randn(b, l, n, generator=g)
    return u, delta, A, B, C, torch.ones(d)


@pytest.mark.parametrize("scan", SCANS)
@pytest.mark.parametrize("l", [1, 31, 32, 33, 83])
def test_scans_equal_the_naive_loop(scan, l):
    args = _inputs(l=l)
    torch.testing.assert_close(scan(*args), selective_scan_reference(*args), atol=1e-5, rtol=1e-5)


def test_parallel_scan_holds_when_the_decay_is_fast():
    # large steps and a strongly decaying A: |L| reaches thousands inside a chunk
    u, delta, A, B, C, D = _inputs(step=0.0, spread=2.0)
    A = A * 4
    ref = selective_scan_reference(*(t.double() for t in (u, delta, A, B, C, D)))
    torch.testing.assert_close(selective_scan_parallel(u, delta, A, B, C, D).double(), ref,
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("scan", SCANS)
def test_scan_gradients_equal_the_naive_loop(scan):
    args = _inputs(b=2, l=40, d=8)
    grads = []
    for fn in (scan, selective_scan_reference):
        leaves = [t.clone().requires_grad_(True) for t in args]
        fn(*leaves).pow(2).sum().backward()
        grads.append([t.grad for t in leaves])
    for name, a, b in zip(("u", "delta", "A", "B", "C", "D"), *grads):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4, msg=name)


def test_the_sequential_backward_passes_gradcheck():
    args = [t.double().requires_grad_(True) for t in _inputs(b=2, l=6, d=3, n=4)]
    assert torch.autograd.gradcheck(selective_scan_sequential, args)


def test_the_scan_is_the_recurrence():
    # one channel, one state, by hand: h1 = d1 b1 u1; h2 = e^(d2 a) h1 + d2 b2 u2
    u = torch.tensor([[[1.0], [2.0]]])
    delta = torch.tensor([[[0.5], [0.25]]])
    A, B, C = torch.tensor([[-2.0]]), torch.tensor([[[3.0], [1.0]]]), torch.tensor([[[1.0], [2.0]]])
    h1 = 0.5 * 3.0 * 1.0
    h2 = torch.exp(torch.tensor(0.25 * -2.0)) * h1 + 0.25 * 1.0 * 2.0
    want = torch.tensor([[[h1 * 1.0], [float(h2) * 2.0]]])
    for scan in SCANS + [selective_scan_reference]:
        torch.testing.assert_close(scan(u, delta, A, B, C), want)


def test_one_direction_is_causal_and_two_are_not():
    torch.manual_seed(0)
    x = torch.randn(1, 12, 16)
    later = x.clone()
    later[:, 8:] += torch.randn(1, 4, 16)                # change only the end of the sequence
    # (not by a constant: the layer's LayerNorm would remove it)
    uni, bi = VimLayer(16, bidirectional=False).eval(), VimLayer(16).eval()
    with torch.no_grad():
        torch.testing.assert_close(uni(x)[:, :8], uni(later)[:, :8])
        assert (bi(x)[:, :8] - bi(later)[:, :8]).abs().max() > 1e-4


def test_vim_layer_learns_and_refuses_an_unknown_scan():
    torch.manual_seed(0)
    layer = VimLayer(8, d_state=4)
    x, target = torch.randn(4, 10, 8), torch.randn(4, 10, 8)
    opt = torch.optim.Adam(layer.parameters(), 1e-2)
    first = None
    for _ in range(30):
        loss = (layer(x) - target).pow(2).mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.8 * first
    with pytest.raises(ValueError, match="sequential, parallel"):
        SelectiveSSM(8, scan="chunked")
