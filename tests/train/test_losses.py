import math

import pytest
import torch

from personlens.train.losses import LossConfig, imbalance_weights, par_loss


def test_plain_bce_matches_by_hand():
    cfg = LossConfig(focal_weight=0.0, label_smoothing=0.0, balance=False)
    logits = torch.tensor([[0.0, 2.0]])
    y = torch.tensor([[1.0, 0.0]])
    expected = math.log(2) + math.log(1 + math.exp(2))
    assert par_loss(logits, y, cfg).item() == pytest.approx(expected, rel=1e-6)


def test_label_smoothing_moves_targets_towards_half():
    logits = torch.tensor([[20.0]])
    y = torch.tensor([[1.0]])
    hard = par_loss(logits, y, LossConfig(focal_weight=0, label_smoothing=0, balance=False))
    soft = par_loss(logits, y, LossConfig(focal_weight=0, label_smoothing=0.2, balance=False))
    assert soft.item() > hard.item() + 1.0  # a confident logit is penalised under smoothing


def test_focal_term_downweights_easy_examples():
    cfg = LossConfig(ce_weight=0.0, focal_weight=1.0, label_smoothing=0.0, balance=False)
    y = torch.tensor([[1.0]])
    easy = par_loss(torch.tensor([[4.0]]), y, cfg).item()
    hard = par_loss(torch.tensor([[-4.0]]), y, cfg).item()
    bce_easy = math.log(1 + math.exp(-4))
    assert easy < 0.01 * bce_easy and hard > 3.0


def test_imbalance_weights():
    rate = torch.tensor([0.1])
    w = imbalance_weights(torch.tensor([[1.0], [0.0]]), rate)
    assert w[0, 0].item() == pytest.approx(math.exp(0.9))
    assert w[1, 0].item() == pytest.approx(math.exp(0.1))


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ"):
        par_loss(torch.zeros(2, 3), torch.zeros(2, 2), LossConfig())
