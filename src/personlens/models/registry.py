"""Name -> constructor registries, one per model family (timm/open_clip style).

A leaf module: model modules register their constructors here with ``@register``, and
``personlens.models.factory`` imports those modules and creates models by name, so no
module of ``personlens.models`` has to import the others to find them.
"""
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


def registered(family: str) -> list[str]:
    """Names registered so far in a family (``factory.list_models`` loads the built-in ones)."""
    return sorted(_REGISTRIES.get(family, {}))


def get(family: str, name: str) -> Callable:
    """A registered constructor; an unknown name is a ``KeyError`` listing the known ones."""
    reg = _REGISTRIES.get(family, {})
    if name not in reg:
        raise KeyError(f"unknown {family} {name!r}; available: {', '.join(sorted(reg)) or 'none'}")
    return reg[name]


def create(family: str, name: str, **kwargs):
    """Build a registered model; an unknown name is a ``KeyError`` listing the known ones."""
    return get(family, name)(**kwargs)
