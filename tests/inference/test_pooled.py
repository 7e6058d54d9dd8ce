"""Pooled encoder features: shape, cache, reuse, and exact agreement with the pipeline."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from crops_testlib import crop_image, write_crops
from encoder_testlib import encoder_runs

from personlens.models.embedding import EmbeddingHead, EmbeddingHeadConfig
from personlens.inference.pooled import (cache_namespace, head_embeddings, mean_pooled_embeddings,
                                     model_key, pooled_features)


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    return write_crops(tmp_path_factory.mktemp("crops"), 5)


def test_forward_pooled_is_forward_on_tokens():
    torch.manual_seed(0)
    tokens = torch.randn(3, 12, 16)
    for pool, hidden in (("meanmax", 8), ("mean", 0)):
        head = EmbeddingHead(EmbeddingHeadConfig(kind="reid", in_dim=16, out_dim=6, hidden=hidden,
                                                 pool=pool)).eval()
        pooled = torch.cat([tokens.mean(1), tokens.amax(1)], -1)  # the pooled-features layout
        torch.testing.assert_close(head(tokens), head.forward_pooled(pooled))
        torch.testing.assert_close(head(tokens), head.forward_pooled(head.pool(tokens)))


def test_shapes_cache_and_reuse(pipeline, crops, tmp_path):
    model = pipeline.model
    cache = tmp_path / "cache"
    p, probs = pooled_features(model, crops, probs=True, cache_root=cache, progress=False)
    assert p.shape == (5, 2, 2 * model.encoder.dim) and p.dtype == np.float16
    assert probs.shape == (5, len(pipeline.names)) and ((probs >= 0) & (probs <= 1)).all()
    c = p.shape[-1] // 2
    assert (p[..., c:] >= p[..., :c] - 1e-2).all()  # max >= mean
    folder = cache / cache_namespace(model)
    assert folder.name.startswith(model_key(model)) and folder.name.endswith(('-fp32', '-bf16'))
    assert len(list(folder.glob("*.npy"))) == 2  # features + probabilities
    # the same list again: read from the cache, no encoder call
    with encoder_runs(model) as calls:
        again = pooled_features(model, crops, cache_root=cache, progress=False)
        sub = pooled_features(model, crops[3:0:-1], flip=False, cache_root=cache, progress=False)
    assert not calls
    np.testing.assert_array_equal(again, p)
    np.testing.assert_array_equal(sub[:, 0], p[3:0:-1, 0])  # rows reused from the other list
    # without a cache: same numbers
    np.testing.assert_allclose(pooled_features(model, crops[:2], cache_root=None, progress=False)
                               .astype(np.float32), p[:2].astype(np.float32), atol=1e-2, rtol=1e-2)


def test_unreadable_image_is_named(pipeline, crops, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="bad.png"):
        pooled_features(pipeline.model, [crops[0], bad], cache_root=None, progress=False)


def test_pooled_embeddings_match_the_pipeline(pipeline, crops, tmp_path):
    """Heads applied to pooled features give the pipeline's own embeddings and probabilities."""
    torch.manual_seed(3)
    head = EmbeddingHead(EmbeddingHeadConfig(kind="reid", in_dim=1280, out_dim=32, hidden=16,
                                             pool="meanmax"))
    flip_tta = bool(pipeline.model.config.flip_tta)
    pooled, probs = pooled_features(pipeline.model, crops, probs=True, cache_root=None, progress=False)
    images = [crop_image(i) for i in range(5)]
    pipeline.reid_head = head  # the session pipeline with this head plugged in
    try:
        want_probs, want_reid, _ = pipeline.forward(images)
    finally:
        pipeline.reid_head = None
    np.testing.assert_allclose(probs, want_probs, atol=2e-3)
    np.testing.assert_allclose(head_embeddings(head, pooled, flip_tta), want_reid, atol=3e-3)
    _, base_reid, _ = pipeline.forward(images)
    np.testing.assert_allclose(mean_pooled_embeddings(pooled, flip_tta), base_reid, atol=1e-3)


def test_cache_folder_depends_on_precision(pipeline, monkeypatch):
    """bf16 features are never read back by an fp32 pass (or the other way round)."""
    monkeypatch.setenv("PERSONLENS_PRECISION", "fp32")
    fp32 = cache_namespace(pipeline.model)
    monkeypatch.setenv("PERSONLENS_PRECISION", "bf16")
    bf16 = cache_namespace(pipeline.model)
    assert fp32 != bf16 and fp32.endswith("-fp32") and bf16.endswith("-bf16")
