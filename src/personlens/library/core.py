"""``PersonLibrary``: a folder of person crops made searchable (pipeline + store + indexes).

A library lives in one directory (``db_dir``)::

    personlens.sqlite      the records (the source of truth, see store/sqlite.py)
    search.index           faiss index over the search embeddings   (derived, rebuildable)
    reid.index             faiss index over the re-ID embeddings     (derived, rebuildable)
    adaptation.*           optional: the adaptation to its cameras (``personlens adapt``)

``index_paths`` is idempotent and crash-safe: records are keyed by the SHA-256 of the file
bytes, a crop already stored by the current model is skipped, one stored by another model
is re-embedded (its record replaced, never mixed with the new space), and every batch is
committed in one transaction. Killing a run loses at most the batch in flight; rerunning
finishes the job with no duplicates. Indexes are saved when a run ends; one that is missing,
unreadable or out of step with the store (model_version, store generation, count, settings)
is rebuilt from the stored embeddings when the library opens it.

The models a library was built with (PAR directory, embedding heads) and its index settings
are remembered in the store, so ``search`` and ``similar`` use the same models as ``index``.
Heads not chosen are ``"default"``: the shipped heads when the package has them (and they fit
the PAR model), else the baselines; ``"baseline"`` asks for a baseline explicitly.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from PIL import Image

from ..data.images import decode_image, read_image_bytes
from ..fileperms import make_private_dirs
from ..index import IndexFileError, VectorIndex
from ..index.vector import DEFAULTS as INDEX_DEFAULTS
from ..inference.adaptation import Adaptation, AdaptationError
from ..inference.predict import PredictionError
from ..inference.records import PersonRecord, content_id
from ..store import EMBEDDING_KINDS, SQLiteStore
from .indexing import IndexSummary, _abs, index_crops
from .query import (CameraStatsCache, FilterCache, camera_centred_records, matching_ids,
                    ranked_records, validate_where)
from .results import result_json

DB_FILE = "personlens.sqlite"
INDEX_FILES = {"search": "search.index", "reid": "reid.index"}


class LibraryNotFoundError(FileNotFoundError):
    """``db_dir`` holds no library (and ``create=False``)."""


class ReadOnlyLibraryError(PermissionError):
    """A write (index, add, delete) on a library opened with ``read_only=True``."""


class PersonNotFoundError(KeyError):
    """No stored record has this id."""

    def __str__(self) -> str:
        return self.args[0]


@dataclass
class SearchHit:
    rank: int
    score: float
    record: PersonRecord

    def to_dict(self, root=None) -> dict:
        """The one result schema (``library.results.result_json``); ``root``: paths relative
        to that library directory (as the service shows them)."""
        return result_json(self.record, score=self.score, rank=self.rank, root=root)

    @property
    def track(self) -> dict | None:
        """For a record made from a video track: its time span, frames, crops and the
        attributes its crops disagree on (``library.video``); None for a single crop."""
        from .video import track_summary

        return track_summary(self.record.path) if self.record.track_id else None


DEFAULT_HEAD, BASELINE_HEAD = "default", "baseline"  # as in personlens.inference.pipeline


def _head_arg(h) -> str | None:
    """A head argument as stored: "default", "baseline", an absolute directory, or None."""
    if h is None or (isinstance(h, str) and h in (DEFAULT_HEAD, BASELINE_HEAD)):
        return h
    return _abs(h)


class PersonLibrary:
    """A folder of person crops made searchable: records in SQLite, embeddings in faiss.

    Example (the README's "Python API" section runs a longer one)::

        from personlens import PersonLibrary

        with PersonLibrary("people-db") as library:
            library.index_paths(["crops/a.jpg", "crops/b.jpg"], camera="cam1")
            hits = library.search("a woman with a backpack", top_k=5, where={"personalMale": "no"})
            more = library.similar("crops/a.jpg", top_k=5)
            print([(h.rank, h.score, h.record.path, h.record.description) for h in hits])

    ``where`` values are booleans or yes/no; heads not given are the shipped ones when they
    fit the attribute model, and the models a library was built with are remembered.
    """

    def __init__(self, db_dir: str | Path = "personlens-db", *, par_dir=None, search_head=None,
                 reid_head=None, describer=None, pipeline=None, index_kind: str | None = None,
                 index_params: dict | None = None, create: bool = True, precision: str = "auto",
                 checkpoint_every_s: float = 300.0, read_only: bool = False):
        """``read_only``: open an existing library for searching only; nothing in its folder is
        written (the store is opened read-only, indexes out of step are rebuilt in memory and
        never saved), so a library the user may not write can be searched. Adding or deleting
        records raises ``ReadOnlyLibraryError``. A new library's folder is made 0700 and its
        files 0600 (``personlens.fileperms``)."""
        self.db_dir = Path(db_dir)
        self.read_only = read_only
        if not (self.db_dir / DB_FILE).exists():
            if not create or read_only:
                raise LibraryNotFoundError(f"no personlens library in {self.db_dir} "
                                        f"(create one with `personlens index PATH --db {self.db_dir}`)")
            make_private_dirs(self.db_dir)
        self.store = SQLiteStore(self.db_dir / DB_FILE, read_only=read_only)
        stored = self.store.get_meta("models", {}) or {}
        given = {"par_dir": _abs(par_dir), "search_head": _head_arg(search_head),
                 "reid_head": _head_arg(reid_head), "describer": _head_arg(describer)}
        self.models = {k: given[k] if given[k] is not None else stored.get(k) for k in given}
        for k in ("search_head", "reid_head", "describer"):  # nothing chosen: shipped or none
            if self.models[k] is None:
                self.models[k] = DEFAULT_HEAD
        stored_index = self.store.get_meta("index", None) or {"kind": "flat", "params": {}}
        cfg = stored_index
        if index_kind is not None or index_params is not None:
            kind = index_kind or stored_index["kind"]
            if index_params is not None:
                params = dict(index_params)
            else:  # same kind: keep its stored parameters; another kind: its defaults
                params = stored_index["params"] if kind == stored_index["kind"] else {}
            VectorIndex(8, kind, **params)  # validates the kind and the parameter names
            cfg = {"kind": kind, "params": params}
        if cfg != self.store.get_meta("index", None) and not read_only:
            self.store.set_meta("index", cfg)
        self.index_config = cfg
        self.precision = precision
        self.checkpoint_every_s = checkpoint_every_s
        self._pipeline = pipeline
        self._adaptation_applied = False
        self._indexes: dict[str, VectorIndex] = {}
        self._filters = FilterCache()
        self._camera_stats = CameraStatsCache()

    # ------------------------------------------------------------------ parts
    @property
    def pipeline(self):
        if self._pipeline is None:
            from ..inference.pipeline import PersonPipeline

            m = self.models
            self._pipeline = PersonPipeline(m["par_dir"], m["search_head"], m["reid_head"],
                                            describer=m["describer"], precision=self.precision)
        if not self._adaptation_applied:
            self._adaptation_applied = True
            adaptation = Adaptation.load(self.db_dir)
            if adaptation is not None or getattr(self._pipeline, "adaptation", None) is not None:
                try:
                    self._pipeline.set_adaptation(adaptation)   # refuses one for another model
                except AdaptationError as e:
                    self._adaptation_applied = False
                    raise AdaptationError(f"{self.db_dir}: {e}") from None
        return self._pipeline

    def pipeline_for_adapting(self):
        """The pipeline without the stored adaptation applied: for ``adapt`` and ``--reset``,
        which replace or remove it, and for ``info``, which reports one that does not fit."""
        self._adaptation_applied = True
        return self.pipeline

    @property
    def adaptation(self):
        """The library's ``Adaptation`` in use, or None."""
        return getattr(self.pipeline, "adaptation", None)

    @property
    def model_version(self) -> str:
        return self.pipeline.model_version

    def __len__(self) -> int:
        return self.store.count(self.model_version)

    def stale_count(self) -> int:
        """Records made by another model (not searchable until re-indexed)."""
        return self.store.count() - self.store.count(self.model_version)

    def attribute_names(self) -> list[str]:
        return self.store.attribute_names() or list(self.pipeline.names)

    def validate_where(self, where: dict | None) -> dict[str, bool]:
        """``where`` checked against this library's attributes, values as booleans
        (``query.validate_where``)."""
        return validate_where(where, self.attribute_names())

    # ------------------------------------------------------------------ indexes
    def _index_settings(self) -> tuple[str, dict]:
        kind = self.index_config["kind"]
        return kind, {**INDEX_DEFAULTS[kind], **self.index_config.get("params", {})}

    def index(self, kind: str) -> VectorIndex:
        """The vector index over one embedding kind, loaded or rebuilt so it matches the store."""
        if kind not in EMBEDDING_KINDS:
            raise ValueError(f"embedding kind must be one of {EMBEDDING_KINDS}")
        if kind in self._indexes:
            idx = self._indexes[kind]
            if idx.metadata.get("generation") == self.store.generation():
                return idx
        mv, gen = self.model_version, self.store.generation()
        index_kind, params = self._index_settings()
        path = self.db_dir / INDEX_FILES[kind]
        idx = None
        try:
            idx = VectorIndex.load(path)
        except IndexFileError:
            pass
        if idx is None or not (idx.metadata.get("model_version") == mv
                               and idx.metadata.get("generation") == gen
                               and idx.kind == index_kind and idx.params == params
                               and len(idx) == self.store.count(mv) and not idx.wants_retrain):
            idx = self.rebuild_index(kind)
        self._indexes[kind] = idx
        return idx

    def rebuild_index(self, kind: str) -> VectorIndex:
        """Rebuild one index from the store's embeddings (current model only) and save it."""
        mv, gen = self.model_version, self.store.generation()
        index_kind, params = self._index_settings()
        dim = self.pipeline.search_dim if kind == "search" else self.pipeline.reid_dim
        idx = VectorIndex(dim, index_kind, {"model_version": mv, "generation": gen,
                                            "embedding": kind}, **params)
        chunks = self.store.iter_embeddings(kind, mv)
        if index_kind == "ivf":  # train once on everything, not on the first chunk
            parts = list(chunks)
            if parts:
                idx.add([i for ids, _ in parts for i in ids], np.concatenate([m for _, m in parts]))
        else:
            for ids, mat in chunks:
                idx.add(ids, mat)
        if not self.read_only:         # read-only: kept in memory only
            idx.save(self.db_dir / INDEX_FILES[kind])
        self._indexes[kind] = idx
        return idx

    def save_indexes(self) -> None:
        """Save the open indexes that are in step with the store (others get rebuilt on open)."""
        if self.read_only:
            return
        gen = self.store.generation()
        for kind, idx in list(self._indexes.items()):
            if idx.metadata.get("generation") == gen:
                idx.save(self.db_dir / INDEX_FILES[kind])
            else:
                del self._indexes[kind]

    # ------------------------------------------------------------------ indexing
    def index_paths(self, paths: Iterable[str | Path], batch_size: int = 32, progress: bool = True,
                    camera: str | None = None,
                    on_error: Callable[[PredictionError], None] | None = None, *,
                    timestamp: float | None = None, timestamps_from: str | None = None,
                    metadata: Sequence[dict | None] | None = None) -> IndexSummary:
        """Add crops to the library (see the module docstring for the guarantees).

        What each record keeps: ``camera`` and ``timestamp`` (epoch seconds) for every crop
        of the run; ``timestamps_from`` ``"mtime"`` (the file's modification time) or
        ``"exif"`` (its EXIF DateTimeOriginal, else none) for crops without a time;
        ``metadata``: one dict (or None) per path, in order, whose ``camera``, ``timestamp``
        and ``track_id`` override those (a manifest). A crop re-embedded for a new model
        keeps its stored camera, time and track where this run gives none.
        """
        return index_crops(self, paths, batch_size, progress, camera, on_error, timestamp=timestamp,
                           timestamps_from=timestamps_from, metadata=metadata)

    def add_records(self, records: Sequence[PersonRecord]) -> None:
        """Store finished records and add their embeddings to the indexes.

        The store write is one transaction; if the index update then fails the in-memory indexes
        are dropped and rebuilt from the store when next used, so the two never disagree.
        """
        self._check_writable()
        records = list({r.id: r for r in records}.values())
        if not records:
            return
        for kind in EMBEDDING_KINDS:
            self.index(kind)  # in step with the store *before* the write; they follow it after
        self.store.put(records)
        try:
            gen = self.store.generation()
            for kind, idx in self._indexes.items():
                idx.add([r.id for r in records],
                        np.stack([getattr(r, f"{kind}_embedding") for r in records]))
                idx.metadata["generation"] = gen
        except BaseException:
            self._indexes.clear()  # out of step: rebuilt from the store when next opened
            raise

    def delete(self, ids: Iterable[str]) -> int:
        """Remove records: from the store (one transaction), from the indexes, and the files
        the library owns for them (upload copies under ``uploads/``, a video track's crops
        and track file under ``video/``, when no other record uses them; ``library.files``);
        files outside the library directory are never touched. Returns how many existed."""
        from .files import delete_with_files

        self._check_writable()
        ids = list(dict.fromkeys(ids))
        for kind in EMBEDDING_KINDS:
            self.index(kind)   # in step with the store before the delete: updated, not rebuilt, after

        def drop_from_indexes():
            gen = self.store.generation()
            for idx in self._indexes.values():
                idx.remove(ids)
                idx.metadata["generation"] = gen

        n, _ = delete_with_files(self.store, ids, self.db_dir, after_delete=drop_from_indexes)
        return n

    # ------------------------------------------------------------------ querying
    def search(self, text: str, top_k: int = 20, where: dict[str, bool] | None = None, *,
               cameras: Sequence[str] | None = None, after: float | None = None,
               before: float | None = None, offset: int = 0) -> list[SearchHit]:
        """People matching a sentence, best first, optionally restricted by attribute filters,
        cameras (any of them) and time (``after`` <= timestamp < ``before``, epoch seconds;
        records without a time fail either). ``offset`` skips the best ``offset`` (paging;
        ranks go on from ``offset + 1``)."""
        where = self.validate_where(where)
        return self._query("search", self.pipeline.encode_query(text), top_k, where,
                           offset=offset, cameras=cameras, after=after, before=before)

    def filter(self, where: dict[str, bool] | None = None, limit: int | None = None, *,
               cameras: Sequence[str] | None = None, after: float | None = None,
               before: float | None = None, offset: int = 0) -> list[PersonRecord]:
        """Records matching the filters (no ranking), most recently stored first; ``offset``
        and ``limit`` page through them."""
        ids = matching_ids(self.store, self.model_version, self.validate_where(where),
                           cameras=cameras, after=after, before=before)[::-1]
        offset = max(0, int(offset))
        ids = ids[offset:offset + limit] if limit else ids[offset:]
        return self.store.get_many(ids)

    def count_matching(self, where: dict[str, bool] | None = None,
                       cameras: Sequence[str] | None = None, after: float | None = None,
                       before: float | None = None) -> int:
        """How many records (current model) pass the filters: the total behind a page."""
        return len(matching_ids(self.store, self.model_version, self.validate_where(where),
                                cameras=cameras, after=after, before=before))

    def cameras(self) -> list[dict]:
        """``[{"name", "count", "first", "last"}]``: each camera's records (current model) and
        their earliest / latest timestamp (None when none has one), by name."""
        return self.store.camera_summary(self.model_version)

    def similar(self, image_or_path, top_k: int = 20, where: dict[str, bool] | None = None,
                exclude_self: bool = True, camera_centring: bool = False,
                camera: str | None = None, *, cameras: Sequence[str] | None = None,
                after: float | None = None, before: float | None = None,
                exclude_cameras: Sequence[str] | None = None,
                other_cameras: bool = False) -> list[SearchHit]:
        """People who look like the person in an image (re-ID embedding), best first.

        ``exclude_self`` leaves out the record of the query crop itself when it is in the library.
        ``camera_centring`` scores after subtracting each camera's mean embedding (from the
        stored records of that camera, see ``camera_statistics`` and
        ``camera_centred_records``): the query's camera is its stored record's, else
        ``camera``, else none (the mean of everything). ``cameras``, ``after``, ``before``
        restrict the results as in ``search``; ``exclude_cameras`` leaves those cameras out,
        ``other_cameras`` the query's own camera (when known, as for centring).
        """
        where = self.validate_where(where)
        cid, emb, stored_camera = self._reid_embedding(image_or_path)
        exclude = {cid} if exclude_self else set()
        query_camera = stored_camera if stored_camera is not None else camera
        if other_cameras and query_camera is not None:
            exclude_cameras = [*(exclude_cameras or []), query_camera]
        return self._similar(emb, query_camera, top_k, where, exclude, camera_centring,
                             cameras=cameras, after=after, before=before,
                             exclude_cameras=exclude_cameras)

    def similar_to_id(self, id: str, top_k: int = 20, where: dict[str, bool] | None = None, *,
                      camera_centring: bool = False, cameras: Sequence[str] | None = None,
                      after: float | None = None, before: float | None = None,
                      other_cameras: bool = False) -> list[SearchHit]:
        """People who look like the stored person ``id`` (its re-ID embedding), itself left
        out; ``other_cameras`` also leaves out its own camera's records (a person without a
        camera: nothing more is left out). ``PersonNotFoundError`` for an unknown id,
        ValueError for a record made by another model."""
        where = self.validate_where(where)
        rec = self.store.get(id)
        if rec is None:
            raise PersonNotFoundError(f"no person with id {id!r} in {self.db_dir}")
        if rec.model_version != self.model_version:
            raise ValueError(f"{id} was made by another model; index it again first")
        exclude_cameras = [rec.camera] if other_cameras and rec.camera is not None else None
        return self._similar(rec.reid_embedding, rec.camera, top_k, where, {id}, camera_centring,
                             cameras=cameras, after=after, before=before,
                             exclude_cameras=exclude_cameras)

    def _similar(self, emb, query_camera, top_k, where, exclude, camera_centring,
                 **filters) -> list[SearchHit]:
        if not camera_centring:
            return self._query("reid", emb, top_k, where, exclude, **filters)
        pairs = camera_centred_records(lambda: self.index("reid"), self.store, self.model_version,
                                       emb, query_camera, self.camera_statistics(), top_k, where,
                                       exclude, self._filters, **filters)
        return [SearchHit(rank=n + 1, score=s, record=r) for n, (s, r) in enumerate(pairs)]

    def camera_statistics(self):
        """``CameraCentring`` from the stored re-ID embeddings of the current model (cameras
        with at least 10 records get their own mean); ``None`` when no record has a camera.
        Cached until the store changes."""
        return self._camera_stats.get(self.store, self.model_version)

    def _reid_embedding(self, image_or_path) -> tuple[str, np.ndarray, str | None]:
        """(content id, re-ID embedding, the stored record's camera or None)."""
        if isinstance(image_or_path, Image.Image):
            img = image_or_path.convert("RGB")
            h = hashlib.sha256(f"{img.mode}:{img.size}".encode())
            h.update(img.tobytes())
            cid, source = h.hexdigest(), "<image>"
        else:
            data = read_image_bytes(image_or_path)
            cid, source = content_id(data), str(image_or_path)
            stored = self.store.get(cid)
            if stored is not None and stored.model_version == self.model_version:
                return cid, stored.reid_embedding, stored.camera
            img = decode_image(data, source)
        if hasattr(self.pipeline, "use_camera"):
            self.pipeline.use_camera(None)      # a query has no camera: the all-camera adaptation
        return cid, self.pipeline.reid_embeddings([img])[0], None

    def _query(self, kind, query, top_k, where, exclude=frozenset(), offset: int = 0,
               **filters) -> list[SearchHit]:
        offset = max(0, int(offset))
        pairs = ranked_records(lambda: self.index(kind), self.store, self.model_version,
                               query, top_k, where, exclude, self._filters, offset=offset, **filters)
        return [SearchHit(rank=offset + n + 1, score=s, record=r) for n, (s, r) in enumerate(pairs)]

    # ------------------------------------------------------------------ adaptation
    def adapt(self, paths: Iterable[str | Path], camera: str | None = None, settings=None,
              progress: bool = False, reembed: bool = True):
        """Adapt to a camera (``None``: all cameras) from unlabelled crops; saved with the
        library, used from now on; stale records re-embedded (``library.adapt``)."""
        from ..inference.adapt import AdaptSettings
        from .adapt import adapt_library

        return adapt_library(self, paths, camera, settings or AdaptSettings(), progress, reembed)

    def reset_adaptation(self, progress: bool = False, reembed: bool = True):
        """Remove the adaptation; (whether there was one, re-embedded, failures)."""
        from .adapt import reset_adaptation

        return reset_adaptation(self, progress, reembed)

    # ------------------------------------------------------------------ lifetime
    def _check_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyLibraryError(f"{self.db_dir} was opened read-only")

    def close(self) -> None:
        if self.store is not None:
            try:
                self.save_indexes()
            finally:
                self.store.close()
                self.store = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
