"""Vector indexes over record embeddings (faiss): exact by default, HNSW or IVF on request."""
from .vector import KINDS, AllowedIds, IndexFileError, VectorIndex, faiss_id

__all__ = ["KINDS", "AllowedIds", "IndexFileError", "VectorIndex", "faiss_id"]
