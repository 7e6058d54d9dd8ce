"""Durable record stores (SQLite now; the interface leaves room for PostgreSQL)."""
from .base import EMBEDDING_KINDS, PersonStore
from .sqlite import SQLiteStore

__all__ = ["EMBEDDING_KINDS", "PersonStore", "SQLiteStore"]
