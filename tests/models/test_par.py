import pytest
import torch

from personlens.data.schema import PETA_SCHEMA
from personlens.models.factory import build_head
from personlens.models.par import CrossAttentionHead, HeadConfig, attribute_prompts


def _naive_cross_attention(head: CrossAttentionHead, tokens):
    """Per-token attention followed by mean pooling, written the slow obvious way."""
    q = head.q_proj(tokens)
    t = head.kv_proj(head.prompts)
    outs = []
    for a in range(t.shape[0]):
        mha_out = []
        k, v = head.k(t[a]), head.v(t[a])
        hd = q.shape[-1] // head.num_heads
        for h in range(head.num_heads):
            sl = slice(h * hd, (h + 1) * hd)
            w = (q[..., sl] @ k[:, sl].T / hd ** 0.5).softmax(-1)
            mha_out.append(w @ v[:, sl])
        per_token = q + head.out(torch.cat(mha_out, -1))
        z = head.norm(per_token.mean(1))
        z = z + head.mlp(z)
        outs.append((z * head.cls_w[a]).sum(-1) + head.cls_b[a])
    return torch.stack(outs, 1)


@pytest.mark.parametrize("kind", ["cross_attention", "linear"])
def test_heads_shape_finite_and_gradients(kind):
    torch.manual_seed(0)
    prompts = torch.nn.functional.normalize(torch.randn(5, 4, 16), dim=-1)
    head = build_head(32, prompts, 5, HeadConfig(kind=kind, embed_dim=16, num_heads=4))
    tokens = torch.randn(3, 6, 32, requires_grad=True)
    out = head(tokens)
    assert out.shape == (3, 5) and torch.isfinite(out).all()
    out.sum().backward()
    assert tokens.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters() if p.requires_grad
               and p.dim() > 1)


def test_pooled_attention_equals_per_token_attention():
    torch.manual_seed(1)
    prompts = torch.randn(3, 5, 12)
    head = CrossAttentionHead(20, prompts, HeadConfig(embed_dim=16, num_heads=4, dropout=0.0)).eval()
    tokens = torch.randn(2, 7, 20)
    torch.testing.assert_close(head(tokens), _naive_cross_attention(head, tokens), rtol=1e-4, atol=1e-5)


def test_attribute_text_changes_the_output():
    torch.manual_seed(2)
    prompts = torch.randn(2, 4, 12)
    head = CrossAttentionHead(20, prompts, HeadConfig(embed_dim=16, num_heads=4, dropout=0.0)).eval()
    tokens = torch.randn(2, 7, 20)
    before = head(tokens)
    head.prompts[0] = torch.randn(4, 12)
    after = head(tokens)
    assert not torch.allclose(before[:, 0], after[:, 0]) and torch.allclose(before[:, 1], after[:, 1])


def test_prompts_cover_every_attribute():
    groups = attribute_prompts(PETA_SCHEMA)
    assert len(groups) == 105 and len({len(g) for g in groups}) == 1
    assert "wearing a hat" in groups[PETA_SCHEMA.index("accessoryHat")][0]


def test_bad_head_config():
    with pytest.raises(KeyError, match="unknown par_head 'mlp'; available: .*cross_attention.*vim"):
        build_head(8, None, 2, HeadConfig(kind="mlp"))
    with pytest.raises(ValueError, match="prompt"):
        build_head(8, None, 2, HeadConfig(kind="cross_attention"))
