"""inference.adapt: BatchNorm re-estimation (AdaBN), Saerens EM priors, the score mixture
and the thresholds it moves, on tiny modules and synthetic scores with known answers."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from personlens.inference.adapt import (ScoreModel, apply_bn_statistics, bn_layers,
                                        em_priors, estimate_bn_statistics, fit_score_mixture,
                                        shift_thresholds, transfer_thresholds)


def _sigmoid(z):
    return 1 / (1 + np.exp(-np.asarray(z, np.float64)))


def _logit(p):
    p = np.asarray(p, np.float64)
    return np.log(p / (1 - p))


# ---------------------------------------------------------------- normalisation statistics
@pytest.fixture()
def net():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, momentum=0.3))
    bn = m[1]
    bn.running_mean.copy_(torch.arange(4.0))
    bn.running_var.copy_(torch.full((4,), 2.0))
    bn.num_batches_tracked.fill_(7)
    return m.eval()


def _snapshot(m):
    bn = m[1]
    return (bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone(),
            bn.momentum, m.training, bn.training)


def _same(a, b):
    return all(torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y for x, y in zip(a, b))


def _batch_stats(m, x):
    with torch.no_grad():
        h = m[0](x)
    return h.mean((0, 2, 3)), h.var((0, 2, 3), unbiased=True)   # what BatchNorm tracks


@pytest.mark.parametrize("train_mode", [False, True])
def test_estimate_leaves_module_as_it_was(net, train_mode):
    net.train(train_mode)
    before = _snapshot(net)
    x = torch.randn(6, 3, 8, 8)
    estimate_bn_statistics(net, [x, x[:3]], prior=0.0)
    assert _same(_snapshot(net), before)


def test_estimate_without_prior_is_the_batch_statistics(net):
    x = torch.randn(8, 3, 8, 8) * 3 + 1
    stats = estimate_bn_statistics(net, [x], prior=0.0)
    assert set(stats) == {"1.running_mean", "1.running_var"}
    mean, var = _batch_stats(net, x)
    torch.testing.assert_close(stats["1.running_mean"], mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(stats["1.running_var"], var, rtol=1e-5, atol=1e-5)


def test_estimate_blends_towards_the_old_statistics(net):
    x = torch.randn(8, 3, 8, 8) * 3 + 1
    old_mean, old_var = net[1].running_mean.clone(), net[1].running_var.clone()
    stats = estimate_bn_statistics(net, [x, x[:1]], prior=24.0)   # the 1-image batch is skipped
    w = 8 / (8 + 24.0)
    mean, var = _batch_stats(net, x)
    torch.testing.assert_close(stats["1.running_mean"], (1 - w) * old_mean + w * mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(stats["1.running_var"], (1 - w) * old_var + w * var, rtol=1e-5, atol=1e-5)


def test_estimate_needs_a_batch_of_two(net):
    before = _snapshot(net)
    for batches in ([], [torch.randn(1, 3, 8, 8)] * 3):
        with pytest.raises(ValueError, match="at least two images"):
            estimate_bn_statistics(net, batches)
    assert _same(_snapshot(net), before)
    with pytest.raises(ValueError, match="no BatchNorm"):
        estimate_bn_statistics(nn.Conv2d(3, 4, 3), [torch.randn(2, 3, 8, 8)])


def test_apply_checks_names_and_shapes(net):
    good = {"1.running_mean": torch.full((4,), 5.0), "1.running_var": torch.full((4,), 3.0)}
    apply_bn_statistics(net, good)
    assert torch.equal(net[1].running_mean, good["1.running_mean"])
    assert torch.equal(net[1].running_var, good["1.running_var"])
    with pytest.raises(ValueError, match="do not fit"):
        apply_bn_statistics(net, {"1.running_mean": good["1.running_mean"]})
    with pytest.raises(ValueError, match="do not fit"):
        apply_bn_statistics(net, {**good, "2.running_mean": torch.zeros(4)})
    with pytest.raises(ValueError, match="shape"):
        apply_bn_statistics(net, {**good, "1.running_var": torch.ones(5)})
    assert list(bn_layers(net)) == ["1"]


# ---------------------------------------------------------------- priors (Saerens EM)
def test_em_priors_recovers_the_target_prior():
    rng = np.random.default_rng(0)
    n, targets = 20000, np.array([0.3, 0.7])
    y = rng.random((n, 2)) < targets
    z = np.where(y, 1.0, -1.0) + rng.normal(size=(n, 2))   # N(+-1, 1): log-likelihood ratio 2z
    probs = _sigmoid(2 * z)                                  # the true posterior at prior 0.5
    est = em_priors(probs, np.array([0.5, 0.5]))
    np.testing.assert_allclose(est, targets, atol=0.02)
    assert abs(probs.mean(0)[0] - 0.3) > 0.05                # the plain mean is biased


def test_shift_thresholds_moves_by_the_prior_log_odds_and_is_capped():
    out = shift_thresholds([0.5, 0.5], [0.5, 0.5], [0.3, 0.001], max_shift=2.0)
    np.testing.assert_allclose(_logit(out), [-_logit(0.3), 2.0], atol=1e-5)


# ---------------------------------------------------------------- score mixture and thresholds
def _scores(rng, n, prior, mu0, mu1, sd=1.0):
    y = rng.random((n, 1)) < prior
    z = np.where(y, mu1, mu0) + rng.normal(0, sd, (n, 1))
    return _sigmoid(z), y.astype(int)


def test_score_model_fit_gives_per_class_logit_statistics():
    z = np.array([[-2.0, 0.0], [-1.0, 1.0], [3.0, 2.0], [5.0, 4.0]])
    y = np.array([[0, 0], [0, 1], [1, 1], [1, 1]])
    m = ScoreModel.fit(_sigmoid(z), y)
    np.testing.assert_allclose(m.prior, [0.5, 0.75])
    np.testing.assert_allclose(m.mu0, [-1.5, 0.0], atol=1e-6)
    np.testing.assert_allclose(m.mu1, [4.0, 7 / 3], atol=1e-6)
    np.testing.assert_allclose(m.sd0, [0.5, 0.1], atol=1e-6)   # one negative: the floor
    np.testing.assert_allclose(m.sd1[0], 1.0, atol=1e-6)
    with pytest.raises(ValueError):
        ScoreModel.fit(_sigmoid(z), y[:, :1])


def test_score_mixture_follows_a_shift_and_thresholds_move_with_it():
    rng = np.random.default_rng(1)
    source = ScoreModel.fit(*_scores(rng, 4000, 0.4, -2.0, 2.0))
    probs, _ = _scores(rng, 2000, 0.4, -3.5, 0.5)               # both components moved by -1.5
    target = fit_score_mixture(probs, source)
    assert abs(target.mu0[0] - (source.mu0[0] - 1.5)) < 0.3
    assert abs(target.mu1[0] - (source.mu1[0] - 1.5)) < 0.3
    assert abs(target.prior[0] - 0.4) < 0.05
    th = transfer_thresholds([0.5], source, target)
    assert abs(_logit(th)[0] - (-1.5)) < 0.3
    capped = transfer_thresholds([0.5], source, target, max_shift=0.5)
    np.testing.assert_allclose(_logit(capped), [-0.5], atol=1e-5)


def test_unseparated_components_keep_the_threshold():
    source = ScoreModel(*(np.array([v, v]) for v in (0.4, -2.0, 1.0, 2.0, 1.0)))
    target = ScoreModel(np.array([0.4, 0.4]), np.array([-1.0, -1.0]), np.ones(2),
                        np.array([-0.95, 3.0]), np.ones(2))   # attribute 0: gap 0.05
    th = transfer_thresholds([0.3, 0.3], source, target)
    assert th[0] == np.float32(0.3)
    assert th[1] != np.float32(0.3)


def test_score_model_dict_round_trip():
    m = ScoreModel(*(np.array(v) for v in ([0.3, 0.6], [-1.25, -2.5], [0.7, 1.1], [1.5, 0.25], [0.9, 2.0])))
    back = ScoreModel.from_dict(m.to_dict())
    for k in ("prior", "mu0", "sd0", "mu1", "sd1"):
        np.testing.assert_allclose(getattr(back, k), getattr(m, k), atol=1e-5)
    assert len(back) == 2
    bad = {**m.to_dict(), "sd1": [1.0]}
    with pytest.raises(ValueError, match="length"):
        ScoreModel.from_dict(bad)
