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

``resolve_runtime`` (``models.onnx_runtime``) picks the runtime: ``auto`` is ONNX Runtime
where it is installed and the precision is fp32, else PyTorch; ``PERSONLENS_RUNTIME``
overrides ``auto``.
"""
from __future__ import annotations

import io
import itertools
import warnings

import torch

from ..models.onnx_runtime import RUNTIMES, onnx_available, resolve_runtime, session

__all__ = ["RUNTIMES", "OnnxEncoder", "onnx_available", "resolve_runtime"]


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
        buf = io.BytesIO()
        with warnings.catch_warnings():   # the TorchScript exporter's deprecation chatter
            warnings.simplefilter("ignore")
            torch.onnx.export(self.module, (sample[:1].contiguous(),), buf, dynamo=False,
                              input_names=["images"], output_names=["tokens"],
                              dynamic_axes={"images": {0: "batch"}, "tokens": {0: "batch"}},
                              opset_version=17)
        return session(buf.getvalue(), torch.get_num_threads())

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
