"""``SQLiteStore``: the default ``PersonStore``, one SQLite file (stdlib ``sqlite3``, WAL mode).

Layout (schema version 1):

* ``records``: one row per crop, keyed by content hash; attributes and present as JSON,
  embeddings as little-endian float32 BLOBs (so indexes can be rebuilt from the store);
* ``present(attribute, id)``: one row per present attribute, so attribute filters run in SQL;
* ``attribute_names``: every attribute name seen, in first-seen order;
* ``meta(key, value)``: JSON values (schema version, generation counter, library configuration);
* indexes on ``model_version``, ``camera`` and ``timestamp`` (camera / time filters). Indexes
  are created with ``IF NOT EXISTS`` on every open, so a library written before an index was
  added gets it the next time it is opened; that is not a schema change (older versions read
  the file as before), so the schema version stays 1.

Every write runs in one ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction that also bumps the
``generation`` counter, so a process killed mid-batch leaves no half batch behind.
"""
from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from ..fileperms import make_private_dirs, touch_private
from ..inference.records import PersonRecord
from .base import EMBEDDING_KINDS, PersonStore, checked_records

SCHEMA_VERSION = 1
_CHUNK = 900  # ids per "IN (...)" query, below SQLite's variable limit everywhere

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    id TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    attributes TEXT NOT NULL,
    present TEXT NOT NULL,
    search_embedding BLOB NOT NULL,
    reid_embedding BLOB NOT NULL,
    camera TEXT,
    timestamp REAL,
    track_id TEXT,
    model_version TEXT NOT NULL,
    description TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS records_model_version ON records (model_version);
CREATE INDEX IF NOT EXISTS records_camera ON records (camera);
CREATE INDEX IF NOT EXISTS records_timestamp ON records (timestamp);
CREATE TABLE IF NOT EXISTS present (
    attribute TEXT NOT NULL,
    id TEXT NOT NULL REFERENCES records (id) ON DELETE CASCADE,
    PRIMARY KEY (attribute, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS present_by_id ON present (id);
CREATE TABLE IF NOT EXISTS attribute_names (name TEXT PRIMARY KEY);
"""

_COLUMNS = ("id, path, attributes, present, search_embedding, reid_embedding, camera, timestamp, "
            "track_id, model_version, description")


def _blob(v: np.ndarray) -> bytes:
    return np.ascontiguousarray(v, dtype="<f4").tobytes()


def _vec(b: bytes) -> np.ndarray:
    return np.frombuffer(b, dtype="<f4").astype(np.float32)


def _connect_read_only(path: Path, timeout: float) -> sqlite3.Connection:
    """A read-only connection. A WAL database needs its ``-shm`` file, which a reader cannot
    create in a folder it may not write: then the file is opened ``immutable`` (no locking,
    the WAL not read: a read-only folder has no writer and, after a clean close, no WAL)."""
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    uri = path.resolve().as_uri() + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
    try:
        conn.execute("SELECT 1 FROM meta LIMIT 1").fetchall()
        return conn
    except sqlite3.OperationalError as e:
        conn.close()
        name = getattr(e, "sqlite_errorname", "") or ""
        if not (name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN")) or "readonly" in str(e)):
            raise          # busy, not a library, ...: not a matter of permissions
    conn = sqlite3.connect(uri + "&immutable=1", uri=True, timeout=timeout, isolation_level=None)
    conn.execute("SELECT 1 FROM meta LIMIT 1").fetchall()
    return conn


def _record(row) -> PersonRecord:
    (id_, path, attrs, present, search, reid, camera, ts, track, version, desc) = row
    return PersonRecord(id=id_, path=path, attributes=json.loads(attrs), present=json.loads(present),
                        search_embedding=_vec(search), reid_embedding=_vec(reid), camera=camera,
                        timestamp=ts, track_id=track, model_version=version, description=desc)


class SQLiteStore(PersonStore):
    def __init__(self, path: str | Path, timeout: float = 30.0, read_only: bool = False):
        """``read_only``: open an existing store for reading only (SQLite ``mode=ro``), so a
        library in a folder or on a medium the user cannot write can be searched; nothing is
        created or changed (writes raise ``sqlite3.OperationalError``)."""
        self.path = Path(path)
        self.read_only = read_only
        if read_only:
            self._conn = _connect_read_only(self.path, timeout)
            row = self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is not None and json.loads(row[0]) > SCHEMA_VERSION:
                raise ValueError(f"{self.path} was written by a newer personlens "
                                 f"(schema {row[0]} > {SCHEMA_VERSION})")
            return
        make_private_dirs(self.path.parent)
        touch_private(self.path)     # 0600 before SQLite opens it; its -wal / -shm files follow
        self._conn = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None)
        c = self._conn
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=NORMAL")   # WAL + NORMAL: a killed process never corrupts
        c.execute("PRAGMA foreign_keys=ON")
        with self._transaction(bump=False):
            for stmt in filter(str.strip, _SCHEMA.split(";")):
                c.execute(stmt)
            row = c.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                c.execute("INSERT INTO meta VALUES ('schema_version', ?)", (json.dumps(SCHEMA_VERSION),))
                c.execute("INSERT INTO meta VALUES ('generation', '0')")
            elif json.loads(row[0]) > SCHEMA_VERSION:
                raise ValueError(f"{self.path} was written by a newer personlens "
                                 f"(schema {row[0]} > {SCHEMA_VERSION})")

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def _transaction(self, bump: bool = True):
        c = self._conn
        c.execute("BEGIN IMMEDIATE")
        try:
            yield c
            if bump:
                c.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='generation'")
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------------ writing
    def put(self, records: Sequence[PersonRecord]) -> None:
        records = checked_records(records)
        if not records:
            return
        now = time.time()
        rows = [(r.id, r.path, json.dumps(r.attributes), json.dumps(r.present),
                 _blob(r.search_embedding), _blob(r.reid_embedding), r.camera, r.timestamp,
                 r.track_id, r.model_version, r.description, now, now) for r in records]
        with self._transaction() as c:
            c.executemany(
                f"INSERT INTO records ({_COLUMNS}, created_at, updated_at) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET "
                "path=excluded.path, attributes=excluded.attributes, present=excluded.present, "
                "search_embedding=excluded.search_embedding, reid_embedding=excluded.reid_embedding, "
                "camera=excluded.camera, timestamp=excluded.timestamp, track_id=excluded.track_id, "
                "model_version=excluded.model_version, description=excluded.description, "
                "updated_at=excluded.updated_at", rows)
            c.executemany("DELETE FROM present WHERE id=?", [(r.id,) for r in records])
            c.executemany("INSERT OR IGNORE INTO present (attribute, id) VALUES (?, ?)",
                          [(a, r.id) for r in records for a in r.present])
            names = list(dict.fromkeys(n for r in records for n in r.attributes))
            c.executemany("INSERT OR IGNORE INTO attribute_names (name) VALUES (?)",
                          [(n,) for n in names])

    def delete(self, ids: Iterable[str]) -> int:
        ids = list(dict.fromkeys(ids))
        n = 0
        with self._transaction() as c:
            for i in range(0, len(ids), _CHUNK):
                chunk = ids[i:i + _CHUNK]
                q = ",".join("?" * len(chunk))
                c.execute(f"DELETE FROM present WHERE id IN ({q})", chunk)
                n += c.execute(f"DELETE FROM records WHERE id IN ({q})", chunk).rowcount
        return n

    # ------------------------------------------------------------------ reading
    def get(self, id: str) -> PersonRecord | None:
        row = self._conn.execute(f"SELECT {_COLUMNS} FROM records WHERE id=?", (id,)).fetchone()
        return _record(row) if row else None

    def get_many(self, ids: Sequence[str]) -> list[PersonRecord]:
        found: dict[str, PersonRecord] = {}
        ids = list(ids)
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i:i + _CHUNK]
            q = ",".join("?" * len(chunk))
            for row in self._conn.execute(f"SELECT {_COLUMNS} FROM records WHERE id IN ({q})", chunk):
                found[row[0]] = _record(row)
        return [found[i] for i in ids if i in found]

    def cameras_of(self, ids: Sequence[str]) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        ids = list(ids)
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i:i + _CHUNK]
            q = ",".join("?" * len(chunk))
            out.update(self._conn.execute(f"SELECT id, camera FROM records WHERE id IN ({q})", chunk))
        return out

    def model_version_of(self, id: str) -> str | None:
        row = self._conn.execute("SELECT model_version FROM records WHERE id=?", (id,)).fetchone()
        return row[0] if row else None

    def model_versions_of(self, ids: Sequence[str]) -> dict[str, str]:
        """id -> model_version for the stored ones among ``ids`` (one query per 900 ids)."""
        out: dict[str, str] = {}
        ids = list(ids)
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i:i + _CHUNK]
            q = ",".join("?" * len(chunk))
            out.update(self._conn.execute(
                f"SELECT id, model_version FROM records WHERE id IN ({q})", chunk).fetchall())
        return out

    def _where_version(self, model_version):
        return ("WHERE model_version=?", (model_version,)) if model_version is not None else ("", ())

    def iterate(self, model_version: str | None = None, batch_size: int = 1000) -> Iterator[PersonRecord]:
        where, args = self._where_version(model_version)
        cur = self._conn.execute(f"SELECT {_COLUMNS} FROM records {where} ORDER BY rowid", args)
        while rows := cur.fetchmany(batch_size):
            for row in rows:
                yield _record(row)

    def iter_embeddings(self, kind: str, model_version: str | None = None,
                        batch_size: int = 10000) -> Iterator[tuple[list[str], np.ndarray]]:
        if kind not in EMBEDDING_KINDS:
            raise ValueError(f"embedding kind must be one of {EMBEDDING_KINDS}")
        where, args = self._where_version(model_version)
        cur = self._conn.execute(f"SELECT id, {kind}_embedding FROM records {where} ORDER BY rowid", args)
        while rows := cur.fetchmany(batch_size):
            ids = [r[0] for r in rows]
            mat = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4")
            yield ids, mat.reshape(len(rows), -1).astype(np.float32)

    def count(self, model_version: str | None = None) -> int:
        where, args = self._where_version(model_version)
        return self._conn.execute(f"SELECT COUNT(*) FROM records {where}", args).fetchone()[0]

    def model_versions(self) -> dict[str, int]:
        return dict(self._conn.execute(
            "SELECT model_version, COUNT(*) FROM records GROUP BY model_version").fetchall())

    def filter_ids(self, where: dict[str, bool], model_version: str | None = None, *,
                   cameras: Sequence[str] | None = None, after: float | None = None,
                   before: float | None = None,
                   exclude_cameras: Sequence[str] | None = None) -> list[str]:
        clauses, args = [], []
        if model_version is not None:
            clauses.append("r.model_version=?")
            args.append(model_version)
        for name, wanted in where.items():
            exists = "EXISTS (SELECT 1 FROM present p WHERE p.attribute=? AND p.id=r.id)"
            clauses.append(exists if wanted else "NOT " + exists)
            args.append(name)
        if cameras:
            cams = list(dict.fromkeys(cameras))
            clauses.append(f"r.camera IN ({','.join('?' * len(cams))})")
            args.extend(cams)
        if exclude_cameras:
            cams = list(dict.fromkeys(exclude_cameras))
            clauses.append(f"(r.camera IS NULL OR r.camera NOT IN ({','.join('?' * len(cams))}))")
            args.extend(cams)
        if after is not None:      # NULL timestamps never compare true: left out
            clauses.append("r.timestamp >= ?")
            args.append(float(after))
        if before is not None:
            clauses.append("r.timestamp < ?")
            args.append(float(before))
        sql = "SELECT r.id FROM records r" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        return [row[0] for row in self._conn.execute(sql + " ORDER BY r.rowid", args)]

    def camera_summary(self, model_version: str | None = None) -> list[dict]:
        sql = "SELECT camera, COUNT(*), MIN(timestamp), MAX(timestamp) FROM records " \
              "WHERE camera IS NOT NULL"
        args: tuple = ()
        if model_version is not None:
            sql += " AND model_version=?"
            args = (model_version,)
        rows = self._conn.execute(sql + " GROUP BY camera ORDER BY camera", args).fetchall()
        return [{"name": c, "count": n, "first": lo, "last": hi} for c, n, lo, hi in rows]

    def used_paths(self, paths: Iterable[str]) -> set[str]:
        paths = list(dict.fromkeys(paths))
        out: set[str] = set()
        for i in range(0, len(paths), _CHUNK):
            chunk = paths[i:i + _CHUNK]
            q = ",".join("?" * len(chunk))
            out.update(r[0] for r in self._conn.execute(
                f"SELECT DISTINCT path FROM records WHERE path IN ({q})", chunk))
        return out

    def attribute_names(self) -> list[str]:
        return [r[0] for r in self._conn.execute("SELECT name FROM attribute_names ORDER BY rowid")]

    def generation(self) -> int:
        return int(self._conn.execute("SELECT value FROM meta WHERE key='generation'").fetchone()[0])

    # ------------------------------------------------------------------ metadata
    def get_meta(self, key: str, default=None):
        row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, key: str, value) -> None:
        if key in ("schema_version", "generation"):
            raise ValueError(f"{key!r} is managed by the store")
        with self._transaction(bump=False) as c:
            c.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
                      "SET value=excluded.value", (key, json.dumps(value)))

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"
