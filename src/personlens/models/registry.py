"""Name -> constructor registries, one per model family (timm/open_clip style)."""
from __future__ import annotations

from typing import Callable

_REGISTRIES: dict[str, dict[str, Callable]] = {}


def register(family: str, name: str):
    """Decorator: ``@register("image_encoder", "efficientnet_lite0")``."""

    def deco(fn: Callable) -> Callable:
        reg = _REGISTRIES.setdefault(family, {})
        if name in reg:
            raise ValueError(f"{family} {name!r} registered twice")
        reg[name] = fn
        return fn

    return deco


def list_models(family: str) -> list[str]:
    _load_builtin()
    return sorted(_REGISTRIES.get(family, {}))


def create(family: str, name: str, **kwargs):
    _load_builtin()
    reg = _REGISTRIES.get(family, {})
    if name not in reg:
        raise KeyError(f"unknown {family} {name!r}; available: {', '.join(sorted(reg)) or 'none'}")
    return reg[name](**kwargs)


def _load_builtin() -> None:
    # Importing the modules runs their @register decorators.
    from . import captioner, image_encoders, siglip, text_encoders  # noqa: F401


def create_image_encoder(name: str, **kwargs):
    return create("image_encoder", name, **kwargs)


def create_text_encoder(name: str, **kwargs):
    return create("text_encoder", name, **kwargs)
