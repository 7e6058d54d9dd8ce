"""The image encoder through ONNX Runtime: the fast fp32 path of ``EncoderPass``.

Why: on CPUs without native bf16 PyTorch's eager EfficientNet runs about 25 images/s on
two cores, and ONNX Runtime runs the same graph about 120 images/s with the same numbers
(tokens within 1e-4), because its fused depthwise convolutions suit these small convnets.

How: the encoder module is exported (TorchScript exporter, in memory, dynamic batch) the
first time it runs and whenever its weights change. A weight change is seen through the
version counters PyTorch keeps on every tensor (``_version`` grows on each in-place
write), so ``personlens adapt`` replacing BatchNorm statistics in place, or a state dict
loaded into the module, gives a new session and never a stale one. A module in training
mode (BatchNorm re-estimation) runs in PyTorch, as does one the exporter cannot handle
(once, with a warning).

``resolve_runtime`` picks the runtime: ``auto`` is ONNX Runtime where it is installed and
the precision is fp32, else PyTorch; ``PERSONLENS_RUNTIME=torch|onnx`` overrides ``auto``.
"""
from __future__ import annotations

import importlib.util
import io
import itertools
import os
import warnings

import torch

RUNTIMES = ("auto", "torch", "onnx")
_MISSING = "the onnx runtime needs `pip install onnxruntime onnx`"


def onnx_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


def resolve_runtime(runtime: str, precision: str) -> str:
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
            raise RuntimeError(_MISSING)
        if precision != "fp32":
            raise ValueError("the onnx runtime computes in fp32; use --precision fp32 "
                             "(or PERSONLENS_PRECISION=fp32) with it")
    return runtime


class OnnxEncoder:
    """``encoder(x) -> tokens`` like the module it wraps, computed by ONNX Runtime."""

    def __init__(self, module: torch.nn.Module):
        self.module = module
        self._session = None
        self._key = None
        self.failed: str | None = None   # why the export failed: the module then runs in torch

    def _weights_key(self, shape) -> tuple:
        tensors = itertools.chain(self.module.parameters(), self.module.buffers())
        return tuple(shape), tuple((id(t), t._version) for t in tensors)

    def _export(self, sample: torch.Tensor):
        import onnxruntime as ort

        buf = io.BytesIO()
        with warnings.catch_warnings():   # the TorchScript exporter's deprecation chatter
            warnings.simplefilter("ignore")
            torch.onnx.export(self.module, (sample[:1].contiguous(),), buf, dynamo=False,
                              input_names=["images"], output_names=["tokens"],
                              dynamic_axes={"images": {0: "batch"}, "tokens": {0: "batch"}},
                              opset_version=17)
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, torch.get_num_threads())
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # ONNX Runtime's workers spin after a run by default; the heads and LOMO that run
        # next in PyTorch share the same cores, and spinning workers halve their speed
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(buf.getvalue(), options, providers=["CPUExecutionProvider"])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.failed is not None or self.module.training:
            return self.module(x)
        key = self._weights_key(x.shape[1:])
        if key != self._key:
            try:
                self._session = self._export(x)
            except Exception as e:  # an op the exporter lacks: correct, only slower
                self.failed = f"{type(e).__name__}: {e}"
                warnings.warn(f"the encoder could not run in ONNX Runtime ({self.failed}); "
                              "using PyTorch", RuntimeWarning, stacklevel=2)
                return self.module(x)
            self._key = self._weights_key(x.shape[1:])   # export may touch version counters
        x = x.detach().float().contiguous()
        out = self._session.run(None, {"images": x.numpy()})[0]
        return torch.from_numpy(out)
