"""The TENT probe: only the top's normalisation learns, the original model stays as it was,
entropy falls, and the marginal term holds each attribute's mean prediction."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from script_testlib import load_script
from torch import nn

probe = load_script("scripts/probe_target_tent.py")


class TinyEncoder(nn.Module):
    """Two stages (conv + BatchNorm each); stage 1 and up is the trainable top."""

    def __init__(self):
        super().__init__()
        self.low = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.high = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())

    def forward_lower(self, x, stage):
        return self.low(x)

    def forward_upper(self, h, stage):
        return self.high(h).flatten(2).transpose(1, 2)

    def upper_parameters(self, stage):
        yield from self.high.parameters()


class TinyModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = TinyEncoder()
        self.head = nn.Linear(4, 3)
        self.config = SimpleNamespace(stage=1)

    def forward_from_stage(self, h):
        return self.head(self.encoder.forward_upper(h, 1).mean(1))


def setup():
    torch.manual_seed(0)
    model = TinyModel().eval()
    feats = torch.randn(48, 2, 4, 6, 5)
    return model, feats


def test_only_the_tops_normalisation_is_adapted():
    model, _ = setup()
    got = {id(p) for p in probe.top_norm_parameters(model)}
    bn_high, bn_low = model.encoder.high[1], model.encoder.low[1]
    assert got == {id(bn_high.weight), id(bn_high.bias)}
    assert id(bn_low.weight) not in got


def test_tent_lowers_entropy_and_leaves_the_original_untouched():
    model, feats = setup()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    student = probe.tent(model, feats, epochs=20, lr=5e-2, marginal=0.0, batch=16)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    changed = {k for k, v in student.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"encoder.high.1.weight", "encoder.high.1.bias"}
    ent = [probe.binary_entropy(torch.as_tensor(probe.flip_probs(m, feats))).mean().item()
           for m in (model, student)]
    assert ent[1] < ent[0] - 0.02


def test_marginal_term_holds_the_mean_prediction():
    model, feats = setup()
    start = torch.as_tensor(probe.flip_probs(model, feats).mean(0))
    drift = {}
    for w in (0.0, 10.0):
        s = probe.tent(model, feats, epochs=20, lr=1e-2, marginal=w, start_mean=start, batch=16)
        drift[w] = (torch.as_tensor(probe.flip_probs(s, feats).mean(0)) - start).abs().sum().item()
    assert drift[10.0] < drift[0.0]


def test_marginal_term_without_its_target_is_refused():
    model, feats = setup()
    with pytest.raises(ValueError, match="start_mean"):
        probe.tent(model, feats, epochs=1, lr=1e-2, marginal=1.0)


def test_binary_kl():
    p = torch.tensor([0.1, 0.5, 0.9])
    assert torch.allclose(probe.binary_kl(p, p), torch.zeros(3), atol=1e-6)
    assert (probe.binary_kl(p, torch.tensor([0.5, 0.2, 0.5])) > 0).all()


def test_adabn_top_moves_only_the_tops_statistics_towards_the_crops():
    model, feats = setup()
    feats = feats * 3 + 2                      # crops unlike the (default) trained statistics
    before = {k: v.clone() for k, v in model.state_dict().items()}
    weak = probe.adabn_top(model, feats, prior=1e6, batch=48)     # two equal batches: their
    strong = probe.adabn_top(model, feats, prior=0.0, batch=48)   # mean is the mean over all
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    changed = {k for k, v in strong.state_dict().items()
               if not torch.equal(v, before[k]) and not k.endswith("num_batches_tracked")}
    assert changed == {"encoder.high.1.running_mean", "encoder.high.1.running_var"}
    h = model.encoder.high[0](feats.flatten(0, 1))
    target = h.mean((0, 2, 3))
    assert torch.allclose(strong.encoder.high[1].running_mean, target, atol=1e-4)
    # a large source prior keeps the trained statistics
    assert torch.allclose(weak.encoder.high[1].running_mean, before["encoder.high.1.running_mean"], atol=1e-2)
