"""Create models by name: importing this module registers every built-in model family
(image encoders, text encoders, SigLIP 2, caption decoders) with ``models.registry``."""
from __future__ import annotations

from . import describer, image_encoders, siglip, text_encoders  # noqa: F401  (they register)
from .registry import create, registered


def list_models(family: str) -> list[str]:
    return registered(family)


def create_image_encoder(name: str, **kwargs):
    return create("image_encoder", name, **kwargs)


def create_text_encoder(name: str, **kwargs):
    return create("text_encoder", name, **kwargs)


__all__ = ["create", "create_image_encoder", "create_text_encoder", "list_models"]
