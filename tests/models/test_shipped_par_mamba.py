"""The shipped Mamba PAR model (``--model par-peta-mamba``): par-peta's encoder with a
bidirectional Vim head, chosen by the head ablation (docs/results.md). Its golden outputs are
checked with the other shipped attribute models in test_shipped_par.py."""
import json

import pytest
import torch

from personlens.data.schema import PETA_STANDARD_35
from personlens.inference.predict import AttributePredictor
from personlens.models.hub import SHIPPED, resolve

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


def test_another_input_size_is_refused_by_the_head(predictor):
    with pytest.raises(ValueError, match="trained on 48 encoder tokens"), torch.inference_mode():
        predictor.model(torch.rand(1, 3, 320, 192))
