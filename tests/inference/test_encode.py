"""The one encoder pass: mirror averaging, precision and views, as every output uses them."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from crops_testlib import crop_image
from personlens.inference.encode import EncoderPass
from personlens.models.io import load_par


@pytest.fixture(scope="module")
def model(par_model_dir):
    return load_par(par_model_dir)


def _manual(model, x, flip: bool):
    with torch.inference_mode():
        p = torch.sigmoid(model(x).float())
        if flip:
            p = (p + torch.sigmoid(model(x.flip(-1)).float())) / 2
    return p.numpy()


@pytest.mark.parametrize("flip", [False, True])
def test_probabilities_match_the_model_with_and_without_mirror_averaging(model, flip):
    enc = EncoderPass(model, precision="fp32", flip_tta=flip)
    images = [crop_image(i) for i in range(3)]
    out = enc(images)
    assert out.views == (2 if flip else 1) and out.batch == 3
    assert out.tokens.shape[0] == 3 * out.views
    np.testing.assert_allclose(out.probs, _manual(model, enc.tensor(images), flip), atol=1e-5)


def test_a_mirror_view_for_a_cache_does_not_change_the_probabilities(model):
    enc = EncoderPass(model, precision="fp32", flip_tta=False)
    images = [crop_image(i) for i in range(2)]
    plain, mirrored = enc(images), enc(images, mirror=True)
    assert mirrored.views == 2
    np.testing.assert_allclose(mirrored.probs, plain.probs, atol=1e-6)
    torch.testing.assert_close(mirrored.first_view(mirrored.tokens), plain.tokens)
    merged = mirrored.merge(mirrored.tokens)
    torch.testing.assert_close(merged, (mirrored.tokens[:2] + mirrored.tokens[2:]) / 2)


def test_bf16_is_close_to_fp32_and_bad_precision_is_refused(model):
    images = [crop_image(i) for i in range(2)]
    p32 = EncoderPass(model, precision="fp32").encode(images).probs
    p16 = EncoderPass(model, precision="bf16").encode(images).probs
    assert np.abs(p32 - p16).max() < 0.05
    with pytest.raises(ValueError, match="bf16 or fp32"):
        EncoderPass(model, precision="fp16")


def test_a_bare_image_encoder_gives_tokens_only(model):
    enc = EncoderPass(model.encoder, precision="fp32")
    out = enc([crop_image(0)], probs=True)
    assert out.probs is None and out.tokens.shape[-1] == model.encoder.dim


def test_auto_precision_uses_bf16_only_where_the_cpu_has_it(monkeypatch):
    from personlens.inference import encode

    monkeypatch.delenv("PERSONLENS_PRECISION", raising=False)
    monkeypatch.setattr(encode, "native_bf16", lambda: True)
    assert encode.resolve_precision("auto") == "bf16"
    monkeypatch.setattr(encode, "native_bf16", lambda: False)
    assert encode.resolve_precision("auto") == "fp32"
    assert encode.resolve_precision("bf16") == "bf16"       # asked for explicitly
    monkeypatch.setenv("PERSONLENS_PRECISION", "bf16")
    assert encode.resolve_precision("auto") == "bf16"
    with pytest.raises(ValueError, match="auto, bf16 or fp32"):
        encode.resolve_precision("fp16")
