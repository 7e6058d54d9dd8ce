"""SQLiteStore: upserts keyed by content hash, atomic batches, attribute filters, metadata."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from crops_testlib import NAMES, make_record

from personlens.store import PersonStore, SQLiteStore


@pytest.fixture()
def store(tmp_path):
    s = SQLiteStore(tmp_path / "db" / "people.sqlite")
    yield s
    s.close()


def test_is_a_person_store_in_wal_mode(store):
    assert isinstance(store, PersonStore)
    assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_put_get_roundtrip_exact(store):
    recs = [make_record(i, camera="c1", timestamp=float(i), track_id=f"t{i}", description="d")
            for i in range(5)]
    store.put(recs)
    assert store.count() == 5 and len(store) == 5
    for r in recs:
        got = store.get(r.id)
        assert got == r
        assert got.search_embedding.dtype == np.float32
        assert np.array_equal(got.reid_embedding, r.reid_embedding)
    assert store.get("0" * 64) is None
    assert [r.id for r in store.get_many([recs[3].id, "0" * 64, recs[1].id])] == [recs[3].id, recs[1].id]
    store.put([make_record(9)])                                          # no camera
    assert store.cameras_of([recs[2].id, "0" * 64, make_record(9).id]) == {recs[2].id: "c1",
                                                                           make_record(9).id: None}
    assert store.cameras_of([]) == {}


def test_same_id_twice_is_one_record_and_replaces_present(store):
    a = make_record(3, present=["personalMale", "accessoryHat"])
    store.put([a])
    g0 = store.generation()
    b = make_record(3, present=["carryingBackpack"], model_version="v2")
    store.put([b])
    store.upsert([b])
    assert store.count() == 1
    assert store.get(a.id).present == ["carryingBackpack"]
    assert store.filter_ids({"accessoryHat": True}) == []
    assert store.filter_ids({"carryingBackpack": True}) == [a.id]
    assert store._conn.execute("SELECT COUNT(*) FROM present").fetchone()[0] == 1
    assert store.generation() == g0 + 2


def test_contains_and_model_versions(store):
    store.put([make_record(i, model_version="v1") for i in range(3)])
    store.put([make_record(i, model_version="v2") for i in range(3, 5)])
    r = make_record(0)
    assert store.contains(r.id) and store.contains(r.id, "v1") and not store.contains(r.id, "v2")
    assert not store.contains("0" * 64)
    assert store.model_version_of(r.id) == "v1"
    assert store.model_versions() == {"v1": 3, "v2": 2}
    assert store.count("v2") == 2
    assert store.model_versions_of([r.id, make_record(4).id, "0" * 64]) == {
        r.id: "v1", make_record(4).id: "v2"}


def test_filter_by_attribute_yes_no(store):
    recs = [make_record(i) for i in range(16)]  # present = bits of i over NAMES
    store.put(recs)
    where = {"personalMale": True, "accessoryHat": False}
    expect = [r.id for r in recs if "personalMale" in r.present and "accessoryHat" not in r.present]
    assert store.filter_ids(where) == expect and len(expect) == 4
    assert store.filter_ids({}) == [r.id for r in recs]
    assert store.filter_ids({"notAnAttribute": True}) == []
    assert len(store.filter_ids({"notAnAttribute": False})) == 16
    store.put([make_record(16 + i, model_version="v9", present=["personalMale"]) for i in range(2)])
    assert len(store.filter_ids({"personalMale": True}, model_version="v9")) == 2


def test_iterate_and_embeddings_in_insertion_order(store):
    recs = [make_record(i) for i in range(7)]
    store.put(recs[:4])
    store.put(recs[4:])
    store.put([recs[1]])  # an upsert keeps its place
    assert [r.id for r in store.iterate(batch_size=3)] == [r.id for r in recs]
    chunks = list(store.iter_embeddings("search", batch_size=3))
    assert [len(ids) for ids, _ in chunks] == [3, 3, 1]
    ids = [i for c, _ in chunks for i in c]
    mat = np.concatenate([m for _, m in chunks])
    assert ids == [r.id for r in recs] and mat.dtype == np.float32 and mat.shape == (7, 8)
    assert np.array_equal(mat, np.stack([r.search_embedding for r in recs]))
    reid = np.concatenate([m for _, m in store.iter_embeddings("reid")])
    assert reid.shape == (7, 12)
    with pytest.raises(ValueError):
        next(store.iter_embeddings("faces"))


def test_delete(store):
    recs = [make_record(i, present=["personalMale"]) for i in range(4)]
    store.put(recs)
    assert store.delete([recs[0].id, recs[1].id, "0" * 64]) == 2
    assert store.count() == 2 and store.filter_ids({"personalMale": True}) == [recs[2].id, recs[3].id]


def test_attribute_names_and_meta(store):
    assert store.attribute_names() == []
    store.put([make_record(0)])
    assert store.attribute_names() == NAMES
    store.set_meta("index", {"kind": "hnsw", "params": {"m": 16}})
    assert store.get_meta("index") == {"kind": "hnsw", "params": {"m": 16}}
    assert store.get_meta("missing", 5) == 5
    with pytest.raises(ValueError):
        store.set_meta("generation", 0)


def test_persists_across_reopen(tmp_path):
    path = tmp_path / "p.sqlite"
    with SQLiteStore(path) as s:
        s.put([make_record(i) for i in range(3)])
        gen = s.generation()
    with SQLiteStore(path) as s:
        assert s.count() == 3 and s.generation() == gen


class _FailingConnection:
    """Wraps a sqlite3 connection; fails while writing the present table (mid-transaction)."""

    def __init__(self, conn):
        self.conn = conn

    def execute(self, *a):
        return self.conn.execute(*a)

    def executemany(self, sql, rows):
        if sql.startswith("INSERT OR IGNORE INTO present"):
            raise RuntimeError("simulated failure in the middle of a batch")
        return self.conn.executemany(sql, rows)


def test_failed_batch_leaves_nothing(store):
    store.put([make_record(0)])
    gen = store.generation()
    real = store._conn
    store._conn = _FailingConnection(real)
    with pytest.raises(RuntimeError):
        store.put([make_record(i) for i in range(1, 5)])
    store._conn = real
    assert store.count() == 1 and store.generation() == gen
    assert store._conn.execute("SELECT COUNT(*) FROM present").fetchone()[0] == len(make_record(0).present)


def test_killed_process_leaves_no_half_batch(tmp_path):
    """A real process killed (os._exit) inside its second batch: the first batch survives whole."""
    db = tmp_path / "killed.sqlite"
    code = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).parents[1])!r})
        from crops_testlib import make_record
        from personlens.store import SQLiteStore
        s = SQLiteStore({str(db)!r})
        s.put([make_record(i) for i in range(3)])
        real = s._conn
        class Die:
            def execute(self, *a): return real.execute(*a)
            def executemany(self, sql, rows):
                if sql.startswith("DELETE FROM present"):
                    os._exit(9)  # killed after the records rows were written, before COMMIT
                return real.executemany(sql, rows)
        s._conn = Die()
        s.put([make_record(i) for i in range(3, 8)])
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 9, r.stderr
    with SQLiteStore(db) as s:
        assert s.count() == 3
        assert [x.id for x in s.iterate()] == [make_record(i).id for i in range(3)]
        assert s._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
