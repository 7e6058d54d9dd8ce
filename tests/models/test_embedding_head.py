"""EmbeddingHead: the fused (untrained + learned) re-ID output and config checks."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from personlens.models.embedding import (EmbeddingHead, EmbeddingHeadConfig, load_embedding_head,
                                         save_embedding_head)


def _head(w: float) -> EmbeddingHead:
    torch.manual_seed(0)
    return EmbeddingHead(EmbeddingHeadConfig(kind="reid", in_dim=12, out_dim=5, hidden=8,
                                             pool="meanmax", base_weight=w)).eval()


def test_base_weight_mixes_cosine_similarities():
    tokens = torch.randn(4, 7, 12)
    plain, fused = _head(0.0), _head(0.6)
    assert plain.config.embedding_dim == 5 and fused.config.embedding_dim == 5 + 12
    with torch.no_grad():
        e, f = plain(tokens), fused(tokens)
    assert f.shape == (4, 17)
    torch.testing.assert_close(f.norm(dim=-1), torch.ones(4))
    base = F.normalize(tokens.mean(1), dim=-1)
    want = 0.6 * base @ base.T + 0.4 * e @ e.T
    torch.testing.assert_close(f @ f.T, want, atol=1e-5, rtol=1e-5)


def test_base_weight_survives_save_and_load(tmp_path):
    head = _head(0.75)
    loaded = load_embedding_head(save_embedding_head(head, tmp_path / "h"), "reid")
    assert loaded.config.base_weight == 0.75
    x = torch.randn(2, 3, 12)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), head(x))


@pytest.mark.parametrize("kw", [{"kind": "reid", "base_weight": 1.0},
                                {"kind": "reid", "base_weight": -0.1},
                                {"kind": "search", "text_encoder": "minilm", "base_weight": 0.5}])
def test_bad_base_weight_is_refused(kw):
    with pytest.raises(ValueError, match="base_weight"):
        EmbeddingHeadConfig(in_dim=4, out_dim=3, **kw)
