"""Vector indexes over record embeddings (faiss): exact by default, HNSW or IVF on request."""
from .vector import KINDS, IndexFileError, VectorIndex, faiss_id

__all__ = ["KINDS", "IndexFileError", "VectorIndex", "faiss_id"]
