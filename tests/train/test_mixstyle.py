"""MixStyle: each map keeps its normalised content and takes statistics between its own and
another map's; off (p=0) or in eval mode nothing changes; the hooks go where the encoder says."""
from __future__ import annotations

import torch
from torch import nn

from personlens.models.image_encoders import EfficientNetLite0, MobileNetV2
from personlens.train.mixstyle import MixStyleHooks, mix_styles


def _stats(x):
    return x.mean((2, 3)), x.std((2, 3), unbiased=False)


def test_off_returns_the_input_itself():
    x = torch.randn(4, 3, 5, 5)
    assert mix_styles(x, 0.0) is x
    one = x[:1]
    assert mix_styles(one, 1.0) is one     # a single map has no other to mix with


def test_content_is_kept_and_statistics_are_mixed_between_two_maps():
    torch.manual_seed(0)
    content = torch.randn(2, 4, 6, 6)
    content = (content - content.mean((2, 3), keepdim=True)) / content.std((2, 3), unbiased=False, keepdim=True)
    mu = torch.tensor([[0.0, 1.0, 2.0, 3.0], [10.0, -5.0, 4.0, 0.5]])
    sig = torch.tensor([[1.0, 2.0, 0.5, 1.5], [3.0, 0.2, 1.0, 4.0]])
    x = content * sig[..., None, None] + mu[..., None, None]
    for _ in range(20):   # each draw: lam per map, the other map chosen at random
        out = mix_styles(x, 1.0)
        m, s = _stats(out)
        # same content: the re-normalised output is the normalised input
        torch.testing.assert_close((out - m[..., None, None]) / s[..., None, None], content, atol=1e-3, rtol=0)
        for i in range(2):
            # every channel's mean is lam * own + (1 - lam) * other's, with one lam per map
            lam_mu = (m[i] - mu[1 - i]) / (mu[i] - mu[1 - i])
            lam_sig = (s[i] - sig[1 - i]) / (sig[i] - sig[1 - i])
            if not torch.allclose(m[i], mu[i], atol=1e-4):   # mixed with the other map
                torch.testing.assert_close(lam_mu, lam_mu[:1].expand(4), atol=1e-3, rtol=0)
                torch.testing.assert_close(lam_sig, lam_mu, atol=1e-3, rtol=0)
                assert -1e-4 <= float(lam_mu[0]) <= 1 + 1e-4


def test_some_draws_do_change_the_statistics():
    torch.manual_seed(1)
    x = torch.randn(8, 3, 4, 4) * torch.arange(1, 9.0)[:, None, None, None]
    changed = sum(not torch.allclose(mix_styles(x, 1.0), x, atol=1e-3) for _ in range(10))
    assert changed >= 5


def test_hooks_mix_only_while_training_and_come_off():
    torch.manual_seed(0)
    layer = nn.Identity()
    x = torch.randn(6, 3, 4, 4) * torch.arange(1, 7.0)[:, None, None, None]
    hooks = MixStyleHooks([layer], p=1.0)
    layer.train()
    assert not torch.allclose(layer(x), x)
    layer.eval()
    assert torch.equal(layer(x), x)
    hooks.remove()
    layer.train()
    assert torch.equal(layer(x), x)


def test_the_encoder_names_its_first_trainable_group():
    lite0 = EfficientNetLite0(pretrained=False)
    assert lite0.early_upper_modules(8) == list(lite0.blocks[8:11])   # the 112-channel group
    assert lite0.early_upper_modules(9) == list(lite0.blocks[9:11])
    assert lite0.early_upper_modules(15) == [lite0.blocks[15]]
    assert MobileNetV2(pretrained=False).early_upper_modules(10) == []
