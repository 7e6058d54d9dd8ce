"""What the service reads and writes: records in a ``PersonStore`` plus faiss indexes over them.

* ``LibraryBackend``: a ``PersonLibrary`` directory (SQLite + saved indexes), the same library
  ``personlens index/search --db DIR`` use. SQLite connections belong to the thread that opened
  them, so the service makes and uses a backend on one dedicated thread.
* ``StoreBackend``: any ``PersonStore`` (PostgreSQL in scale-out mode) with in-memory faiss
  indexes fed from the store: rebuilt at start, then brought up to date incrementally (rows
  newer than the last one seen, when the store can list them) whenever the store's generation
  moves, so records written by other processes (workers) become searchable.
"""
from __future__ import annotations

import time
from typing import Iterable, Sequence

from ..data.schema import schema_for
from ..index import VectorIndex
from ..inference.records import PersonRecord
from ..library.query import (CameraStatsCache, FilterCache, camera_centred_records, matching_ids,
                             ranked_records, validate_where)
from ..store import EMBEDDING_KINDS, PersonStore


class Backend:
    """Queries shared by both backends (``store``, ``pipeline`` and ``index(kind)`` given)."""

    store: PersonStore
    pipeline = None
    save_every_s = 300.0
    root = None      # the library / API directory: files it owns are deleted with their records

    # -- identity -------------------------------------------------------------
    @property
    def model_version(self) -> str:
        return self.pipeline.model_version

    def attribute_names(self) -> list[str]:
        return list(self.store.attribute_names() or self.pipeline.names)

    def attributes(self) -> list[dict]:
        names = self.attribute_names()
        schema = schema_for(names)
        out = [{"name": a.name, "phrase": a.phrase, "group": a.group} for a in schema]
        # how far each attribute can be trusted on new cameras (the page marks the weak ones)
        try:
            transfer = self.pipeline.predictor.transfer
        except (AttributeError, ValueError):   # no predictor here, or an unreadable file: no marks
            transfer = None
        if transfer is not None:
            for a in out:
                t = transfer.attributes.get(a["name"])
                if t is not None:
                    a["new_cameras"] = {"auc": t.auc_new_cameras, "rating": t.rating}
        return out

    def validate_where(self, where: dict | None) -> dict[str, bool]:
        """``where`` checked against the attribute names, values as booleans
        (``library.query.validate_where``, as ``PersonLibrary`` does)."""
        return validate_where(where, self.attribute_names())

    def index(self, kind: str) -> VectorIndex:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- writing --------------------------------------------------------------
    def existing(self, ids: Sequence[str]) -> dict[str, str]:
        """id -> model_version for the stored ones among ``ids``."""
        many = getattr(self.store, "model_versions_of", None)
        if many is not None:
            return many(list(ids))
        out = {}
        for i in ids:
            v = self.store.model_version_of(i)
            if v is not None:
                out[i] = v
        return out

    def add(self, records: Sequence[PersonRecord]) -> None:
        raise NotImplementedError  # pragma: no cover

    # -- reading --------------------------------------------------------------
    def count(self) -> int:
        return self.store.count(self.model_version)

    def get(self, id: str) -> PersonRecord | None:
        return self.store.get(id)

    def get_many(self, ids: Sequence[str]) -> list[PersonRecord]:
        return self.store.get_many(list(ids))

    def search(self, text: str, top_k: int = 20, where: dict | None = None, **filters):
        """[(score, record)] best first, for a sentence (``search_vector``)."""
        return self.search_vector(self.pipeline.encode_query(text), top_k, where, **filters)

    def search_vector(self, query, top_k: int = 20, where: dict | None = None, *,
                      cameras: Sequence[str] | None = None, after: float | None = None,
                      before: float | None = None, offset: int = 0):
        """[(score, record)] best first, for an already encoded query; camera / time filters
        and ``offset`` as ``PersonLibrary.search``."""
        where = self.validate_where(where)
        return self._query("search", query, top_k, where, offset=offset, cameras=cameras,
                           after=after, before=before)

    def similar(self, id: str, top_k: int = 20, where: dict | None = None,
                camera_centring: bool = False, *, cameras: Sequence[str] | None = None,
                after: float | None = None, before: float | None = None,
                other_cameras: bool = False):
        """[(score, record)] for people who look like stored record ``id`` (itself left out;
        ``other_cameras``: its camera's records too); None when ``id`` is not stored;
        ValueError when it was made by another model, or for ``camera_centring``
        (``PersonLibrary.similar``) when no record has a camera."""
        where = self.validate_where(where)
        rec = self.store.get(id)
        if rec is None:
            return None
        if rec.model_version != self.model_version:
            raise ValueError("this record was made by another model; index it again first")
        exclude_cameras = [rec.camera] if other_cameras and rec.camera is not None else None
        filters = {"cameras": cameras, "after": after, "before": before,
                   "exclude_cameras": exclude_cameras}
        if camera_centring:
            return camera_centred_records(lambda: self.index("reid"), self.store,
                                          self.model_version, rec.reid_embedding, rec.camera,
                                          self._camera_stats.get(self.store, self.model_version),
                                          top_k, where, {id}, self._filters, **filters)
        return self._query("reid", rec.reid_embedding, top_k, where, exclude={id}, **filters)

    def similar_vector(self, vec, top_k: int = 20, where: dict | None = None, *,
                       exclude: Iterable[str] = (), cameras: Sequence[str] | None = None,
                       after: float | None = None, before: float | None = None,
                       exclude_cameras: Sequence[str] | None = None):
        """[(score, record)] for a re-ID embedding (a new image), without ``exclude``."""
        where = self.validate_where(where)
        return self._query("reid", vec, top_k, where, exclude=exclude, cameras=cameras,
                           after=after, before=before, exclude_cameras=exclude_cameras)

    def browse(self, where: dict | None = None, limit: int = 20, *,
               cameras: Sequence[str] | None = None, after: float | None = None,
               before: float | None = None, offset: int = 0) -> list[PersonRecord]:
        """Records matching the filters (no ranking), most recently stored first."""
        ids = self.matching_ids(where, cameras, after, before)[::-1]
        offset = max(0, int(offset))
        return self.store.get_many(ids[offset:offset + limit])

    def matching_ids(self, where: dict | None = None, cameras: Sequence[str] | None = None,
                     after: float | None = None, before: float | None = None) -> list[str]:
        """Ids (current model) passing the filters, in the order they were stored."""
        return matching_ids(self.store, self.model_version, self.validate_where(where),
                            cameras=cameras, after=after, before=before)

    def count_matching(self, where: dict | None = None, cameras: Sequence[str] | None = None,
                       after: float | None = None, before: float | None = None) -> int:
        return len(self.matching_ids(where, cameras, after, before))

    def cameras(self) -> list[dict]:
        """``[{"name", "count", "first", "last"}]`` (``PersonStore.camera_summary``)."""
        return self.store.camera_summary(self.model_version)

    def delete(self, ids: Sequence[str]) -> int:  # pragma: no cover - per backend
        raise NotImplementedError

    def _query(self, kind, vec, top_k, where, exclude: Iterable[str] = (), offset: int = 0,
               **filters):
        return ranked_records(lambda: self.index(kind), self.store, self.model_version,
                              vec, top_k, where, exclude, self._filters, offset=offset, **filters)

    def close(self) -> None:
        self.store.close()


class LibraryBackend(Backend):
    """A ``PersonLibrary`` directory (make and use it on one thread)."""

    def __init__(self, library):
        self.lib = library
        self._filters = FilterCache()
        self._camera_stats = CameraStatsCache()
        self.store = library.store
        self.pipeline = library.pipeline
        library.store.set_meta("models", library.models)
        library.store.set_meta("pipeline", self.pipeline.describe())
        for kind in EMBEDDING_KINDS:
            library.index(kind)
        self._last_save = time.monotonic()

    def attribute_names(self) -> list[str]:
        return self.lib.attribute_names()

    def index(self, kind: str) -> VectorIndex:
        return self.lib.index(kind)

    @property
    def root(self):
        return self.lib.db_dir

    def delete(self, ids: Sequence[str]) -> int:
        """``PersonLibrary.delete``: records, index entries and the files the library owns."""
        return self.lib.delete(ids)

    def add(self, records: Sequence[PersonRecord]) -> None:
        self.lib.add_records(records)
        if time.monotonic() - self._last_save > self.save_every_s:
            self.lib.save_indexes()
            self._last_save = time.monotonic()

    def close(self) -> None:
        self.lib.close()


class StoreBackend(Backend):
    """Any ``PersonStore`` with in-memory faiss indexes kept in step with it."""

    def __init__(self, store: PersonStore, pipeline, index_kind: str = "flat", *, root=None,
                 **index_params):
        self.store = store
        self.root = root
        self._filters = FilterCache()
        self._camera_stats = CameraStatsCache()
        self.pipeline = pipeline
        self.index_kind = index_kind
        self.index_params = index_params
        self._indexes: dict[str, VectorIndex] = {}
        self._seq = -1          # newest store row the indexes hold (stores with a sequence)
        self._gen = None        # store generation the indexes match

    def _dim(self, kind: str) -> int:
        return self.pipeline.search_dim if kind == "search" else self.pipeline.reid_dim

    def rebuild(self) -> None:
        mv = self.model_version
        self._seq = getattr(self.store, "max_seq", lambda: -1)()
        gen = self.store.generation()
        for kind in EMBEDDING_KINDS:
            idx = VectorIndex(self._dim(kind), self.index_kind, {"model_version": mv, "embedding": kind},
                              **self.index_params)
            for ids, mat in self.store.iter_embeddings(kind, mv):
                idx.add(ids, mat)
            self._indexes[kind] = idx
        self._gen = gen

    def sync(self) -> None:
        """Bring the indexes up to date with the store (cheap when nothing changed)."""
        gen = self.store.generation()
        if gen == self._gen and self._indexes:
            return
        changes = getattr(self.store, "changes_since", None)
        if not self._indexes or changes is None:
            return self.rebuild()
        mv = self.model_version
        seq = self._seq
        for rows in changes(self._seq, mv):
            seq = max(seq, rows["seq"])
            for kind in EMBEDDING_KINDS:
                self._indexes[kind].add(rows["ids"], rows[kind])
        self._seq = seq
        if any(len(i) != self.store.count(mv) for i in self._indexes.values()):
            return self.rebuild()  # deletions or records of another model: start over
        self._gen = gen

    def index(self, kind: str) -> VectorIndex:
        self.sync()
        return self._indexes[kind]

    def add(self, records: Sequence[PersonRecord]) -> None:
        records = list({r.id: r for r in records}.values())
        if records:
            self.store.put(records)
        self.sync()

    def delete(self, ids: Sequence[str]) -> int:
        """Remove records from the store, their index entries, and the files under ``root``
        the service owns for them (``library.files``). The next ``sync`` checks the indexes
        against the store (other processes may write meanwhile)."""
        from ..library.files import delete_with_files

        ids = list(dict.fromkeys(ids))
        self.sync()

        def drop_from_indexes():
            for idx in self._indexes.values():
                idx.remove(ids)

        if self.root is None:
            n = self.store.delete(ids)
            drop_from_indexes()
            return n
        n, _ = delete_with_files(self.store, ids, self.root, after_delete=drop_from_indexes)
        return n
