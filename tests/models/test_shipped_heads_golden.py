"""Golden outputs of the shipped search and re-ID heads (regenerate: scripts/make_golden.py)."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from personlens.models.embedding import load_embedding_head
from personlens.models.hub import shipped_default as shipped_head_dir

REPO = Path(__file__).resolve().parents[2]
GOLDEN = json.loads((REPO / "tests/golden/heads.json").read_text())
PETA_IMAGES = REPO.parent / "shared/data/PETA/images"


def synthetic_tokens(dim: int) -> torch.Tensor:  # same as scripts/make_golden.py
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 48, dim, generator=g)


@pytest.mark.parametrize("kind", ["search", "reid"])
def test_shipped_head_matches_golden(kind):
    assert kind in GOLDEN["synthetic"], "golden outputs missing: run scripts/make_golden.py"
    head = load_embedding_head(shipped_head_dir(kind), kind)
    with torch.inference_mode():
        out = head(synthetic_tokens(head.config.in_dim))
    colour = head.config.lomo_dim if head.config.lomo_weight else 0   # added by add_lomo
    assert out.shape[-1] == head.config.embedding_dim - colour
    np.testing.assert_allclose(out.numpy(), np.array(GOLDEN["synthetic"][kind]), atol=1e-4)


def test_shipped_reid_head_keeps_the_generic_feature_and_a_colour_part():
    cfg = load_embedding_head(shipped_head_dir("reid"), "reid").config
    assert 0 < cfg.base_weight < 1 and 0 < cfg.lomo_weight < 1
    assert cfg.embedding_dim == cfg.out_dim + cfg.in_dim + cfg.lomo_dim
    assert "VIPeR" in cfg.notes["held_out"]
    assert not any(s in name for name in cfg.notes["trained_on"] for s in ("VIPeR", "PRID", "GRID"))


@pytest.mark.skipif(not PETA_IMAGES.exists(), reason="needs ../shared/data/PETA")
def test_pipeline_embeddings_of_real_crops_match_golden():
    from personlens.inference.pipeline import PersonPipeline, load_crop

    pipe = PersonPipeline(precision="fp32")
    assert {k: pipe.describe()[k] for k in ("search", "reid", "describer")} == GOLDEN["sources"]
    stems = list(GOLDEN["real"])
    paths = [next(PETA_IMAGES.glob(stem + ".*")) for stem in stems]
    records = pipe.process([load_crop(p)[1] for p in paths], [str(p) for p in paths])
    for stem, r in zip(stems, records):
        want = GOLDEN["real"][stem]
        n = len(want["search"])
        np.testing.assert_allclose(r.search_embedding[:n], want["search"], atol=2e-3)
        np.testing.assert_allclose(r.reid_embedding[:n], want["reid"], atol=2e-3)
        np.testing.assert_allclose(r.reid_embedding[-n:], want["reid_tail"], atol=2e-3)
        assert r.description == GOLDEN["descriptions"][stem]
