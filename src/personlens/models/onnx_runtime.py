"""Which runtime runs a network, and ONNX Runtime sessions set up for a small shared CPU.

``auto`` is ONNX Runtime where it is installed (and, for the image encoder, the precision
is fp32), else the network's own runtime (PyTorch for the encoder, OpenCV's DNN module for
the person detector); ``PERSONLENS_RUNTIME=torch|onnx`` overrides ``auto`` (``torch``
meaning "not ONNX Runtime" for the detector too). Used by ``inference.onnx_encoder`` and
``models.ssdlite``.
"""
from __future__ import annotations

import importlib.util
import os

RUNTIMES = ("auto", "torch", "onnx")
MISSING = "the onnx runtime needs `pip install onnxruntime onnx`"


def onnx_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


def resolve_runtime(runtime: str, precision: str = "fp32") -> str:
    """``auto`` -> ``onnx`` where ONNX Runtime is installed and ``precision`` (already
    resolved) is fp32, else ``torch``. ONNX Runtime runs fp32 only, so asking for ``onnx``
    together with bf16 is an error rather than a silent change of precision."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be auto, torch or onnx, got {runtime!r}")
    if runtime == "auto":
        env = os.environ.get("PERSONLENS_RUNTIME", "").strip().lower()
        if env in ("torch", "onnx"):
            runtime = env
        else:
            return "onnx" if precision == "fp32" and onnx_available() else "torch"
    if runtime == "onnx":
        if not onnx_available():
            raise RuntimeError(MISSING)
        if precision != "fp32":
            raise ValueError("the onnx runtime computes in fp32; use --precision fp32 "
                             "(or PERSONLENS_PRECISION=fp32) with it")
    return runtime


def session(model: bytes, threads: int):
    """An ONNX Runtime CPU session for a serialised model, ``threads`` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # ONNX Runtime's workers spin after a run by default; the PyTorch and OpenCV work that
    # runs next shares the same cores, and spinning workers halve its speed (measured)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
