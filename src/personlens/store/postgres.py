"""``PostgresStore``: the ``PersonStore`` interface on PostgreSQL (psycopg 3), for the scale-out
service where several worker processes write and API processes read.

Layout (in ``schema``, default ``public``; schema version 1):

* ``personlens_records``: one row per crop, keyed by content hash; attributes as JSON text (key
  order kept), ``present`` as ``text[]`` (GIN-indexed for attribute filters), embeddings as
  little-endian float32 ``bytea``; ``ord`` (insertion order, never changes) and ``seq`` (moves
  to the end of a sequence on every upsert, so readers can fetch what changed since they last
  looked: ``changes_since``);
* ``personlens_state``: the generation counter; every write transaction updates it first, so
  writers are serialised (no deadlocks between overlapping batches, and ``seq`` values are
  committed in order: a reader that saw ``seq = n`` never later finds a new row below n);
* ``personlens_attribute_names`` (first-seen order) and ``personlens_meta`` (JSON values).

Every ``put``/``delete`` is one transaction: a killed writer leaves no half batch.
"""
from __future__ import annotations

import json
import time
from typing import Iterable, Iterator, Sequence

import numpy as np

from ..inference.records import PersonRecord
from .base import EMBEDDING_KINDS, PersonStore, checked_records

SCHEMA_VERSION = 1
_COLUMNS = ("id, path, attributes, present, search_embedding, reid_embedding, camera, ts, "
            "track_id, model_version, description")


def _blob(v: np.ndarray) -> bytes:
    return np.ascontiguousarray(v, dtype="<f4").tobytes()


def _vec(b) -> np.ndarray:
    return np.frombuffer(bytes(b), dtype="<f4").astype(np.float32)


def _record(row) -> PersonRecord:
    (id_, path, attrs, present, search, reid, camera, ts, track, version, desc) = row
    return PersonRecord(id=id_, path=path, attributes=json.loads(attrs), present=list(present),
                        search_embedding=_vec(search), reid_embedding=_vec(reid), camera=camera,
                        timestamp=ts, track_id=track, model_version=version, description=desc)


class PostgresStore(PersonStore):
    def __init__(self, url: str, schema: str = "public", connect_timeout: float = 10.0):
        import psycopg
        from psycopg import sql

        self.url = url
        self.schema = schema
        self._sql = sql
        self._conn = psycopg.connect(url, autocommit=True, connect_timeout=int(max(1, connect_timeout)))
        s = sql.Identifier(schema)
        self._t = {name: sql.SQL("{}.{}").format(s, sql.Identifier(f"personlens_{name}"))
                   for name in ("records", "state", "meta", "attribute_names", "ord", "seq")}
        with self._conn.transaction():
            # one process creates the schema at a time
            self._conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"personlens:{schema}",))
            self._conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(s))
            for stmt in self._ddl():
                self._conn.execute(stmt)
            row = self._conn.execute(self._q("SELECT value FROM {meta} WHERE key='schema_version'")).fetchone()
            if row is None:
                self._conn.execute(self._q("INSERT INTO {meta} VALUES ('schema_version', %s)"),
                                   (json.dumps(SCHEMA_VERSION),))
            elif json.loads(row[0]) > SCHEMA_VERSION:
                raise ValueError(f"{schema} was written by a newer personlens (schema {row[0]})")

    @property
    def _c(self):
        """The connection, opened again when the server dropped it (restart, network)."""
        if self._conn is None:
            raise RuntimeError("the store is closed")
        if self._conn.broken:
            import psycopg

            self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        return self._conn

    def ping(self, timeout_s: float = 2.0) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True, connect_timeout=max(1, round(timeout_s))) as c:
            c.execute("SELECT 1")

    def _q(self, text: str):
        return self._sql.SQL(text).format(**self._t)

    def _ddl(self):
        return [self._q(t) for t in (
            "CREATE SEQUENCE IF NOT EXISTS {ord}",
            "CREATE SEQUENCE IF NOT EXISTS {seq}",
            """CREATE TABLE IF NOT EXISTS {records} (
                id text PRIMARY KEY, path text NOT NULL, attributes text NOT NULL,
                present text[] NOT NULL, search_embedding bytea NOT NULL,
                reid_embedding bytea NOT NULL, camera text, ts double precision, track_id text,
                model_version text NOT NULL, description text,
                created_at double precision NOT NULL, updated_at double precision NOT NULL,
                ord bigint NOT NULL, seq bigint NOT NULL)""",
            "CREATE INDEX IF NOT EXISTS personlens_records_mv ON {records} (model_version)",
            "CREATE INDEX IF NOT EXISTS personlens_records_ord ON {records} (ord)",
            "CREATE INDEX IF NOT EXISTS personlens_records_seq ON {records} (seq)",
            "CREATE INDEX IF NOT EXISTS personlens_records_present ON {records} USING gin (present)",
            # camera / time filters; created on every open (IF NOT EXISTS), so tables made before
            # they existed get them too: not a schema change, the schema version stays 1
            "CREATE INDEX IF NOT EXISTS personlens_records_camera ON {records} (camera)",
            "CREATE INDEX IF NOT EXISTS personlens_records_ts ON {records} (ts)",
            "CREATE TABLE IF NOT EXISTS {state} (id int PRIMARY KEY, generation bigint NOT NULL)",
            "INSERT INTO {state} VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
            "CREATE TABLE IF NOT EXISTS {meta} (key text PRIMARY KEY, value text NOT NULL)",
            "CREATE TABLE IF NOT EXISTS {attribute_names} (name text PRIMARY KEY, ord bigserial)",
        )]

    # ------------------------------------------------------------------ writing
    def _bump(self, conn) -> None:
        conn.execute(self._q("UPDATE {state} SET generation = generation + 1 WHERE id = 1"))

    def put(self, records: Sequence[PersonRecord]) -> None:
        records = checked_records(records)
        if not records:
            return
        records = list({r.id: r for r in records}.values())  # writers are serialised: order kept
        now = time.time()
        rows = [(r.id, r.path, json.dumps(r.attributes), list(r.present), _blob(r.search_embedding),
                 _blob(r.reid_embedding), r.camera, r.timestamp, r.track_id, r.model_version,
                 r.description, now, now) for r in records]
        names = list(dict.fromkeys(n for r in records for n in r.attributes))
        c = self._c
        with c.transaction():
            self._bump(c)  # first: serialises writers (see the module docstring)
            with c.cursor() as cur:
                cur.executemany(self._q(
                    f"INSERT INTO {{records}} ({_COLUMNS}, created_at, updated_at, ord, seq) "
                    "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s, nextval('{ord}'), nextval('{seq}')) "
                    "ON CONFLICT (id) DO UPDATE SET path=excluded.path, attributes=excluded.attributes, "
                    "present=excluded.present, search_embedding=excluded.search_embedding, "
                    "reid_embedding=excluded.reid_embedding, camera=excluded.camera, ts=excluded.ts, "
                    "track_id=excluded.track_id, model_version=excluded.model_version, "
                    "description=excluded.description, updated_at=excluded.updated_at, "
                    "seq=excluded.seq"), rows)
                cur.executemany(self._q("INSERT INTO {attribute_names} (name) VALUES (%s) "
                                        "ON CONFLICT (name) DO NOTHING"), [(n,) for n in names])

    def delete(self, ids: Iterable[str]) -> int:
        ids = list(dict.fromkeys(ids))
        c = self._c
        with c.transaction():
            self._bump(c)
            cur = c.execute(self._q("DELETE FROM {records} WHERE id = ANY(%s)"), (ids,))
            return cur.rowcount

    # ------------------------------------------------------------------ reading
    def get(self, id: str) -> PersonRecord | None:
        row = self._c.execute(self._q(f"SELECT {_COLUMNS} FROM {{records}} WHERE id=%s"), (id,)).fetchone()
        return _record(row) if row else None

    def get_many(self, ids: Sequence[str]) -> list[PersonRecord]:
        ids = list(ids)
        if not ids:
            return []
        rows = self._c.execute(self._q(f"SELECT {_COLUMNS} FROM {{records}} WHERE id = ANY(%s)"),
                                  (ids,)).fetchall()
        found = {row[0]: _record(row) for row in rows}
        return [found[i] for i in ids if i in found]

    def cameras_of(self, ids: Sequence[str]) -> dict[str, str | None]:
        ids = list(ids)
        if not ids:
            return {}
        return dict(self._c.execute(self._q("SELECT id, camera FROM {records} WHERE id = ANY(%s)"),
                                    (ids,)).fetchall())

    def model_version_of(self, id: str) -> str | None:
        row = self._c.execute(self._q("SELECT model_version FROM {records} WHERE id=%s"), (id,)).fetchone()
        return row[0] if row else None

    def model_versions_of(self, ids: Sequence[str]) -> dict[str, str]:
        if not ids:
            return {}
        return dict(self._c.execute(self._q(
            "SELECT id, model_version FROM {records} WHERE id = ANY(%s)"), (list(ids),)).fetchall())

    def _pages(self, columns: str, model_version, batch_size, order="ord", after=-1):
        """Keyset pagination in ``order`` (no long-lived cursor): lists of rows."""
        where = "AND model_version=%s" if model_version is not None else ""
        q = self._q(f"SELECT {order}, {columns} FROM {{records}} WHERE {order} > %s {where} "
                    f"ORDER BY {order} LIMIT %s")
        while True:
            args = (after, model_version, batch_size) if model_version is not None else (after, batch_size)
            rows = self._c.execute(q, args).fetchall()
            if not rows:
                return
            after = rows[-1][0]
            yield rows
            if len(rows) < batch_size:
                return

    def iterate(self, model_version: str | None = None, batch_size: int = 1000) -> Iterator[PersonRecord]:
        for rows in self._pages(_COLUMNS, model_version, batch_size):
            for row in rows:
                yield _record(row[1:])

    def iter_embeddings(self, kind: str, model_version: str | None = None,
                        batch_size: int = 10000) -> Iterator[tuple[list[str], np.ndarray]]:
        if kind not in EMBEDDING_KINDS:
            raise ValueError(f"embedding kind must be one of {EMBEDDING_KINDS}")
        for rows in self._pages(f"id, {kind}_embedding", model_version, batch_size):
            mat = np.frombuffer(b"".join(bytes(r[2]) for r in rows), dtype="<f4")
            yield [r[1] for r in rows], mat.reshape(len(rows), -1).astype(np.float32)

    def max_seq(self) -> int:
        return int(self._c.execute(self._q("SELECT coalesce(max(seq), -1) FROM {records}")).fetchone()[0])

    def changes_since(self, seq: int, model_version: str | None = None,
                      batch_size: int = 10000) -> Iterator[dict]:
        """Rows written (inserted or replaced) after ``seq``, in commit order, as chunks
        ``{"seq": newest seq in the chunk, "ids": [...], "search": (n, d), "reid": (n, d)}``."""
        for rows in self._pages("id, search_embedding, reid_embedding", model_version, batch_size,
                                order="seq", after=seq):
            yield {"seq": int(rows[-1][0]), "ids": [r[1] for r in rows],
                   "search": np.stack([_vec(r[2]) for r in rows]),
                   "reid": np.stack([_vec(r[3]) for r in rows])}

    def count(self, model_version: str | None = None) -> int:
        if model_version is None:
            return self._c.execute(self._q("SELECT COUNT(*) FROM {records}")).fetchone()[0]
        return self._c.execute(self._q("SELECT COUNT(*) FROM {records} WHERE model_version=%s"),
                                  (model_version,)).fetchone()[0]

    def model_versions(self) -> dict[str, int]:
        return dict(self._c.execute(self._q(
            "SELECT model_version, COUNT(*) FROM {records} GROUP BY model_version")).fetchall())

    def filter_ids(self, where: dict[str, bool], model_version: str | None = None, *,
                   cameras: Sequence[str] | None = None, after: float | None = None,
                   before: float | None = None,
                   exclude_cameras: Sequence[str] | None = None) -> list[str]:
        clauses, args = [], []
        if model_version is not None:
            clauses.append("model_version=%s")
            args.append(model_version)
        yes = [n for n, v in where.items() if v]
        no = [n for n, v in where.items() if not v]
        if yes:
            clauses.append("present @> %s::text[]")
            args.append(yes)
        if no:
            clauses.append("NOT (present && %s::text[])")
            args.append(no)
        if cameras:
            clauses.append("camera = ANY(%s::text[])")
            args.append(list(cameras))
        if exclude_cameras:
            clauses.append("(camera IS NULL OR NOT (camera = ANY(%s::text[])))")
            args.append(list(exclude_cameras))
        if after is not None:      # NULL timestamps never compare true: left out
            clauses.append("ts >= %s")
            args.append(float(after))
        if before is not None:
            clauses.append("ts < %s")
            args.append(float(before))
        sql = "SELECT id FROM {records}" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        return [r[0] for r in self._c.execute(self._q(sql + " ORDER BY ord"), args)]

    def camera_summary(self, model_version: str | None = None) -> list[dict]:
        sql = "SELECT camera, COUNT(*), MIN(ts), MAX(ts) FROM {records} WHERE camera IS NOT NULL"
        args: tuple = ()
        if model_version is not None:
            sql += " AND model_version=%s"
            args = (model_version,)
        rows = self._c.execute(self._q(sql + " GROUP BY camera ORDER BY camera COLLATE \"C\""),
                               args).fetchall()
        return [{"name": c, "count": int(n), "first": lo, "last": hi} for c, n, lo, hi in rows]

    def used_paths(self, paths: Iterable[str]) -> set[str]:
        paths = list(dict.fromkeys(paths))
        if not paths:
            return set()
        return {r[0] for r in self._c.execute(
            self._q("SELECT DISTINCT path FROM {records} WHERE path = ANY(%s)"), (paths,))}

    def attribute_names(self) -> list[str]:
        return [r[0] for r in self._c.execute(self._q("SELECT name FROM {attribute_names} ORDER BY ord"))]

    def generation(self) -> int:
        return int(self._c.execute(self._q("SELECT generation FROM {state} WHERE id=1")).fetchone()[0])

    # ------------------------------------------------------------------ metadata
    def get_meta(self, key: str, default=None):
        row = self._c.execute(self._q("SELECT value FROM {meta} WHERE key=%s"), (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, key: str, value) -> None:
        if key in ("schema_version", "generation"):
            raise ValueError(f"{key!r} is managed by the store")
        self._c.execute(self._q("INSERT INTO {meta} (key, value) VALUES (%s, %s) ON CONFLICT (key) "
                                   "DO UPDATE SET value=excluded.value"), (key, json.dumps(value)))

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def drop(self) -> None:
        """Remove this store's tables (tests, benchmarks)."""
        c = self._c
        with c.transaction():
            for t in ("records", "state", "meta", "attribute_names"):
                c.execute(self._q(f"DROP TABLE IF EXISTS {{{t}}}"))
            for s in ("ord", "seq"):
                c.execute(self._q(f"DROP SEQUENCE IF EXISTS {{{s}}}"))

    def __repr__(self) -> str:
        return f"PostgresStore(schema={self.schema!r})"
