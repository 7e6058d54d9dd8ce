"""A lifelong re-ID head (``train reid --lifelong``) as the pipeline's re-ID head: its own pass
from the pixels, found by ``similar``, and a library indexed with another head is re-embedded."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from crops_testlib import write_crops

from personlens.inference.pipeline import PersonPipeline
from personlens.library import PersonLibrary
from personlens.models.factory import create_image_encoder
from personlens.models.lifelong import (LifelongReid, LifelongReidConfig, PrototypeMemory,
                                        TextAttributeSplit, load_lifelong_embedder, save_lifelong)

N = 6


def _head(out, seed: int):
    torch.manual_seed(seed)
    cfg = LifelongReidConfig(embed_dim=64, part_dim=32)
    model = LifelongReid(create_image_encoder(cfg.encoder, pretrained=True), cfg)
    model.add_domain("shopA", 3)
    model.config.domains.append({"name": "shopA", "ids": 3})
    memory, global_memory = PrototypeMemory(len(cfg.parts), cfg.part_dim), PrototypeMemory(1, cfg.embed_dim)
    for m in (memory, global_memory):
        m.start("shopA")
        m.update("shopA", torch.randn(4, m.k, m.dim))
    splitter = TextAttributeSplit(cfg.text_dim, len(cfg.parts), cfg.part_dim)
    return save_lifelong(out, model.eval(), splitter, memory, global_memory, {"strategy": "vladr"})


@pytest.fixture(scope="module")
def heads(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lifelong-heads")
    return _head(tmp / "a", 0), _head(tmp / "b", 1)


def test_pipeline_runs_the_heads_own_pass(heads, par_model_dir, pipeline, tmp_path):
    crops = write_crops(tmp_path / "crops", 3)
    pipe = PersonPipeline(par_model_dir, search_head=None, reid_head=heads[0],
                          text_encoder=pipeline.text_encoder)
    assert pipe.reid_dim == 64
    from PIL import Image

    images = [Image.open(p).convert("RGB") for p in crops]
    got = pipe.reid_embeddings(images)
    want = load_lifelong_embedder(heads[0]).embed_images(images).numpy()
    assert got.shape == (3, 64)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got, want, atol=1e-5)
    # not the attribute encoder's tokens: the baseline re-ID of the same crops differs in size
    assert pipeline.reid_embeddings(images).shape[1] != 64


def test_library_finds_by_example_and_reembeds_when_the_head_changes(heads, par_model_dir, pipeline,
                                                                      tmp_path):
    crops = write_crops(tmp_path / "crops", N)
    first, second = (PersonPipeline(par_model_dir, search_head=None, reid_head=h,
                                    text_encoder=pipeline.text_encoder) for h in heads)
    assert first.model_version != second.model_version != pipeline.model_version
    with PersonLibrary(tmp_path / "db", pipeline=first) as lib:
        s = lib.index_paths(crops, batch_size=4, progress=False)
        assert s.added == N and lib.index("reid").dim == 64
        hits = lib.similar(crops[2], top_k=3, exclude_self=False)
        assert hits[0].record.path == str(crops[2].resolve()) and hits[0].score == pytest.approx(1, abs=1e-4)
    with PersonLibrary(tmp_path / "db", pipeline=second) as lib:
        assert len(lib) == 0 and lib.stale_count() == N      # never compared across heads
        s = lib.index_paths(crops, batch_size=4, progress=False)
        assert (s.reembedded, s.stale) == (N, 0)
        assert lib.store.model_versions() == {second.model_version: N}


def test_a_directory_without_a_model_is_refused(tmp_path, par_model_dir, pipeline):
    (tmp_path / "empty").mkdir()
    with pytest.raises((ValueError, FileNotFoundError)):
        PersonPipeline(par_model_dir, search_head=None, reid_head=tmp_path / "empty",
                       text_encoder=pipeline.text_encoder)
