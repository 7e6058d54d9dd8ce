"""The encoder in ONNX Runtime: same numbers as PyTorch, never stale after a weight change,
PyTorch where it cannot run (the runtime rules: tests/models/test_onnx_runtime.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from crops_testlib import crop_image
from personlens.inference.encode import EncoderPass
from personlens.inference.onnx_encoder import OnnxEncoder
from personlens.models.io import load_par

@pytest.fixture()
def model(par_model_dir):
    return load_par(par_model_dir).eval()


def _batch(model, n=3):
    return EncoderPass(model, precision="fp32", runtime="torch").tensor([crop_image(i) for i in range(n)])


def test_tokens_and_probabilities_match_pytorch(model):
    images = [crop_image(i) for i in range(4)]
    fast = EncoderPass(model, precision="fp32", runtime="onnx", flip_tta=True)
    ref = EncoderPass(model, precision="fp32", runtime="torch", flip_tta=True)
    a, b = fast(images), ref(images)
    assert fast.runtime == "onnx" and isinstance(fast._run_encoder, OnnxEncoder)
    assert a.tokens.shape == b.tokens.shape and a.views == 2
    torch.testing.assert_close(a.tokens, b.tokens, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(a.probs, b.probs, atol=1e-5)


def test_a_weight_changed_in_place_gives_a_new_session_not_a_stale_one(model):
    run = OnnxEncoder(model.encoder)
    x = _batch(model)
    with torch.inference_mode():
        before = run(x)
        first = run._session
        bn = next(m for m in model.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d))
        bn.running_mean.add_(0.5)             # what `personlens adapt` does to the statistics
        after = run(x)
        want = model.encoder(x)
    assert run._session is not first
    assert (after - before).abs().max() > 1e-3
    torch.testing.assert_close(after, want, atol=1e-4, rtol=1e-4)
    with torch.inference_mode():
        run(x)
    assert run._session is not None and run._key == run._weights_key(x.shape[1:])


def test_the_same_weights_reuse_the_session(model):
    run = OnnxEncoder(model.encoder)
    x = _batch(model, 2)
    with torch.inference_mode():
        run(x)
        session = run._session
        run(x[:1])                            # another batch size: the batch axis is dynamic
    assert run._session is session


def test_training_mode_and_a_failed_export_run_in_pytorch(model, monkeypatch):
    run = OnnxEncoder(model.encoder)
    x = _batch(model, 2)
    model.encoder.train()
    try:
        with torch.no_grad():
            run(x)
    finally:
        model.encoder.eval()
    assert run._session is None               # BatchNorm re-estimation never went to ONNX

    def broken(sample):
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(run, "_export", broken)
    with pytest.warns(RuntimeWarning, match="could not run in ONNX Runtime"), torch.inference_mode():
        out = run(x)
    assert run.failed and "unsupported operator" in run.failed
    with torch.inference_mode():
        torch.testing.assert_close(out, model.encoder(x))
