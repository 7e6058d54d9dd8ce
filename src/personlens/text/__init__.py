"""Text helpers for person descriptions and search queries."""
from __future__ import annotations

from .chunker import noun_chunks

__all__ = ["noun_chunks"]
