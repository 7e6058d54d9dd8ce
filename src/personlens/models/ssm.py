"""Mamba's selective state-space layer in plain PyTorch, and Vim's bidirectional layer.

The selective scan (Gu & Dao 2023), per channel ``d`` and state ``n``::

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t        y_t = C_t . h_t + D * u_t

Implementations, equal to the naive autograd loop ``selective_scan_reference`` within 1e-5
(values and gradients, tested):

* ``selective_scan_sequential`` runs it step by step on (b, d, n) states, with a hand-written
  backward (one reverse loop, no autograd graph per step). On a CPU at our lengths (48 image
  tokens, 83 with the attribute tokens) it is the fastest.
* ``selective_scan_parallel`` computes it in parallel over time, in log space (Heinsen
  2023): with ``L_t = sum_{k<=t} delta_k A`` and ``v_s = delta_s B_s u_s``,
  ``h_t = sum_{s<=t} exp(L_t - L_s) v_s``, a ``logcumsumexp`` over the positive and over
  the negative ``v_s``. No padding of the sequence to a power of two (mambapy's parallel
  scan pads 83 tokens to 128); float64 inside and chunks with the state carried between
  them keep it within 1e-6 of the loop even when the decay is fast. It is meant for long
  sequences on GPUs; on this CPU ``logcumsumexp`` in float64 makes it the slowest.

Measured forward + backward at batch 64, 256 channels, state 8 (``benchmarks/bench_scan.py``,
``docs/results.md``) for the naive loop, the sequential scan, mambapy's parallel scan and the
log-space one. The heads use the sequential scan.

``VimLayer`` is one Vision-Mamba block (Zhu et al. 2024): pre-norm, a shared input
projection to (x, z), a causal depthwise convolution and a selective scan per direction
(forward and, unless ``bidirectional=False``, backward over the reversed sequence), the two
directions averaged, gated by ``silu(z)``, projected back and added to the input.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def selective_scan_reference(u, delta, A, B, C, D=None):
    """The naive step-by-step scan, differentiated by autograd: what the others are tested
    against. ``u``, ``delta``: (b, l, d); ``A``: (d, n); ``B``, ``C``: (b, l, n); ``D``: (d,).
    Returns ``y`` (b, l, d)."""
    b, l, d = u.shape
    h = u.new_zeros(b, d, A.shape[1])
    ys = []
    for t in range(l):
        h = torch.exp(delta[:, t, :, None] * A) * h + (delta[:, t] * u[:, t])[..., None] * B[:, t, None, :]
        ys.append((h * C[:, t, None, :]).sum(-1))
    y = torch.stack(ys, 1)
    return y if D is None else y + u * D


class _SequentialScan(torch.autograd.Function):
    """The step-by-step scan with a hand-written backward: one reverse loop over the saved
    states instead of autograd's graph of every step's small ops (10-15% faster here with every
    input learned, benchmarks/bench_scan.py)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C):
        b, l, d = u.shape
        states = u.new_empty(b, l, d, A.shape[1])
        h = u.new_zeros(b, d, A.shape[1])
        du = delta * u
        for t in range(l):
            h = torch.exp(delta[:, t, :, None] * A) * h
            h.add_(du[:, t, :, None] * B[:, t, None, :])
            states[:, t] = h
        ctx.save_for_backward(u, delta, A, B, C, states)
        return torch.einsum("bldn,bln->bld", states, C)

    @staticmethod
    def backward(ctx, gy):
        # h_t = a_t h_{t-1} + (delta_t u_t) B_t with a_t = exp(delta_t A); y_t = C_t . h_t
        u, delta, A, B, C, states = ctx.saved_tensors
        l = u.shape[1]
        g_c = torch.einsum("bld,bldn->bln", gy, states)
        g_du, g_b, g_delta_a = torch.empty_like(u), torch.empty_like(B), torch.zeros_like(u)
        g_a = torch.zeros_like(A)
        du = delta * u
        gh = torch.zeros_like(states[:, 0])                      # dLoss / dh_t, from the future
        for t in range(l - 1, -1, -1):
            gh = gh + gy[:, t, :, None] * C[:, t, None, :]
            g_du[:, t] = (gh * B[:, t, None, :]).sum(-1)
            g_b[:, t] = (gh * du[:, t, :, None]).sum(1)
            if t > 0:                                            # h_0 = 0: a_0 has no gradient
                a = torch.exp(delta[:, t, :, None] * A)
                ga = gh * states[:, t - 1] * a                    # dLoss / d(delta_t A)
                g_delta_a[:, t] = (ga * A).sum(-1)
                g_a += (ga * delta[:, t, :, None]).sum(0)
                gh = gh * a
        return g_du * delta, g_du * u + g_delta_a, g_a, g_b, g_c


def selective_scan_sequential(u, delta, A, B, C, D=None):
    """Step-by-step scan (``selective_scan_reference``'s numbers) with a hand-written backward."""
    y = _SequentialScan.apply(u, delta, A, B, C)
    return y if D is None else y + u * D


def selective_scan_parallel(u, delta, A, B, C, D=None, chunk: int = 32):
    """The scan of ``selective_scan_sequential``, parallel over time within chunks of ``chunk``."""
    b, l, d = u.shape
    out_dtype = u.dtype
    # float64 inside: exp(L_t - L_s) is computed as exp((log v_s - L_s) + L_t), two large
    # numbers whose sum is small; fp32 would lose |L| * 6e-8 of it (1e-3 when decay is fast)
    u, delta, A, B, C = (t.double() for t in (u, delta, A, B, C))
    tiny = torch.finfo(torch.float64).tiny
    dA = delta.unsqueeze(-1) * A                                  # (b, l, d, n), <= 0
    v = (delta * u).unsqueeze(-1) * B.unsqueeze(2)                # (b, l, d, n)
    h0 = None
    ys = []
    for s in range(0, l, chunk):
        L = dA[:, s:s + chunk].cumsum(1)
        vc = v[:, s:s + chunk]
        # log|v| - L, one sign at a time; a zero part adds exp(log tiny) ~ 1e-38: nothing
        pos = torch.logcumsumexp(torch.log(vc.clamp(min=tiny)) - L, 1)
        neg = torch.logcumsumexp(torch.log((-vc).clamp(min=tiny)) - L, 1)
        h = torch.exp(pos + L) - torch.exp(neg + L)
        if h0 is not None:                                        # the state carried in
            h = h + torch.exp(L) * h0.unsqueeze(1)
        h0 = h[:, -1]
        ys.append((h * C[:, s:s + chunk].unsqueeze(2)).sum(-1))
    y = torch.cat(ys, 1)
    y = y if D is None else y + u * D
    return y.to(out_dtype)


SCANS = {"sequential": selective_scan_sequential, "parallel": selective_scan_parallel}


class SelectiveSSM(nn.Module):
    """One direction of a Mamba block: causal depthwise conv, input-dependent (delta, B, C),
    and the scan. Initialised as in Mamba: A = -(1..n) per channel (S4D-real), delta's bias
    so that softplus gives steps log-uniform in [1e-3, 1e-1]."""

    def __init__(self, d_inner: int, d_state: int = 8, d_conv: int = 4,
                 dt_min: float = 1e-3, dt_max: float = 1e-1, scan: str = "sequential"):
        super().__init__()
        if scan not in SCANS:
            raise ValueError(f"scan must be one of {', '.join(SCANS)}, got {scan!r}")
        self.scan = scan
        self.dt_rank = max(1, math.ceil(d_inner / 16))
        self.d_state = d_state
        self.conv = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, d_inner)
        dt = torch.exp(torch.rand(d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))   # softplus^-1(dt)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1).float()).repeat(d_inner, 1))
        self.D = nn.Parameter(torch.ones(d_inner))

    def forward(self, x: torch.Tensor) -> torch.Tensor:          # (b, l, d_inner)
        l = x.shape[1]
        x = F.silu(self.conv(x.transpose(1, 2))[..., :l].transpose(1, 2))   # causal: trim the tail
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], -1)
        delta = F.softplus(self.dt_proj(dt))
        return SCANS[self.scan](x, delta, -torch.exp(self.A_log), B, C, self.D)


class VimLayer(nn.Module):
    """Pre-norm Vision-Mamba block on (b, l, d_model), residual."""

    def __init__(self, d_model: int, d_state: int = 8, expand: int = 1, d_conv: int = 4,
                 bidirectional: bool = True, scan: str = "sequential"):
        super().__init__()
        d_inner = expand * d_model
        self.norm = nn.LayerNorm(d_model)
        self.in_proj = nn.Linear(d_model, 2 * d_inner)
        self.directions = nn.ModuleList(SelectiveSSM(d_inner, d_state, d_conv, scan=scan)
                                        for _ in range(2 if bidirectional else 1))
        self.out_proj = nn.Linear(d_inner, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xi, z = self.in_proj(self.norm(x)).chunk(2, -1)
        y = self.directions[0](xi)
        if len(self.directions) == 2:
            y = (y + self.directions[1](xi.flip(1)).flip(1)) / 2
        return x + self.out_proj(y * F.silu(z))
