"""PostgresStore: the PersonStore contract on a real PostgreSQL (skipped without one)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from crops_testlib import make_record

sys.path.insert(0, str(Path(__file__).parents[1] / "serve"))
from scaleout_testlib import drop_schema, fresh_schema, pg_url_or_skip  # noqa: E402

from personlens.store import PersonStore  # noqa: E402


@pytest.fixture()
def store():
    from personlens.store.postgres import PostgresStore

    url = pg_url_or_skip()
    schema = fresh_schema(url)
    s = PostgresStore(url, schema=schema)
    yield s
    s.close()
    drop_schema(url, schema)


def test_roundtrip_upsert_generation(store):
    assert isinstance(store, PersonStore)
    recs = [make_record(i, camera="c1", timestamp=float(i), track_id=f"t{i}", description="d")
            for i in range(5)]
    g0 = store.generation()
    store.put(recs)
    assert store.count() == 5 and store.generation() == g0 + 1
    for r in recs:
        got = store.get(r.id)
        assert got == r and list(got.attributes) == list(r.attributes)
    assert store.get("0" * 64) is None
    assert [r.id for r in store.get_many([recs[3].id, "0" * 64, recs[1].id])] == [recs[3].id, recs[1].id]
    b = make_record(3, present=["carryingBackpack"], model_version="v2")
    store.put([b, b])
    assert store.count() == 5 and store.get(b.id).present == ["carryingBackpack"]
    assert store.cameras_of([recs[2].id, "0" * 64, b.id]) == {recs[2].id: "c1", b.id: None}
    assert store.cameras_of([]) == {}
    assert store.model_versions() == {"v1": 4, "v2": 1}
    assert store.model_versions_of([b.id, "0" * 64]) == {b.id: "v2"}
    assert store.contains(b.id, "v2") and not store.contains(b.id, "v1")


def test_filters_iteration_and_changes(store):
    recs = [make_record(i) for i in range(16)]
    store.put(recs[:10])
    store.put(recs[10:])
    where = {"personalMale": True, "accessoryHat": False}
    expect = [r.id for r in recs if "personalMale" in r.present and "accessoryHat" not in r.present]
    assert store.filter_ids(where) == expect
    assert store.filter_ids({}) == [r.id for r in recs]                 # insertion order
    assert store.filter_ids({"nope": True}) == [] and len(store.filter_ids({"nope": False})) == 16
    assert [r.id for r in store.iterate(batch_size=3)] == [r.id for r in recs]
    chunks = list(store.iter_embeddings("reid", "v1", batch_size=7))
    assert [len(ids) for ids, _ in chunks] == [7, 7, 2]
    assert np.array_equal(np.concatenate([m for _, m in chunks]), np.stack([r.reid_embedding for r in recs]))
    seq = store.max_seq()
    assert list(store.changes_since(seq)) == []
    store.put([make_record(2), make_record(99)])                         # one replaced, one new
    ch = list(store.changes_since(seq, "v1"))
    assert sorted(ch[0]["ids"]) == sorted([make_record(2).id, make_record(99).id])
    assert ch[0]["search"].shape == (2, 8) and ch[0]["seq"] == store.max_seq()
    assert store.attribute_names() == ["personalMale", "accessoryHat", "carryingBackpack", "upperBodyBlack"]
    assert store.delete([recs[0].id, recs[1].id, "0" * 64]) == 2 and store.count() == 15


def test_meta_and_reopen(store):
    from personlens.store.postgres import PostgresStore

    store.set_meta("index", {"kind": "flat"})
    with pytest.raises(ValueError):
        store.set_meta("generation", 3)
    store.put([make_record(1)])
    again = PostgresStore(store.url, schema=store.schema)
    assert again.get_meta("index") == {"kind": "flat"} and again.count() == 1
    assert again.generation() == store.generation()
    again.close()


def test_reconnects_after_the_server_drops_the_connection(store):
    import psycopg

    store.put([make_record(1)])
    pid = store._conn.info.backend_pid
    with psycopg.connect(store.url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(psycopg.OperationalError):
        store.count()                      # the call in flight fails ...
    assert store.count() == 1              # ... the next one reconnects
