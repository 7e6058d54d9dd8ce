"""SigLIP 2 / SigLIP encoders loaded with transformers from a local directory (never downloaded).

The directory is what ``SiglipModel.save_pretrained`` / ``Siglip2Model.save_pretrained`` write
(``config.json`` + weights), plus the tokenizer files and ``preprocessor_config.json``.
Both model types are accepted:

* ``siglip``: fixed-resolution checkpoints (SigLIP, and SigLIP 2's fixed-resolution releases,
  which transformers stores as ``siglip``); images are ``image_size`` squares unless overridden,
  other sizes interpolate the position embeddings.
* ``siglip2``: NaFlex checkpoints, which take a variable number of patches. The image is resized
  to a fixed person-shaped size (what the official processor picks for a 2:1 crop within
  ``max_num_patches``), then cut into patches here; no padding is needed, so every token is real.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
from torch import nn

from ..data.images import Preprocess
from .image_encoders import ImageEncoder
from .registry import register
from .text_encoders import TextEncoder

MODEL_TYPES = ("siglip", "siglip2")
# Person crops are about twice as tall as wide; NaFlex models are fed this aspect ratio.
PERSON_ASPECT = (256, 128)
SIGLIP_MEAN_STD = (0.5, 0.5, 0.5)


def _resolve(path: str | os.PathLike | None, what: str) -> Path:
    if path is None:
        raise ValueError(
            f"siglip2 {what} needs path=: a local directory holding a SigLIP/SigLIP 2 checkpoint "
            "(config.json + weights, tokenizer and preprocessor_config.json); "
            "personlens never downloads models")
    p = Path(path).expanduser()
    if not p.is_dir():
        raise FileNotFoundError(f"siglip2 {what}: {p} is not a directory (pass a local checkpoint)")
    if not (p / "config.json").is_file():
        raise FileNotFoundError(f"siglip2 {what}: {p / 'config.json'} not found "
                                "(expected a save_pretrained() directory)")
    return p


def _load_config(path: Path):
    os.environ["HF_HUB_OFFLINE"] = "1"
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(str(path), local_files_only=True)
    if cfg.model_type not in MODEL_TYPES:
        raise ValueError(f"{path}: model_type {cfg.model_type!r} is not one of {MODEL_TYPES}")
    return cfg


def _model_classes(model_type: str):
    if model_type == "siglip2":
        from transformers import Siglip2TextModel, Siglip2VisionModel

        return Siglip2VisionModel, Siglip2TextModel
    from transformers import SiglipTextModel, SiglipVisionModel

    return SiglipVisionModel, SiglipTextModel


def _from_pretrained(cls, path: Path) -> nn.Module:
    """Load one tower from a (possibly full) checkpoint; the other tower's weights are expected
    leftovers, but a weight of this tower missing from the checkpoint is an error."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the load report lists the other tower as "unexpected"
    try:
        model, info = cls.from_pretrained(str(path), local_files_only=True, dtype=torch.float32,
                                          output_loading_info=True)
    finally:
        hf_logging.set_verbosity(level)
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise RuntimeError(f"{path}: checkpoint lacks {len(missing)} {cls.__name__} weights ({shown})")
    return model


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (list, tuple)):
        return int(v[0]), int(v[-1])
    return int(v), int(v)


def naflex_size(height: int, width: int, patch_size: int, max_num_patches: int,
                eps: float = 1e-5) -> tuple[int, int]:
    """The size SigLIP 2's NaFlex processor resizes a ``height x width`` image to.

    Same binary search as transformers' ``get_image_size_for_max_num_patches``: the largest
    scale whose patch-aligned size has at most ``max_num_patches`` patches.
    """

    def scaled(scale: float, size: int) -> int:
        return int(max(patch_size, math.ceil(size * scale / patch_size) * patch_size))

    lo, hi = eps / 10, 100.0
    while hi - lo >= eps:
        mid = (lo + hi) / 2
        if (scaled(mid, height) / patch_size) * (scaled(mid, width) / patch_size) <= max_num_patches:
            lo = mid
        else:
            hi = mid
    return scaled(lo, height), scaled(lo, width)


def _preprocess(path: Path, cfg, size: tuple[int, int] | None) -> Preprocess:
    """Resize/normalise from preprocessor_config.json, falling back to the model config."""
    pp_file = path / "preprocessor_config.json"
    pp = json.loads(pp_file.read_text()) if pp_file.is_file() else {}
    mean = tuple(float(v) for v in pp.get("image_mean", SIGLIP_MEAN_STD))
    std = tuple(float(v) for v in pp.get("image_std", SIGLIP_MEAN_STD))
    vc = cfg.vision_config
    patch = _pair(vc.patch_size)[0]
    if size is not None:
        h, w = int(size[0]), int(size[1])
    elif cfg.model_type == "siglip2":
        max_patches = int(pp.get("max_num_patches", vc.num_patches))
        h, w = naflex_size(*PERSON_ASPECT, _pair(pp.get("patch_size", patch))[0], max_patches)
    else:
        s = pp.get("size") or {}
        if "height" in s and "width" in s:
            h, w = int(s["height"]), int(s["width"])
        elif "shortest_edge" in s:
            h = w = int(s["shortest_edge"])
        else:
            h, w = _pair(vc.image_size)
    if h % patch or w % patch:
        raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {patch}")
    return Preprocess(height=h, width=w, mean=mean, std=std)


class SiglipImageEncoder(ImageEncoder):
    """SigLIP / SigLIP 2 vision tower: ``forward(x) -> (B, N, dim)`` patch tokens.

    ``x`` is a normalised ``(B, 3, H, W)`` batch (``self.preprocess`` makes one); ``embed(x)``
    gives the pooled, L2-normalised image embedding in the text encoder's space.
    """

    name = "siglip2"
    num_stages = 0  # a transformer: no convolutional stages to cache

    def __init__(self, model: nn.Module, model_type: str, preprocess: Preprocess):
        super().__init__()
        self.model = model
        self.model_type = model_type
        self.preprocess = preprocess
        vc = model.config
        self.dim = int(vc.hidden_size)
        self.patch_size = _pair(vc.patch_size)[0]
        self.image_size = _pair(getattr(vc, "image_size", 0) or 0)

    def _run(self, x: torch.Tensor):
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a (B, 3, H, W) batch, got shape {tuple(x.shape)}")
        b, c, h, w = x.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {p}")
        x = x.to(self.model.dtype)
        if self.model_type == "siglip2":
            hp, wp = h // p, w // p
            # (B, C, hp, p, wp, p) -> (B, hp*wp, p*p*C): row-major patches, each (py, px, c),
            # the layout of transformers' convert_image_to_patches
            patches = (x.reshape(b, c, hp, p, wp, p).permute(0, 2, 4, 3, 5, 1)
                       .reshape(b, hp * wp, p * p * c))
            mask = torch.ones(b, hp * wp, dtype=torch.long, device=x.device)
            shapes = torch.tensor([[hp, wp]], dtype=torch.long, device=x.device).expand(b, 2)
            return self.model(pixel_values=patches, pixel_attention_mask=mask,
                              spatial_shapes=shapes)
        return self.model(pixel_values=x, interpolate_pos_encoding=(h, w) != self.image_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x).last_hidden_state

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled image embedding (the attention-pooling head), L2-normalised: (B, dim)."""
        out = self._run(x).pooler_output
        if out is None:
            raise RuntimeError("this checkpoint has no vision head (vision_use_head=False)")
        return nn.functional.normalize(out.float(), dim=-1)


class SiglipTextEncoder(TextEncoder):
    """SigLIP / SigLIP 2 text tower: ``forward(texts) -> (T, dim)`` unit vectors.

    As in training: lowercased text, padded to ``max_position_embeddings`` (64), no attention
    mask, pooled at the last position (``pooler_output``).
    """

    name = "siglip2"

    def __init__(self, model: nn.Module, tokenizer, max_length: int):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        head = getattr(model, "head", None)
        self.dim = int(head.out_features if head is not None else model.config.hidden_size)

    def forward(self, texts: list[str]) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        batch = self.tokenizer([t.lower() for t in texts], padding="max_length", truncation=True,
                               max_length=self.max_length, return_tensors="pt")
        ids = batch["input_ids"].to(next(self.model.parameters()).device)
        out = self.model(input_ids=ids).pooler_output
        return nn.functional.normalize(out.float(), dim=-1)


@register("image_encoder", "siglip2")
def siglip2_image(path: str | os.PathLike | None = None, pretrained: bool = True,
                  size: tuple[int, int] | None = None) -> ImageEncoder:
    """SigLIP 2 (or SigLIP) vision tower from a local directory; ``size=(H, W)`` overrides."""
    p = _resolve(path, "image encoder")
    cfg = _load_config(p)
    vision_cls, _ = _model_classes(cfg.model_type)
    if pretrained:
        model = _from_pretrained(vision_cls, p)
    else:  # same architecture, random weights (tests)
        model = vision_cls(cfg.vision_config)
    return SiglipImageEncoder(model.eval(), cfg.model_type, _preprocess(p, cfg, size))


@register("text_encoder", "siglip2")
def siglip2_text(path: str | os.PathLike | None = None, pretrained: bool = True) -> TextEncoder:
    """SigLIP 2 (or SigLIP) text tower and tokenizer from a local directory."""
    p = _resolve(path, "text encoder")
    cfg = _load_config(p)
    from transformers import AutoTokenizer

    _, text_cls = _model_classes(cfg.model_type)
    tokenizer = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
    if pretrained:
        model = _from_pretrained(text_cls, p)
    else:
        model = text_cls(cfg.text_config)
    return SiglipTextEncoder(model.eval(), tokenizer, int(cfg.text_config.max_position_embeddings))
