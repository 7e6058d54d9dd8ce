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


SMALL_COLOUR = {"height": 40, "width": 40, "bins": 2, "window": 10, "stride": 5, "scales": 2,
                "retinex_sigmas": [3.0]}


def _colour_head(weight: float = 0.36):
    from personlens.models.lomo import LomoConfig
    from personlens.models.embedding import with_lomo

    cfg = LomoConfig.from_dict(SMALL_COLOUR)
    g = torch.Generator().manual_seed(0)
    mean, proj = torch.rand(cfg.dim, generator=g), torch.randn(cfg.dim, 6, generator=g)
    return with_lomo(_head(0.5), mean, proj, weight, cfg), mean, proj


def test_colour_part_is_appended_with_its_weight():
    head, mean, proj = _colour_head(0.36)
    assert head.needs_lomo and head.config.embedding_dim == 5 + 12 + 6
    tokens, desc = torch.randn(3, 7, 12), torch.rand(3, mean.numel())
    with torch.no_grad():
        token_part = head(tokens)
        full = head.add_lomo(token_part, desc)
    assert full.shape == (3, 23)
    torch.testing.assert_close(full.norm(dim=-1), torch.ones(3))
    colour = F.normalize((desc - mean) @ proj, dim=-1)
    # cosine similarity = 0.64 * token-part similarity + 0.36 * colour similarity
    want = 0.64 * token_part @ token_part.T + 0.36 * colour @ colour.T
    torch.testing.assert_close(full @ full.T, want, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="LOMO descriptors of shape"):
        head.add_lomo(token_part, desc[:, :5])
    # a head without a colour part passes embeddings through
    plain = _head(0.5)
    assert not plain.needs_lomo and plain.add_lomo(token_part, desc) is token_part


def test_colour_part_survives_save_and_load(tmp_path):
    from personlens.models.lomo import LomoConfig

    head, mean, proj = _colour_head()
    loaded = load_embedding_head(save_embedding_head(head, tmp_path / "h"), "reid")
    assert loaded.config.lomo == LomoConfig.from_dict(SMALL_COLOUR).to_dict()
    assert loaded.lomo_config.dim == mean.numel()
    torch.testing.assert_close(loaded.lomo_proj, proj)
    e, desc = F.normalize(torch.randn(2, 17), dim=-1), torch.rand(2, mean.numel())
    with torch.no_grad():
        torch.testing.assert_close(loaded.add_lomo(e, desc), head.add_lomo(e, desc))


def test_large_tensors_are_stored_in_half_precision(tmp_path):
    from safetensors.torch import load_file

    from personlens.models.embedding import HALF_PRECISION_MIN_VALUES

    torch.manual_seed(0)
    head = EmbeddingHead(EmbeddingHeadConfig(kind="reid", in_dim=1280, out_dim=256, hidden=1024,
                                             pool="meanmax", base_weight=0.75)).eval()
    d = save_embedding_head(head, tmp_path / "h")
    stored = load_file(str(d / "model.safetensors"))
    for k, v in head.state_dict().items():
        big = v.numel() >= HALF_PRECISION_MIN_VALUES
        assert stored[k].dtype == (torch.float16 if big else torch.float32), k
    assert stored["proj.0.weight"].dtype == torch.float16      # 2,560 x 1,024
    loaded = load_embedding_head(d, "reid")
    assert loaded.proj[0].weight.dtype == torch.float32
    x = torch.randn(3, 5, 1280)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), head(x), atol=2e-3, rtol=0)


@pytest.mark.parametrize("kw", [{"kind": "reid", "lomo_weight": 0.5},
                                {"kind": "reid", "lomo_weight": 1.0, "lomo_dim": 4,
                                 "lomo": SMALL_COLOUR},
                                {"kind": "search", "text_encoder": "minilm", "lomo_weight": 0.5,
                                 "lomo_dim": 4, "lomo": SMALL_COLOUR}])
def test_bad_colour_settings_are_refused(kw):
    with pytest.raises(ValueError, match="lomo"):
        EmbeddingHeadConfig(in_dim=4, out_dim=3, **kw)


def test_heads_saved_before_the_lomo_rename_still_load(tmp_path):
    """Configs and weights written with the old names (colour_weight, colour_mean, ...) load
    into today's names, with the same outputs."""
    import json

    from safetensors.torch import load_file, save_file

    head, _, _ = _colour_head()
    d = save_embedding_head(head, tmp_path / "new")
    cfg = json.loads((d / "config.json").read_text())
    old_cfg = {{"lomo_weight": "colour_weight", "lomo_dim": "colour_dim", "lomo": "colour"}.get(k, k): v
               for k, v in cfg.items()}
    state = load_file(str(d / "model.safetensors"))
    old_state = {{"lomo_mean": "colour_mean", "lomo_proj": "colour_proj"}.get(k, k): v
                 for k, v in state.items()}
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text(json.dumps(old_cfg))
    save_file(old_state, str(old / "model.safetensors"), metadata={"format": "personlens-embedding-head"})
    loaded = load_embedding_head(old, "reid")
    assert loaded.needs_lomo and loaded.config.lomo_weight == head.config.lomo_weight
    torch.testing.assert_close(loaded.lomo_proj, head.lomo_proj)   # small: kept in float32
