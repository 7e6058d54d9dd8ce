"""Golden-output tests for the attribute weights shipped in the package."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from personlens.data.schema import PETA_STANDARD_35
from personlens.models.hub import shipped_dir
from personlens.models.io import load_par
from personlens.inference.predict import AttributePredictor

REPO = Path(__file__).resolve().parents[2]
PETA_IMAGES = REPO.parent / "shared/data/PETA/images"
# every shipped attribute model and its golden file (scripts/make_golden.py [--only NAME])
SHIPPED_PAR = {"par-peta": "par_peta.json", "par-peta-mamba": "par_peta_mamba.json"}


def synthetic_batch() -> torch.Tensor:  # same as scripts/make_golden.py
    g = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 256, 192, generator=g)


@pytest.fixture(scope="module")
def predictor():
    return AttributePredictor(precision="fp32")


@pytest.fixture(scope="module", params=sorted(SHIPPED_PAR))
def shipped(request):
    """(predictor, golden outputs) of each shipped attribute model."""
    golden = json.loads((REPO / "tests/golden" / SHIPPED_PAR[request.param]).read_text())
    return AttributePredictor(request.param, precision="fp32"), golden


def test_shipped_files_are_safetensors_with_config():
    d = shipped_dir()
    assert (d / "model.safetensors").stat().st_size > 100_000
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["attributes"] == list(PETA_STANDARD_35)
    assert len(cfg["thresholds"]) == 35 and all(0 < t < 1 for t in cfg["thresholds"])
    assert cfg["preprocess"]["height"] == 256 and cfg["preprocess"]["width"] == 192


def test_synthetic_logits_match_golden(shipped):
    predictor, golden = shipped
    with torch.inference_mode():
        logits = predictor.model(synthetic_batch())
    np.testing.assert_allclose(logits.numpy(), np.array(golden["synthetic_logits"]), atol=2e-3)


@pytest.mark.skipif(not PETA_IMAGES.exists(), reason="needs ../shared/data/PETA")
def test_real_crops_match_golden(shipped):
    predictor, golden = shipped
    for stem, expected in golden["real"].items():
        path = next(PETA_IMAGES.glob(stem + ".*"))
        got = next(predictor.predict_paths([path])).attributes
        assert got.keys() == expected.keys()
        np.testing.assert_allclose([got[k] for k in expected], list(expected.values()), atol=2e-3)


def test_bf16_fast_path_agrees_with_fp32(predictor):
    fast = AttributePredictor(precision="bf16")
    x = synthetic_batch()
    with torch.inference_mode():
        ref = torch.sigmoid(predictor.model(x))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = torch.sigmoid(fast.model(x).float())
    assert (ref - got).abs().max().item() < 0.08


def test_load_par_is_eval_mode_and_frozen():
    m = load_par()
    assert not m.training
    assert not any(p.requires_grad for p in m.encoder.parameters())
