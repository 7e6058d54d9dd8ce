"""Which runtime runs a network: the rules of ``auto``, the override and the refusals."""
from __future__ import annotations

import pytest

from personlens.models import onnx_runtime
from personlens.models.onnx_runtime import resolve_runtime


def test_runtime_rules(monkeypatch):
    monkeypatch.delenv("PERSONLENS_RUNTIME", raising=False)
    assert resolve_runtime("auto", "fp32") == "onnx"
    assert resolve_runtime("auto", "bf16") == "torch"    # ONNX Runtime runs fp32 only
    assert resolve_runtime("torch", "fp32") == "torch"
    monkeypatch.setenv("PERSONLENS_RUNTIME", "torch")
    assert resolve_runtime("auto", "fp32") == "torch"
    with pytest.raises(ValueError, match="fp32"):
        resolve_runtime("onnx", "bf16")
    with pytest.raises(ValueError, match="auto, torch or onnx"):
        resolve_runtime("tensorrt", "fp32")
    monkeypatch.setattr(onnx_runtime, "onnx_available", lambda: False)
    monkeypatch.delenv("PERSONLENS_RUNTIME")
    assert resolve_runtime("auto", "fp32") == "torch"
    with pytest.raises(RuntimeError, match="pip install onnxruntime"):
        resolve_runtime("onnx", "fp32")


def test_a_session_runs_a_tiny_model():
    import numpy as np
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    s = onnx_runtime.session(model.SerializeToString(), threads=1)
    np.testing.assert_array_equal(s.run(None, {"x": np.array([-1.0, 2.0], np.float32)})[0], [0.0, 2.0])
