"""The query engine shared by ``PersonLibrary`` and the service (``serve/backend.py``).

* ``where`` filters: ``parse_where`` (``ATTR=yes`` strings, as the CLI and the HTTP API take
  them) and ``validate_where`` (a ``{name: value}`` dict against the store's attribute names,
  values normalised to booleans);
* ``scope``: the camera and time filters (``cameras``, ``after``, ``before``,
  ``exclude_cameras``) as the store's ``filter_ids`` takes them;
* ``FilterCache``: compiled attribute / camera / time filters, reused until the store changes;
* ``ranked_ids`` / ``ranked_records``: index hits restricted to a filter, best first;
* ``CameraStatsCache`` / ``camera_centred_records``: re-ID ranking after per-camera centring.
"""
from __future__ import annotations

import itertools
import threading
import time
from collections import OrderedDict
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..data.schema import schema_for

CENTRING_CANDIDATES = 1000   # raw re-ID matches re-scored by ``similar(camera_centring=True)``
YES = {"yes", "y", "true", "1", "present"}
NO = {"no", "n", "false", "0", "absent"}
NO_CAMERAS = ("camera centring needs records with a camera: index them with "
              "`personlens index PATH --camera NAME`")


class UnknownAttributeError(KeyError):
    def __str__(self) -> str:
        return self.args[0]


class ConflictingWhereError(ValueError):
    """The same attribute asked to be both present and absent."""


# ---------------------------------------------------------------------- where filters
def where_value(name: str, value) -> bool:
    """A filter value as a boolean: ``True``/``False`` or one of the ``YES``/``NO`` words
    (any case); anything else is a ValueError naming the attribute and the value."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str):
        v = value.strip().lower()
        if v in YES or v in NO:
            return v in YES
    raise ValueError(f"where {name}={value!r}: expected true/false or yes/no")


def parse_where(items: Iterable[str]) -> dict[str, bool]:
    """``["accessoryHat=yes", "personalMale=no"]`` -> ``{"accessoryHat": True, ...}``.

    The same condition twice is fine; one attribute both present and absent is a
    ``ConflictingWhereError`` (a ValueError)."""
    out: dict[str, bool] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip().lower()
        if not sep or not name or value not in YES | NO:
            raise ValueError(f"{item!r}: expected ATTRIBUTE=yes or ATTRIBUTE=no")
        wanted = value in YES
        if out.get(name, wanted) != wanted:
            raise ConflictingWhereError(f"{name} is asked to be both present (yes) and absent "
                                        "(no); give one condition per attribute")
        out[name] = wanted
    return out


def validate_where(where: Mapping | None, names: Sequence[str]) -> dict[str, bool]:
    """``where`` checked against the attribute ``names`` (UnknownAttributeError, with a
    suggestion, for a name not among them) and its values made booleans (``where_value``)."""
    if not where:
        return {}
    schema = None
    for name in where:
        if name not in names:
            schema = schema or schema_for(list(names))
            try:
                schema.index(name)
            except KeyError as e:
                msg = str(e.args[0])
            else:  # pragma: no cover - names and schema agree
                msg = f"unknown attribute {name!r}"
            raise UnknownAttributeError(f"{msg}; known attributes: {', '.join(names)}")
    return {k: where_value(k, v) for k, v in where.items()}


# ---------------------------------------------------------------------- camera and time
def scope(cameras: Iterable[str] | str | None = None, after: float | None = None,
          before: float | None = None, exclude_cameras: Iterable[str] | str | None = None) -> dict:
    """The camera and time filters that are set, as keyword arguments of the store's
    ``filter_ids``: ``cameras`` (any of them; None or empty: any camera), ``after``
    (inclusive) / ``before`` (exclusive) epoch seconds (records without a timestamp fail
    them), ``exclude_cameras``. A single camera name may be given as a string."""
    out: dict = {}
    for key, value in (("cameras", cameras), ("exclude_cameras", exclude_cameras)):
        if isinstance(value, str):
            value = [value]
        if value:
            out[key] = tuple(dict.fromkeys(str(v) for v in value))
    for key, value in (("after", after), ("before", before)):
        if value is not None:
            v = float(value)
            if v != v:
                raise ValueError(f"{key} is not a number")
            out[key] = v
    return out


def matching_ids(store, model_version, where: dict[str, bool], **filters) -> list[str]:
    """``store.filter_ids`` with only the filters that are set (insertion order)."""
    return store.filter_ids(where, model_version, **scope(**filters))


# ---------------------------------------------------------------------- ranking
class FilterCache:
    """Compiled attribute filters (``AllowedIds``), keyed by the filter, the model version and
    the store's generation: a repeated ``--where`` (a filter chip on the page) skips the store
    query and the id conversion. Faiss ids are hashes of the record ids, so a compiled filter
    fits every index built on the same store state."""

    def __init__(self, size: int = 16):
        self.size = size
        self._cache: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, index, store, model_version, where: dict[str, bool], **filters):
        """``filters``: camera / time filters (``scope``)."""
        sc = scope(**filters)
        key = (store.generation(), model_version, tuple(sorted(where.items())), tuple(sorted(sc.items())))
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        hit = index.compile_filter(store.filter_ids(where, model_version, **sc))
        with self._lock:
            self._cache[key] = hit
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return hit


def ranked_ids(index, store, model_version, query, top_k, where, exclude=frozenset(),
               filters: FilterCache | None = None, **scope_filters) -> list[tuple[str, float]]:
    """(id, score) pairs from ``index``, best first, restricted to ``where`` and the camera /
    time filters (``scope``), without ``exclude``."""
    if top_k <= 0:
        return []
    exclude = set(exclude)
    sc = scope(**scope_filters)
    allowed = None
    if where or sc:
        allowed = (filters.get(index, store, model_version, where, **sc) if filters is not None
                   else index.compile_filter(store.filter_ids(where, model_version, **sc)))
        if len(allowed) == 0:
            return []
    hits = [h for h in index.search(query, top_k + len(exclude), allowed) if h[0] not in exclude]
    hits.sort(key=lambda h: (-h[1], h[0]))     # exact ties in id order: pages do not shuffle
    return hits[:top_k]


def ranked_records(get_index, store, model_version, query, top_k, where, exclude=frozenset(),
                   filters: FilterCache | None = None, *, offset: int = 0, **scope_filters):
    """(score, record) pairs, best first, restricted to ``where`` and the camera / time filters
    and without ``exclude``; ``offset`` skips that many of the best first (paging)."""
    offset = max(0, int(offset))
    hits = ranked_ids(get_index(), store, model_version, query, top_k + offset, where, exclude,
                      filters, **scope_filters)[offset:]
    records = {r.id: r for r in store.get_many([i for i, _ in hits])}
    return [(s, records[i]) for i, s in hits if i in records]


# ---------------------------------------------------------------------- camera centring
class CameraStatsCache:
    """``CameraCentring`` of a store's re-ID embeddings (one model version). Computing it reads
    every stored embedding, so it is redone only when the model changed, the number of records
    changed by more than ``rel_change`` (2 %), or any change is older than ``max_age_s``: a few
    new crops barely move a camera's mean, and a service writing all the time would otherwise
    re-read the whole store for every query. ``None`` when no record names its camera."""

    def __init__(self, rel_change: float = 0.02, max_age_s: float = 600.0):
        self.rel_change, self.max_age_s = rel_change, max_age_s
        self._state = None     # (generation, model version, record count, time, stats)
        self._lock = threading.Lock()

    def _fresh(self, gen, model_version, count) -> bool:
        if self._state is None:
            return False
        g, mv, n, t, _ = self._state
        if mv != model_version:
            return False
        if g == gen:
            return True
        return (abs(count - n) <= self.rel_change * max(n, 1)
                and time.monotonic() - t < self.max_age_s)

    def get(self, store, model_version):
        from ..models.camera_norm import CameraSums

        gen, count = store.generation(), store.count(model_version)
        with self._lock:
            if self._fresh(gen, model_version, count):
                return self._state[4]
        acc, records = None, store.iterate(model_version)
        while chunk := list(itertools.islice(records, 4096)):
            acc = acc or CameraSums(len(chunk[0].reid_embedding))
            acc.add(np.stack([r.reid_embedding for r in chunk]), [r.camera for r in chunk])
        stats = acc.centring() if acc is not None and acc.counts else None
        with self._lock:
            self._state = (gen, model_version, count, time.monotonic(), stats)
        return stats


def camera_centred_records(get_index, store, model_version, query, query_camera, stats, top_k,
                           where, exclude=frozenset(), filters: FilterCache | None = None,
                           **scope_filters):
    """Like ``ranked_records`` for re-ID, scored after per-camera centring (``stats``: a
    ``CameraCentring``; ``query_camera`` None: the global mean). The best
    ``CENTRING_CANDIDATES`` (at least 10 x top_k) raw matches are re-scored, so galleries up
    to that size are ranked exactly."""
    if stats is None:
        raise ValueError(NO_CAMERAS)
    index = get_index()
    hits = ranked_ids(index, store, model_version, query, max(top_k * 10, CENTRING_CANDIDATES),
                      where, exclude, filters, **scope_filters)
    if not hits or top_k <= 0:
        return []
    ids = [i for i, _ in hits]
    cameras = store.cameras_of(ids)            # the candidates' vectors come from the index
    g = stats.transform(index.vectors(ids), [cameras.get(i) for i in ids])
    scores = g @ stats.transform(np.asarray(query)[None], [query_camera])[0]
    best = [ids[j] for j in np.argsort(-scores, kind="stable")[:top_k]]
    score = dict(zip(ids, scores.tolist()))
    return [(score[r.id], r) for r in store.get_many(best)]
