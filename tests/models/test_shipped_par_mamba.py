"""Golden outputs of the shipped Mamba PAR model (``--model par-peta-mamba``): par-peta's
encoder with a bidirectional Vim head, chosen by the head ablation (docs/results.md)."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from personlens.data.schema import PETA_STANDARD_35
from personlens.inference.predict import AttributePredictor
from personlens.models.hub import SHIPPED, resolve

REPO = Path(__file__).resolve().parents[2]
GOLDEN = json.loads((REPO / "tests/golden/par_peta_mamba.json").read_text())
PETA_IMAGES = REPO.parent / "shared/data/PETA/images"


def synthetic_batch() -> torch.Tensor:  # same as scripts/make_golden.py
    g = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 256, 192, generator=g)


@pytest.fixture(scope="module")
def predictor():
    return AttributePredictor("par-peta-mamba", precision="fp32")


def test_it_is_shipped_as_a_vim_model_with_calibrated_thresholds():
    assert SHIPPED["par-peta-mamba"].present
    cfg = json.loads((resolve("par-peta-mamba", "attributes") / "config.json").read_text())
    assert cfg["head"]["kind"] == "vim" and cfg["head"]["tokens"] == 48
    assert cfg["attributes"] == list(PETA_STANDARD_35)
    assert len(cfg["thresholds"]) == 35 and all(0 < t < 1 for t in cfg["thresholds"])
    assert (resolve("par-peta-mamba", "attributes") / "val_scores.json").is_file()   # for `adapt`


def test_synthetic_logits_match_golden(predictor):
    with torch.inference_mode():
        logits = predictor.model(synthetic_batch())
    np.testing.assert_allclose(logits.numpy(), np.array(GOLDEN["synthetic_logits"]), atol=2e-3)


@pytest.mark.skipif(not PETA_IMAGES.exists(), reason="needs ../shared/data/PETA")
def test_real_crops_match_golden(predictor):
    for stem, expected in GOLDEN["real"].items():
        path = next(PETA_IMAGES.glob(stem + ".*"))
        got = next(predictor.predict_paths([path])).attributes
        assert got.keys() == expected.keys()
        np.testing.assert_allclose([got[k] for k in expected], list(expected.values()), atol=2e-3)


def test_another_input_size_is_refused_by_the_head(predictor):
    with pytest.raises(ValueError, match="trained on 48 encoder tokens"), torch.inference_mode():
        predictor.model(torch.rand(1, 3, 320, 192))
