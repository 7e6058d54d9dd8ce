"""Create models by name: importing this module registers every built-in model family
(image encoders, text encoders, SigLIP 2, caption decoders, person detectors, attribute
heads) with
``models.registry``."""
from __future__ import annotations

from . import describer, detectors, image_encoders, par, par_heads, siglip, ssdlite, text_encoders  # noqa: F401  (they register)
from .registry import create, get, registered


def list_models(family: str) -> list[str]:
    return registered(family)


def create_image_encoder(name: str, **kwargs):
    return create("image_encoder", name, **kwargs)


def create_text_encoder(name: str, **kwargs):
    return create("text_encoder", name, **kwargs)


def create_detector(name: str = "ssdlite", *, tiles: tuple[int, int] | None = None, **kwargs):
    """A registered person detector; ``tiles=(cols, rows)`` also runs it on overlapping tiles
    (``detectors.TiledDetector``) for small people in large frames."""
    det = create("detector", name, **kwargs)
    if tiles and tuple(tiles) != (1, 1):
        det = detectors.TiledDetector(det, cols=tiles[0], rows=tiles[1])
    return det


__all__ = ["create", "create_detector", "create_image_encoder", "create_text_encoder", "list_models"]


def head_needs(kind: str) -> tuple[bool, bool]:
    """(attribute prompt embeddings, the encoder's token count): what a ``par_head`` is
    built from. An unknown name is a ``KeyError`` listing the registered heads."""
    fn = get("par_head", kind)
    return bool(getattr(fn, "uses_prompts", False)), bool(getattr(fn, "uses_tokens", False))


def build_head(image_dim: int, prompts, num_attr: int, cfg):
    """The attribute head ``cfg.kind`` (``HeadConfig``) on ``image_dim``-wide tokens."""
    return create("par_head", cfg.kind, image_dim=image_dim, prompts=prompts, num_attr=num_attr, cfg=cfg)
