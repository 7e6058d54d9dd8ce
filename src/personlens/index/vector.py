"""``VectorIndex``: inner-product search over unit vectors with string ids (faiss).

Kinds:

* ``flat`` (default): exact ``IndexFlatIP`` behind an ``IndexIDMap2``.
* ``hnsw``: ``IndexHNSWFlat`` (``m``, ``ef_construction``, ``ef_search``). HNSW cannot delete,
  so removed vectors become tombstones that searches skip; the graph is compacted when
  tombstones pass 20% or a removed id is added again.
* ``ivf``: ``IndexIVFFlat`` (``nlist``, ``nprobe``). An IVF index needs training data, so it
  behaves as ``flat`` (exact) until it holds ``train_size`` vectors, then trains on them
  (``nlist`` defaults to about sqrt(n)). ``wants_retrain`` turns true once it has grown 8x
  past its training size; callers then rebuild it.

String ids map to int64 faiss ids through a 63-bit hash of the string, so the same id always
gets the same faiss id (collisions are detected and refused).

Attribute-filtered search (``allowed_ids``): small allowed sets (up to ``brute_force_max``) are
scored exactly from the stored vectors; larger ones go through a faiss ``IDSelector`` inside
the ANN search, widened (nprobe / efSearch x4) and finally done exactly when that returns
fewer than k hits. Turning 100k string ids into a selector costs far more than an IVF search,
so ``compile_filter`` does it once and the ``AllowedIds`` it returns can be passed to any
number of searches (callers cache it per filter and store state).

``save(path)`` writes one file (a JSON header, the id map, then the faiss index) to a temporary
name and renames it into place, so a crash never leaves a half-written index.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from pathlib import Path
from typing import Iterable, Sequence

import faiss
import numpy as np

from ..fileperms import private_opener

KINDS = ("flat", "hnsw", "ivf")
MAGIC = b"PLVIDX1\n"
DEFAULTS = {
    "flat": {},
    "hnsw": {"m": 32, "ef_construction": 200, "ef_search": 128},
    "ivf": {"nlist": None, "nprobe": None, "train_size": 20000},
}


class IndexFileError(ValueError):
    """An index file that cannot be read (missing, truncated, not an index)."""


class AllowedIds:
    """A compiled ``allowed_ids`` filter: the faiss ids of the allowed entries (sorted) and a
    selector over them, made by ``VectorIndex.compile_filter``. Entries removed later are
    still skipped by the search; entries added later are not allowed (compile again)."""

    def __init__(self, labels: np.ndarray, removals: int = 0):
        self.labels = labels
        self.selector = faiss.IDSelectorBatch(labels) if len(labels) else None
        self.removals = removals  # the index's removal count when compiled: all live then

    def __len__(self) -> int:
        return len(self.labels)


def faiss_id(key: str) -> int:
    """63-bit non-negative int64 id for a string id."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little") & ((1 << 63) - 1)


def auto_nlist(n: int) -> int:
    """About sqrt(n) lists, a power of two (1024 at 1M vectors: cheap to train, ~1k per list)."""
    return int(max(1, min(65536, 2 ** round(math.log2(max(1.0, math.sqrt(n)))))))


def auto_nprobe(nlist: int) -> int:
    return int(max(1, min(nlist, max(16, nlist // 16))))


class VectorIndex:
    def __init__(self, dim: int, kind: str = "flat", metadata: dict | None = None,
                 brute_force_max: int = 20000, **params):
        if kind not in KINDS:
            raise ValueError(f"index kind must be one of {KINDS}, got {kind!r}")
        unknown = set(params) - set(DEFAULTS[kind])
        if unknown:
            raise ValueError(f"unknown {kind} index parameters: {sorted(unknown)}")
        self.dim = int(dim)
        self.kind = kind
        self.params = {**DEFAULTS[kind], **params}
        self.metadata = dict(metadata or {})
        self.brute_force_max = brute_force_max
        self._keys: dict[int, str] = {}      # faiss id -> string id (live entries only)
        self._ids: dict[str, int] = {}       # string id -> faiss id
        self._tombstones: set[int] = set()   # hnsw: removed but still in the graph
        self._removals = 0                   # remove() calls that removed something
        self.trained_n = 0                   # ivf: vectors it was trained on (0: still exact)
        self._index = self._new_index()

    # ------------------------------------------------------------------ construction
    def _new_index(self):
        if self.kind == "hnsw":
            inner = faiss.IndexHNSWFlat(self.dim, int(self.params["m"]), faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = int(self.params["ef_construction"])
            inner.hnsw.efSearch = int(self.params["ef_search"])
            return faiss.IndexIDMap2(inner)
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))  # flat, and ivf before training

    @property
    def is_ann(self) -> bool:
        return self.kind == "hnsw" or (self.kind == "ivf" and self.trained_n > 0)

    @property
    def nlist(self) -> int | None:
        return int(self._index.nlist) if self.kind == "ivf" and self.trained_n else None

    @property
    def nprobe(self) -> int | None:
        if self.nlist is None:
            return None
        return int(self.params["nprobe"] or auto_nprobe(self.nlist))

    @property
    def wants_retrain(self) -> bool:
        return self.kind == "ivf" and self.trained_n > 0 and len(self) > 8 * self.trained_n

    @classmethod
    def build(cls, ids: Sequence[str], vectors: np.ndarray, dim: int | None = None,
              kind: str = "flat", metadata: dict | None = None, **params) -> "VectorIndex":
        vectors = np.asarray(vectors, np.float32)
        idx = cls(dim or vectors.shape[1], kind, metadata, **params)
        idx.add(ids, vectors)
        return idx

    def _train_ivf(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        n = len(ids)
        nlist = int(self.params["nlist"] or auto_nlist(n))
        nlist = max(1, min(nlist, n // 39 or 1))
        quantizer = faiss.IndexFlatIP(self.dim)
        ivf = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.own_fields = True
        quantizer.this.disown()
        ivf.cp.seed = 1234
        sample = vecs
        if n > 64 * nlist:  # k-means on a fixed random sample: faster, same quality
            rng = np.random.default_rng(0)
            sample = vecs[np.sort(rng.choice(n, 64 * nlist, replace=False))]
        ivf.train(np.ascontiguousarray(sample))
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
        ivf.add_with_ids(vecs, ids)
        self._index = ivf
        self.trained_n = n

    # ------------------------------------------------------------------ contents
    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, key: str) -> bool:
        return key in self._ids

    def ids(self) -> list[str]:
        return list(self._ids)

    def _live_ids(self) -> np.ndarray:
        """faiss ids of the live entries."""
        return np.fromiter(self._keys, dtype=np.int64, count=len(self._keys))

    def _live_allowed(self, allowed: AllowedIds) -> np.ndarray:
        """The allowed faiss ids still in the index (checked only after a removal)."""
        if allowed.removals == self._removals:
            return allowed.labels
        keys = self._keys
        return allowed.labels[np.fromiter((int(i) in keys for i in allowed.labels), bool,
                                          len(allowed.labels))]

    def _live_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        ints = np.fromiter(self._keys, dtype=np.int64, count=len(self._keys))
        if len(ints) == 0:
            return ints, np.zeros((0, self.dim), np.float32)
        return ints, self._index.reconstruct_batch(ints)

    def vectors(self, keys: Sequence[str]) -> np.ndarray:
        """The stored vectors of ``keys`` (KeyError for unknown ids)."""
        ints = np.array([self._ids[k] for k in keys], np.int64)
        return self._index.reconstruct_batch(ints) if len(ints) else np.zeros((0, self.dim), np.float32)

    def add(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Add (or replace) vectors; they should be unit vectors (inner product = cosine)."""
        keys = list(keys)
        vecs = np.ascontiguousarray(np.asarray(vectors, np.float32).reshape(len(keys), -1))
        if vecs.shape[1] != self.dim:
            raise ValueError(f"vectors have dimension {vecs.shape[1]}, index has {self.dim}")
        if not np.isfinite(vecs).all():
            raise ValueError("vectors contain NaN or infinity")
        if len(set(keys)) != len(keys):
            raise ValueError("duplicate ids in one add() call")
        if not keys:
            return
        self.remove([k for k in keys if k in self._ids])
        ints = np.array([faiss_id(k) for k in keys], np.int64)
        for k, i in zip(keys, ints.tolist()):
            other = self._keys.get(i)
            if other is not None and other != k:
                raise ValueError(f"id hash collision between {k!r} and {other!r}")
        if self._tombstones and not self._tombstones.isdisjoint(ints.tolist()):
            self._compact()
        if (self.kind == "ivf" and not self.trained_n
                and len(self) + len(keys) >= int(self.params["train_size"])):
            # enough data to train: train on what is stored plus this batch, in one go
            old_ints, old_vecs = self._live_arrays()
            if len(old_ints):
                ints, vecs = np.concatenate([old_ints, ints]), np.concatenate([old_vecs, vecs])
            self._train_ivf(ints, vecs)
        else:
            self._index.add_with_ids(vecs, ints)
        for k, i in zip(keys, ints[len(ints) - len(keys):].tolist()):
            self._keys[i] = k
            self._ids[k] = i

    def remove(self, keys: Iterable[str]) -> int:
        ints = [self._ids.pop(k) for k in keys if k in self._ids]
        if not ints:
            return 0
        for i in ints:
            del self._keys[i]
        self._removals += 1
        if self.kind == "hnsw":
            self._tombstones.update(ints)
            if len(self._tombstones) > 0.2 * max(1, self._index.ntotal):
                self._compact()
        else:
            self._index.remove_ids(np.array(ints, np.int64))
        return len(ints)

    def _compact(self) -> None:
        """HNSW: rebuild the graph from the live vectors (drops tombstones)."""
        ints, vecs = self._live_arrays()
        self._index = self._new_index()
        self._tombstones.clear()
        if len(ints):
            self._index.add_with_ids(vecs, ints)

    # ------------------------------------------------------------------ search
    def search(self, query: np.ndarray, k: int = 10,
               allowed_ids: Iterable[str] | None = None) -> list[tuple[str, float]]:
        """The ``k`` nearest ids to one query (highest inner product first), as (id, score)."""
        return self.search_many(np.asarray(query, np.float32).reshape(1, -1), k, allowed_ids)[0]

    def search_many(self, queries: np.ndarray, k: int = 10,
                    allowed_ids: Iterable[str] | None = None) -> list[list[tuple[str, float]]]:
        q = np.ascontiguousarray(np.asarray(queries, np.float32).reshape(-1, self.dim))
        if k <= 0 or len(self) == 0:
            return [[] for _ in q]
        allowed = None
        if allowed_ids is not None:
            allowed = (allowed_ids if isinstance(allowed_ids, AllowedIds)
                       else self.compile_filter(allowed_ids))
            if len(allowed) == 0:
                return [[] for _ in q]
            if len(allowed) <= max(self.brute_force_max, k):
                live = self._live_allowed(allowed)
                return self._exact(q, k, live) if len(live) else [[] for _ in q]
        k_eff = min(k, len(self) if allowed is None else len(allowed))
        scores, labels = self._faiss_search(q, k_eff, allowed, widen=1)
        out = []
        for row in range(len(q)):
            hits = self._hits(scores[row], labels[row])
            if len(hits) < k_eff and self.is_ann:
                s2, l2 = self._faiss_search(q[row:row + 1], k_eff, allowed, widen=4)
                hits = self._hits(s2[0], l2[0])
                if len(hits) < k_eff:  # still short (very selective filter): exact
                    ids = self._live_ids() if allowed is None else self._live_allowed(allowed)
                    hits = self._exact(q[row:row + 1], k_eff, ids)[0] if len(ids) else []
            out.append(hits)
        return out

    def _hits(self, scores, labels) -> list[tuple[str, float]]:
        return [(self._keys[int(i)], float(s)) for s, i in zip(scores, labels)
                if i >= 0 and int(i) in self._keys]

    def compile_filter(self, allowed_ids: Iterable[str]) -> AllowedIds:
        """The ``AllowedIds`` of these string ids (ids not in the index are left out)."""
        get = self._ids.get
        labels = np.unique(np.fromiter((get(a, -1) for a in allowed_ids), np.int64))
        return AllowedIds(labels[labels >= 0] if len(labels) and labels[0] < 0 else labels,
                          self._removals)

    def _selector(self, allowed: AllowedIds | None):
        """An IDSelector (plus the objects it references, kept alive by the caller)."""
        parts = []
        if allowed is not None:
            parts.append(allowed.selector)
        if self._tombstones:
            parts.append(faiss.IDSelectorNot(faiss.IDSelectorBatch(
                np.fromiter(self._tombstones, np.int64, len(self._tombstones)))))
        if not parts:
            return None, []
        sel = parts[0] if len(parts) == 1 else faiss.IDSelectorAnd(parts[0], parts[1])
        return sel, parts

    def _faiss_search(self, q, k, allowed, widen: int):
        sel, keep = self._selector(allowed)  # noqa: F841 (keep: selector lifetime)
        if self.kind == "hnsw":
            ef = max(int(self.params["ef_search"]) * widen, k)
            params = faiss.SearchParametersHNSW(efSearch=ef)
        elif self.kind == "ivf" and self.trained_n:
            params = faiss.SearchParametersIVF(nprobe=min(self.nlist, self.nprobe * widen))
        else:
            params = faiss.SearchParameters()
        if sel is not None:
            params.sel = sel
        return self._index.search(q, min(k, self._index.ntotal), params=params)

    def _exact(self, q, k, allowed: np.ndarray) -> list[list[tuple[str, float]]]:
        vecs = self._index.reconstruct_batch(allowed)         # (n, d)
        sims = (vecs @ q.T).T                                 # (Q, n); contiguous operands
        k = min(k, len(allowed))
        out = []
        for row in sims:
            top = np.argpartition(-row, k - 1)[:k] if k < len(row) else np.arange(len(row))
            top = top[np.lexsort((allowed[top], -row[top]))]   # score desc, then id: deterministic
            out.append([(self._keys[int(allowed[j])], float(row[j])) for j in top])
        return out

    # ------------------------------------------------------------------ persistence
    def _header(self) -> dict:
        return {"format": "personlens-vector-index", "version": 1, "dim": self.dim,
                "kind": self.kind, "params": self.params, "count": len(self),
                "trained_n": self.trained_n, "brute_force_max": self.brute_force_max,
                "metadata": self.metadata}

    def save(self, path: str | Path) -> Path:
        """Write to ``path`` atomically (temporary file, fsync, rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        ints = np.fromiter(self._keys, dtype=np.int64, count=len(self._keys))
        keys = "\n".join(self._keys[int(i)] for i in ints).encode()
        tombs = np.fromiter(self._tombstones, dtype=np.int64, count=len(self._tombstones))
        header = json.dumps(self._header(), sort_keys=True).encode()
        try:
            with open(tmp, "wb", opener=private_opener) as f:     # 0600, as the library's files
                f.write(MAGIC)
                for blob in (header, keys, ints.astype("<i8").tobytes(), tombs.astype("<i8").tobytes()):
                    f.write(struct.pack("<Q", len(blob)))
                    f.write(blob)
                faiss.write_index(self._index, faiss.PyCallbackIOWriter(f.write))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | Path) -> "VectorIndex":
        path = Path(path)
        try:
            with open(path, "rb") as f:
                if f.read(len(MAGIC)) != MAGIC:
                    raise IndexFileError(f"{path}: not a personlens vector index")

                def blob() -> bytes:
                    raw = f.read(8)
                    if len(raw) != 8:
                        raise IndexFileError(f"{path}: truncated")
                    (n,) = struct.unpack("<Q", raw)
                    data = f.read(n)
                    if len(data) != n:
                        raise IndexFileError(f"{path}: truncated")
                    return data

                header = json.loads(blob())
                keys_blob, ints_blob, tombs_blob = blob(), blob(), blob()
                index = faiss.read_index(faiss.PyCallbackIOReader(f.read))
        except FileNotFoundError:
            raise IndexFileError(f"{path}: no such file") from None
        except (OSError, RuntimeError, ValueError, json.JSONDecodeError) as e:
            if isinstance(e, IndexFileError):
                raise
            raise IndexFileError(f"{path}: cannot read ({e})") from None
        self = cls(header["dim"], header["kind"], header.get("metadata"),
                   header.get("brute_force_max", 20000), **header["params"])
        ints = np.frombuffer(ints_blob, dtype="<i8").astype(np.int64)
        keys = keys_blob.decode().split("\n") if keys_blob else []
        if len(keys) != len(ints) or len(ints) != header["count"]:
            raise IndexFileError(f"{path}: id map does not match its header")
        self._keys = dict(zip(ints.tolist(), keys))
        self._ids = {k: i for i, k in self._keys.items()}
        self._tombstones = set(np.frombuffer(tombs_blob, dtype="<i8").tolist())
        self.trained_n = int(header.get("trained_n", 0))
        if index.ntotal != len(self._keys) + len(self._tombstones) or index.d != self.dim:
            raise IndexFileError(f"{path}: faiss index does not match its id map")
        self._index = index
        return self

    def __repr__(self) -> str:
        extra = f", nlist={self.nlist}, nprobe={self.nprobe}" if self.nlist else ""
        return f"VectorIndex(dim={self.dim}, kind={self.kind!r}, n={len(self)}{extra})"
