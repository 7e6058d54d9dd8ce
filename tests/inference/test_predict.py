"""AttributePredictor: order, error interleaving, batching, and result validation."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from personlens.inference.predict import AttributePrediction, AttributePredictor, PredictionError

NAMES = ["personalMale", "accessoryHat", "carryingBackpack"]
THRESHOLDS = [0.3, 0.5, 0.7]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A saved PAR model with a random cross-attention head (random prompts: no text encoder)."""
    from personlens.models.io import save_par
    from personlens.models.factory import build_head
    from personlens.models.par import HeadConfig, PARConfig, PARModel
    from personlens.models.factory import create_image_encoder

    torch.manual_seed(0)
    encoder = create_image_encoder("efficientnet_lite0", pretrained=True).freeze()
    prompts = torch.nn.functional.normalize(torch.randn(len(NAMES), 8, 384), dim=-1)
    cfg = HeadConfig(kind="cross_attention")
    head = build_head(encoder.dim, prompts, len(NAMES), cfg)
    config = PARConfig(attributes=list(NAMES), head=cfg, preprocess=encoder.preprocess.to_dict(),
                       thresholds=list(THRESHOLDS))
    return save_par(PARModel(encoder, head, config), tmp_path_factory.mktemp("predict-model"))


@pytest.fixture(scope="module")
def fp32(model_dir) -> AttributePredictor:
    return AttributePredictor(model_dir, precision="fp32")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("crops")
    rng = np.random.default_rng(0)
    out = []
    for i in range(5):
        arr = rng.integers(0, 256, size=(96 + 8 * i, 40 + 4 * i, 3), dtype=np.uint8)
        p = d / f"crop{i}.png"
        Image.fromarray(arr).save(p)
        out.append(p)
    return out


def _probs(results) -> np.ndarray:
    return np.array([[r.attributes[n] for n in NAMES] for r in results])


def test_predictor_reads_config(fp32):
    assert fp32.names == NAMES
    np.testing.assert_allclose(fp32.thresholds, THRESHOLDS)
    assert not fp32.model.training


def test_order_kept_with_errors_interleaved(fp32, images, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    missing = tmp_path / "missing.png"
    paths = [images[0], missing, images[1], images[2], bad, images[3]]
    for bs in (1, 2, 32):
        results = list(fp32.predict_paths(paths, batch_size=bs))
        assert [r.image for r in results] == [str(p) for p in paths]
        kinds = [type(r) for r in results]
        assert kinds == [AttributePrediction, PredictionError, AttributePrediction,
                         AttributePrediction, PredictionError, AttributePrediction]
        assert "no such file" in results[1].error and "not an image" in results[4].error


def test_errors_do_not_change_the_good_results(fp32, images, tmp_path):
    missing = tmp_path / "missing.png"
    clean = list(fp32.predict_paths(images[:3], batch_size=3))
    mixed = [r for r in fp32.predict_paths([missing, images[0], missing, images[1], images[2]],
                                           batch_size=3)
             if isinstance(r, AttributePrediction)]
    np.testing.assert_allclose(_probs(mixed), _probs(clean), atol=1e-3)


def test_batch_size_independent_fp32(fp32, images):
    one = list(fp32.predict_paths(images, batch_size=1))
    three = list(fp32.predict_paths(images, batch_size=3))
    assert [r.image for r in one] == [r.image for r in three] == [str(p) for p in images]
    np.testing.assert_allclose(_probs(one), _probs(three), atol=1e-3)
    # and the path API agrees with probabilities() on the decoded images
    direct = fp32.probabilities([Image.open(p).convert("RGB") for p in images])
    np.testing.assert_allclose(_probs(one), direct, atol=1e-3)


def test_bf16_close_to_fp32(model_dir, fp32, images):
    bf16 = AttributePredictor(model_dir, precision="bf16")
    assert bf16.precision == "bf16"
    # the default is bf16 where the CPU computes it natively, else fp32
    from personlens.inference.encode import native_bf16

    assert AttributePredictor(model_dir).precision == ("bf16" if native_bf16() else "fp32")
    np.testing.assert_allclose(_probs(bf16.predict_paths(images[:3])),
                               _probs(fp32.predict_paths(images[:3])), atol=0.05)


def test_present_matches_thresholds(fp32, images):
    for r in fp32.predict_paths(images):
        assert r.present == [n for n, t in zip(NAMES, fp32.thresholds) if r.attributes[n] >= t]
        assert all(0.0 <= p <= 1.0 for p in r.attributes.values())


def test_empty_input(fp32):
    assert list(fp32.predict_paths([])) == []
    assert list(fp32.predict_paths(iter(()))) == []
    assert fp32.probabilities([]).shape == (0, len(NAMES))


def test_accepts_a_generator_and_str_paths(fp32, images):
    results = list(fp32.predict_paths((str(p) for p in images[:2]), batch_size=1))
    assert [r.image for r in results] == [str(p) for p in images[:2]]


def test_to_dict(fp32, images):
    r = next(fp32.predict_paths(images[:1]))
    d = r.to_dict()
    assert d == {"image": str(images[0]), "attributes": r.attributes, "present": r.present}


def test_bad_precision(model_dir):
    with pytest.raises(ValueError, match="bf16 or fp32"):
        AttributePredictor(model_dir, precision="fp16")


@pytest.mark.parametrize("value", [-0.01, 1.01, math.nan, math.inf])
def test_prediction_rejects_out_of_range(value):
    with pytest.raises(ValueError, match="outside"):
        AttributePrediction("x.png", {"a": 0.5, "b": value}, ["a"])


def test_prediction_accepts_bounds():
    p = AttributePrediction("x.png", {"a": 0.0, "b": 1.0}, ["b"])
    assert p.to_dict()["attributes"] == {"a": 0.0, "b": 1.0}


def test_flip_tta_override_changes_only_the_mirror_averaging(tmp_path):
    """flip_tta=False must give the plain forward; the default follows the model config."""
    import torch
    from PIL import Image as _Image

    from personlens.inference.predict import AttributePredictor as _AP

    img = _Image.new("RGB", (64, 128), (200, 30, 30))
    img.paste((20, 20, 200), (0, 0, 20, 128))  # asymmetric, so the mirror differs
    plain = _AP(precision="fp32", flip_tta=False)
    tta = _AP(precision="fp32", flip_tta=True)
    assert plain.flip_tta is False and tta.flip_tta is True
    x = plain.preprocess(img)[None]
    with torch.inference_mode():
        ref = torch.sigmoid(plain.model(x)).numpy()[0]
        mirrored = torch.sigmoid(plain.model(x.flip(-1))).numpy()[0]
    assert abs(plain.probabilities([img])[0] - ref).max() < 1e-5
    assert abs(tta.probabilities([img])[0] - (ref + mirrored) / 2).max() < 1e-5
