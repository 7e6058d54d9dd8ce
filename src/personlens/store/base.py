"""The ``PersonStore`` interface: durable storage of ``PersonRecord``s keyed by content hash.

The store is the source of truth: vector indexes are derived from the embeddings it holds and
can always be rebuilt from it. Backends (SQLite now, PostgreSQL next) implement this class;
everything above it (``PersonLibrary``, the CLI) only uses these methods.

Contract every backend keeps:

* ``put(records)`` is atomic: after a crash either the whole batch is stored or none of it.
  Records are upserted by ``id`` (a record with the same id is replaced, never duplicated).
* ``generation()`` changes with every committed write, so derived data (indexes) can tell
  whether it is still in step with the store.
* Attribute filters use each record's ``present`` list (its calibrated thresholds):
  ``where={"accessoryHat": True, "personalMale": False}`` means hat present and male absent.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Iterable, Iterator, Sequence

import numpy as np

from ..inference.records import PersonRecord

EMBEDDING_KINDS = ("search", "reid")


def checked_records(records: Sequence[PersonRecord]) -> list[PersonRecord]:
    """``records`` as a list, refusing anything that is not a ``PersonRecord``."""
    records = list(records)
    for r in records:
        if not isinstance(r, PersonRecord):
            raise TypeError(f"expected PersonRecord, got {type(r).__name__}")
    return records


class PersonStore(ABC):
    # -- writing ------------------------------------------------------------
    @abstractmethod
    def put(self, records: Sequence[PersonRecord]) -> None:
        """Insert or replace ``records`` in one transaction."""

    def upsert(self, records: Sequence[PersonRecord]) -> None:
        self.put(records)

    @abstractmethod
    def delete(self, ids: Iterable[str]) -> int:
        """Remove records by id (one transaction); returns how many existed."""

    def ping(self, timeout_s: float = 2.0) -> None:
        """Raise if the store's server cannot be reached (embedded stores: nothing to check).

        Must not use the connection the store's thread is using: ``/healthz`` calls it from
        another thread, and must answer while a long write is under way.
        """

    # -- reading ------------------------------------------------------------
    @abstractmethod
    def get(self, id: str) -> PersonRecord | None:
        ...

    @abstractmethod
    def get_many(self, ids: Sequence[str]) -> list[PersonRecord]:
        """Records for ``ids`` in the given order; unknown ids are left out."""

    @abstractmethod
    def model_version_of(self, id: str) -> str | None:
        """The model_version of a stored record, or None when the id is not stored."""

    def contains(self, id: str, model_version: str | None = None) -> bool:
        """Is ``id`` stored (and, when ``model_version`` is given, made by that model)?"""
        v = self.model_version_of(id)
        return v is not None and (model_version is None or v == model_version)

    def cameras_of(self, ids: Sequence[str]) -> dict[str, str | None]:
        """id -> camera for the stored ones among ``ids`` (backends answer it without
        decoding whole records)."""
        return {r.id: r.camera for r in self.get_many(list(ids))}

    @abstractmethod
    def iterate(self, model_version: str | None = None, batch_size: int = 1000) -> Iterator[PersonRecord]:
        """All records (optionally of one model_version), in a stable order."""

    @abstractmethod
    def iter_embeddings(self, kind: str, model_version: str | None = None,
                        batch_size: int = 10000) -> Iterator[tuple[list[str], np.ndarray]]:
        """(ids, float32 matrix) chunks of one embedding kind: what an index is rebuilt from."""

    @abstractmethod
    def count(self, model_version: str | None = None) -> int:
        ...

    @abstractmethod
    def model_versions(self) -> dict[str, int]:
        """model_version -> number of records."""

    @abstractmethod
    def filter_ids(self, where: dict[str, bool], model_version: str | None = None, *,
                   cameras: Sequence[str] | None = None, after: float | None = None,
                   before: float | None = None,
                   exclude_cameras: Sequence[str] | None = None) -> list[str]:
        """Ids, in insertion order, whose ``present`` list includes every attribute mapped to
        True and none mapped to False. Attribute names are not validated here (see
        ``attribute_names``).

        ``cameras``: only records of one of these cameras (empty or None: any camera);
        ``after`` / ``before`` (epoch seconds): only records with ``after <= timestamp <
        before`` (a record without a timestamp is left out when either is given);
        ``exclude_cameras``: leave out records of these cameras (records without one stay).
        """

    @abstractmethod
    def camera_summary(self, model_version: str | None = None) -> list[dict]:
        """``[{"name", "count", "first", "last"}]`` per camera, by name: the number of records
        and their earliest / latest timestamp (None when none has one). Records without a
        camera are not listed."""

    def used_paths(self, paths: Iterable[str]) -> set[str]:
        """The ones among ``paths`` that some stored record has as its ``path``."""
        wanted = set(paths)
        return {r.path for r in self.iterate() if r.path in wanted}

    @abstractmethod
    def attribute_names(self) -> list[str]:
        """Every attribute name any stored record has a probability for."""

    @abstractmethod
    def generation(self) -> int:
        """A number that changes with every committed write."""

    # -- metadata (small JSON-able values: configuration, versions) ----------
    @abstractmethod
    def get_meta(self, key: str, default=None):
        ...

    @abstractmethod
    def set_meta(self, key: str, value) -> None:
        ...

    # -- lifetime -----------------------------------------------------------
    @abstractmethod
    def close(self) -> None:
        ...

    def __len__(self) -> int:
        return self.count()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
