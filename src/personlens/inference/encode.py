"""The one pass of the image encoder that every output of a crop comes from.

``EncoderPass`` owns how the attribute (PAR) model's encoder runs on a batch: preprocessing,
channels_last memory format, the precision (bf16 autocast where the CPU has bf16, else
fp32: ``resolve_precision``), the runtime (ONNX Runtime for fp32 where it is installed,
else PyTorch: ``onnx_encoder.resolve_runtime``), and mirror-image averaging (the PAR
model's ``flip_tta``: the crops and their mirror images go through the encoder together, in
one pass). It returns the patch tokens of every view and the attribute probabilities;
attributes (``predict``), descriptions (``describe``), the pipeline's embeddings
(``pipeline``) and the cached features of training and evaluation (``pooled``) all start
from it, so they see exactly the same numbers.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..models.hub import encoder_parts
from .onnx_encoder import OnnxEncoder, resolve_runtime

PRECISIONS = ("auto", "bf16", "fp32")


def native_bf16() -> bool:
    """Does this CPU compute bfloat16 natively (AVX512-BF16 or AMX)? Without it, PyTorch
    emulates bf16 autocast and the encoder runs about five times *slower* than in fp32
    (measured: 4.8 vs 24.1 crops/s on a 2-core AVX2 machine)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:   # not Linux: no cheap way to tell, so the safe choice
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str) -> str:
    """``auto`` (the default everywhere) -> ``bf16`` where the CPU has it natively, else
    ``fp32``; ``PERSONLENS_PRECISION`` overrides ``auto``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be auto, bf16 or fp32, got {precision!r}")
    if precision == "auto":
        env = os.environ.get("PERSONLENS_PRECISION", "").strip().lower()
        if env in ("bf16", "fp32"):
            return env
        return "bf16" if native_bf16() else "fp32"
    return precision


@dataclass
class EncoderOutput:
    """Tokens ``(views * B, N, C)`` (view 0 = the crops, view 1 = their mirror images) and
    attribute probabilities ``(B, A)`` of one pass."""

    tokens: torch.Tensor
    probs: np.ndarray | None
    batch: int
    views: int

    def merge(self, t: torch.Tensor) -> torch.Tensor:
        """Average a per-view output ``(views * B, ...)`` over the views -> ``(B, ...)``."""
        return (t[:self.batch] + t[self.batch:]) / 2 if self.views == 2 else t

    def first_view(self, t: torch.Tensor) -> torch.Tensor:
        return t[:self.batch]


class EncoderPass:
    """``encode(images) -> EncoderOutput`` for a PAR model (its encoder and attribute head).

    ``flip_tta`` defaults to the model's setting; ``mirror=True`` in a call adds the mirror
    view even when the probabilities do not average it (feature caches store both views).
    ``runtime`` (``auto``, ``torch``, ``onnx``) runs the encoder in ONNX Runtime or PyTorch;
    the attribute head always runs in PyTorch.
    """

    def __init__(self, model, precision: str = "auto", flip_tta: bool | None = None,
                 runtime: str = "auto"):
        self.precision = resolve_precision(precision)
        self.runtime = resolve_runtime(runtime, self.precision)
        self.model = model.eval().to(memory_format=torch.channels_last)
        # a PAR model, or a bare image encoder (the ImageNet baselines: tokens only)
        self.encoder, self.preprocess = encoder_parts(self.model)
        self._run_encoder = OnnxEncoder(self.encoder) if self.runtime == "onnx" else self.encoder
        self.head = getattr(self.model, "head", None) if self.encoder is not self.model else None
        model_flip = bool(getattr(getattr(self.model, "config", None), "flip_tta", False))
        self.flip_tta = model_flip if flip_tta is None else bool(flip_tta)

    def tensor(self, images: list[Image.Image]) -> torch.Tensor:
        """Decoded RGB crops -> the encoder's input batch."""
        return torch.stack([self.preprocess(im) for im in images])

    @torch.inference_mode()
    def encode(self, images: list[Image.Image] | torch.Tensor, *, mirror: bool | None = None,
               probs: bool = True) -> EncoderOutput:
        x = images if isinstance(images, torch.Tensor) else self.tensor(images)
        b = x.shape[0]
        mirror = self.flip_tta if mirror is None else (mirror or self.flip_tta)
        if self.runtime == "torch":   # ONNX Runtime takes NCHW: no round trip through NHWC
            x = x.contiguous(memory_format=torch.channels_last)
        if mirror:
            x = torch.cat([x, x.flip(-1)])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            tokens = self._run_encoder(x)
            logits = self.head(tokens) if probs and self.head is not None else None
        p = None
        if logits is not None:
            p = torch.sigmoid(logits.float())
            # mirror-image averaging only when the model asks for it; a mirror view added for
            # a feature cache does not change the probabilities
            p = (p[:b] + p[b:]) / 2 if mirror and self.flip_tta else p[:b]
            p = p.numpy()
        return EncoderOutput(tokens=tokens, probs=p, batch=b, views=2 if mirror else 1)

    __call__ = encode
