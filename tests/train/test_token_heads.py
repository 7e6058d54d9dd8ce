"""Heads trained on cached tokens (the head ablation): they learn a signal that is in the
tokens, are chosen and calibrated on val, scored on test, and a seed repeats a run."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from personlens.train.token_heads import HeadRun, head_speed, predict, run_head

NAMES = ["a", "b", "c"]


def _split(n, seed, t=6, c=8):
    """Attribute k is on when token k's first channel is positive (the "mirror" view is
    the same tokens: the signal stays at its position)."""
    g = np.random.default_rng(seed)
    x = g.standard_normal((n, t, c)).astype(np.float16)
    y = np.stack([(x[:, k, 0] > 0) for k in range(len(NAMES))], 1).astype(np.float32)
    return np.stack([x, x], 1), y


@pytest.fixture(scope="module")
def data():
    return {"train": _split(256, 0), "val": _split(96, 1), "test": _split(96, 2)}


@pytest.mark.parametrize("kind", ["linear", "vim", "transformer_text"])
def test_a_head_learns_what_the_tokens_hold(data, kind):
    prompts = torch.randn(len(NAMES), 2, 10)
    run = HeadRun(kind=kind, epochs=8, batch_size=32, embed_dim=16, d_state=4, lr=1e-2)
    head, rep = run_head(run, data, NAMES, prompts, log=lambda m: None, progress=False)
    assert len(rep["history"]) == 8 and 1 <= rep["best_epoch"] <= 8
    assert set(rep) >= {"val_fixed", "val_calibrated", "test_fixed", "test_calibrated", "thresholds"}
    assert len(rep["thresholds"]) == len(NAMES) and rep["parameters"] > 0
    if kind != "linear":       # a mean-pooling probe cannot tell which token holds the signal
        assert rep["test_calibrated"]["mA"] > 60       # chance: 50
    probs = predict(head, data["test"][0])
    assert probs.shape == (96, len(NAMES)) and np.isfinite(probs).all()


def test_the_same_seed_repeats_a_run(data):
    run = HeadRun(kind="vim_uni", epochs=2, batch_size=64, embed_dim=8, d_state=2)
    a = run_head(run, data, NAMES, None, log=lambda m: None, progress=False)[1]
    b = run_head(run, data, NAMES, None, log=lambda m: None, progress=False)[1]
    assert a["test_calibrated"] == b["test_calibrated"] and a["history"][-1]["loss"] == b["history"][-1]["loss"]


def test_head_speed_reports_both_batch_sizes(data):
    run = HeadRun(kind="vim", epochs=1, embed_dim=8, d_state=2)
    head, _ = run_head(run, data, NAMES, None, log=lambda m: None, progress=False)
    s = head_speed(head, tokens=6, dim=8, repeats=3)
    assert s["ms_per_crop_b1"] > 0 and s["crops_per_s_b32"] > 0
