"""Every registered attribute head: shapes, finite outputs, gradients to every parameter and
to the tokens; save/load through the hub; the refusals (unknown name, other token grid)."""
from __future__ import annotations

import pytest
import torch

from personlens.models.factory import build_head, head_needs, list_models
from personlens.models.par import HeadConfig

TOKENS, DIM, ATTRS = 12, 24, 5
HEADS = list_models("par_head")


def _head(kind, **kw):
    torch.manual_seed(0)
    cfg = HeadConfig(kind=kind, embed_dim=16, num_heads=4, tokens=TOKENS, d_state=4, **kw)
    return build_head(DIM, torch.randn(ATTRS, 3, 10), ATTRS, cfg)


def test_the_registry_holds_the_study_s_heads():
    assert {"vim", "vim_uni", "vim_text", "transformer", "transformer_text", "hybrid",
            "cross_attention", "linear"} <= set(HEADS)
    assert head_needs("vim_text") == (True, True) and head_needs("vim") == (False, True)
    assert head_needs("cross_attention") == (True, False)
    with pytest.raises(KeyError, match="available: cross_attention, hybrid, linear"):
        head_needs("mamba2")


@pytest.mark.parametrize("kind", HEADS)
def test_every_head_gives_finite_logits_and_gradients_everywhere(kind):
    head = _head(kind).train()
    x = torch.randn(6, TOKENS, DIM, requires_grad=True)
    out = head(x)
    assert out.shape == (6, ATTRS) and torch.isfinite(out).all()
    out.pow(2).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in head.named_parameters():
        if kind == "hybrid" and name.startswith("fuse."):
            continue          # zero-initialised fusion: the Mamba branch starts on its own
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_the_hybrid_s_fusion_learns_from_the_transformer_branch():
    head = _head("hybrid").train()
    head(torch.randn(6, TOKENS, DIM)).pow(2).sum().backward()
    assert all(f.weight.grad.abs().sum() > 0 for f in head.fuse)


@pytest.mark.parametrize("kind", ["vim", "vim_text", "transformer", "hybrid"])
def test_a_head_refuses_an_encoder_with_another_token_grid(kind):
    head = _head(kind).eval()
    with pytest.raises(ValueError, match=f"trained on {TOKENS} encoder tokens, but the encoder gives 20"):
        head(torch.randn(2, 20, DIM))


def test_a_sequence_head_needs_its_token_count():
    with pytest.raises(ValueError, match="token count"):
        build_head(DIM, None, ATTRS, HeadConfig(kind="vim", embed_dim=16))


@pytest.mark.parametrize("kind", ["vim_text", "transformer_text"])
def test_text_heads_need_prompts_and_read_out_at_the_attribute_tokens(kind):
    with pytest.raises(ValueError, match="prompt"):
        build_head(DIM, None, ATTRS, HeadConfig(kind=kind, embed_dim=16, num_heads=4, tokens=TOKENS))
    head = _head(kind).eval()
    x = torch.randn(2, TOKENS, DIM)
    with torch.no_grad():
        before = head(x)
        head.prompts[0] += 1.0           # attribute 0's prompts move its own read-out most
        after = head(x)
    change = (after - before).abs().mean(0)
    assert change[0] > 0 and change.argmax() == 0


@pytest.mark.parametrize("kind", ["vim", "vim_text", "hybrid"])
def test_a_sequence_head_saves_and_loads_through_the_hub(kind, tmp_path):
    from personlens.models import hub
    from personlens.models.factory import create_image_encoder
    from personlens.models.io import load_par, save_par
    from personlens.models.par import PARConfig, PARModel

    enc = create_image_encoder("efficientnet_lite0", pretrained=False).freeze()
    pre = enc.preprocess
    with torch.no_grad():
        n = enc(torch.zeros(1, 3, pre.height, pre.width)).shape[1]
    cfg = HeadConfig(kind=kind, embed_dim=16, num_heads=4, tokens=n, d_state=4)
    head = build_head(enc.dim, torch.randn(ATTRS, 3, 384), ATTRS, cfg)
    model = PARModel(enc, head, PARConfig(attributes=[f"a{i}" for i in range(ATTRS)],
                                          head=cfg, preprocess=pre.to_dict())).eval()
    save_par(model, tmp_path / "m")
    assert hub.kind_of(tmp_path / "m") == "attributes"
    back = load_par(tmp_path / "m")
    tokens = torch.randn(2, n, enc.dim)   # the frozen encoder is not saved: compare the heads
    with torch.no_grad():
        torch.testing.assert_close(back.head(tokens), model.head(tokens))
    assert back.config.head.tokens == n and back.config.head.kind == kind
