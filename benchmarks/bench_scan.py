"""Selective-scan cost on this CPU: forward + backward of the scan alone, at the shapes the
attribute heads use (batch 64, 48 image tokens or 83 with the attribute tokens, 256
channels, state 8).

    .venv/bin/python benchmarks/bench_scan.py --json docs/results/bench_scan.json

Rows: ``reference`` (the naive loop differentiated by autograd), ``sequential``
(``models.ssm.selective_scan_sequential``, the same loop with a hand-written backward: what
the heads run), ``parallel`` (``selective_scan_parallel``: log space, float64, no padding) and, when
``mambapy`` is installed, its parallel scan (``mambapy.pscan``, which pads to a power of
two), each given the same inputs; ms are medians over repeats after a warm-up.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from personlens.models.ssm import (selective_scan_parallel, selective_scan_reference,
                                   selective_scan_sequential)


def _mambapy_scan():
    try:
        from mambapy.pscan import pscan
    except ImportError:
        return None

    def scan(u, delta, A, B, C, D=None):
        dA = torch.exp(delta.unsqueeze(-1) * A)
        bx = (delta * u).unsqueeze(-1) * B.unsqueeze(2)
        y = (pscan(dA, bx) @ C.unsqueeze(-1)).squeeze(-1)
        return y if D is None else y + u * D
    return scan


def time_scan(fn, args, repeats: int) -> float:
    """Every input needs its gradient, as in a head (A, B, C are learned or computed)."""
    leaves = [a.clone().requires_grad_(True) for a in args]
    fn(*leaves).sum().backward()
    times = []
    for _ in range(repeats):
        for a in leaves:
            a.grad = None
        t0 = time.perf_counter()
        fn(*leaves).sum().backward()
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lengths", type=int, nargs="+", default=[48, 83])
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--state", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    scans = {"reference": selective_scan_reference, "sequential": selective_scan_sequential,
             "parallel": selective_scan_parallel}
    if (m := _mambapy_scan()) is not None:
        scans["mambapy_pscan"] = m
    g = torch.Generator().manual_seed(0)
    rows = []
    for length in args.lengths:
        b, d, n = args.batch, args.dim, args.state
        inputs = (torch.randn(b, length, d, generator=g),
                  F.softplus(torch.randn(b, length, d, generator=g) - 3),
                  -torch.arange(1, n + 1).float().repeat(d, 1),
                  torch.randn(b, length, n, generator=g), torch.randn(b, length, n, generator=g))
        ref = selective_scan_reference(*inputs)
        for name, fn in scans.items():
            err = float((fn(*inputs) - ref).abs().max())
            ms = time_scan(fn, inputs, args.repeats)
            rows.append({"scan": name, "length": length, "ms_forward_backward": round(ms, 1),
                         "max_abs_diff_vs_reference": err})
            print(f"L={length:3d}  {name:14s} {ms:8.1f} ms fwd+bwd   max |diff| {err:.1e}")
    out = {"batch": args.batch, "dim": args.dim, "state": args.state, "threads": torch.get_num_threads(),
           "cpu": platform.processor() or platform.machine(), "rows": rows}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
