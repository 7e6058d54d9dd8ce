"""Camera and time filters, the camera summary and path look-ups: the same cases on every
``PersonStore`` backend (PostgreSQL skipped without a server, see tests/serve/scaleout_testlib)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from crops_testlib import make_record

sys.path.insert(0, str(Path(__file__).parents[1] / "serve"))
from scaleout_testlib import drop_schema, fresh_schema, pg_url_or_skip  # noqa: E402

from personlens.store import SQLiteStore  # noqa: E402


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = SQLiteStore(tmp_path / "people.sqlite")
        yield s
        s.close()
        return
    from personlens.store.postgres import PostgresStore

    url = pg_url_or_skip()
    schema = fresh_schema(url)
    s = PostgresStore(url, schema=schema)
    yield s
    s.close()
    drop_schema(url, schema)


# camera, timestamp per record i (None: not known)
SPEC = [("a", 100.0), ("a", 200.0), ("b", 150.0), ("b", None), (None, 120.0), ("c", 300.0),
        ("a", None), (None, None)]


@pytest.fixture()
def recs(store):
    out = [make_record(i, camera=c, timestamp=t) for i, (c, t) in enumerate(SPEC)]
    store.put(out)
    return out


def _ids(recs, keep):
    return [r.id for r in recs if keep(r)]


def test_filter_by_cameras(store, recs):
    assert store.filter_ids({}, cameras=["a"]) == _ids(recs, lambda r: r.camera == "a")
    assert store.filter_ids({}, cameras=["b", "a", "a"]) == _ids(recs, lambda r: r.camera in ("a", "b"))
    assert store.filter_ids({}, cameras=["no-such-camera"]) == []
    assert store.filter_ids({}, cameras=[]) == [r.id for r in recs]          # empty: any camera
    assert store.filter_ids({}, cameras=None) == [r.id for r in recs]
    assert store.filter_ids({}, exclude_cameras=["a", "c"]) == \
        _ids(recs, lambda r: r.camera not in ("a", "c"))                    # no camera: kept


def test_filter_by_time_after_inclusive_before_exclusive(store, recs):
    assert store.filter_ids({}, after=120) == _ids(recs, lambda r: r.timestamp is not None and r.timestamp >= 120)
    assert store.filter_ids({}, before=150) == _ids(recs, lambda r: r.timestamp is not None and r.timestamp < 150)
    assert store.filter_ids({}, after=100, before=200) == [recs[0].id, recs[2].id, recs[4].id]
    assert store.filter_ids({}, after=200, before=200) == []
    # records without a timestamp are left out as soon as either bound is given
    assert recs[3].id not in store.filter_ids({}, after=-1e12)
    assert recs[3].id not in store.filter_ids({}, before=1e12)


def test_filters_combine_with_attributes_and_model_version(store, recs):
    store.put([make_record(50, camera="a", timestamp=150.0, model_version="v2")])
    where = {"personalMale": True}
    want = _ids(recs, lambda r: "personalMale" in r.present and r.camera == "a"
                and r.timestamp is not None and r.timestamp >= 100)
    assert want and store.filter_ids(where, "v1", cameras=["a"], after=100) == want
    assert store.filter_ids({}, "v2", cameras=["a"]) == [make_record(50).id]
    assert make_record(50).id in store.filter_ids({}, cameras=["a"], after=150, before=151)


def test_camera_summary(store, recs):
    assert store.camera_summary() == [
        {"name": "a", "count": 3, "first": 100.0, "last": 200.0},
        {"name": "b", "count": 2, "first": 150.0, "last": 150.0},
        {"name": "c", "count": 1, "first": 300.0, "last": 300.0}]
    store.put([make_record(60, camera="d", model_version="v2")])
    assert store.camera_summary("v2") == [{"name": "d", "count": 1, "first": None, "last": None}]
    assert [c["name"] for c in store.camera_summary("v1")] == ["a", "b", "c"]
    store.delete([r.id for r in recs if r.camera == "c"])
    assert "c" not in [c["name"] for c in store.camera_summary()]


def test_used_paths(store, recs):
    assert store.used_paths([recs[0].path, "/nowhere.png", recs[3].path]) == {recs[0].path, recs[3].path}
    assert store.used_paths([]) == set()


def test_camera_and_time_indexes_exist(store, recs):
    if isinstance(store, SQLiteStore):
        names = {r[0] for r in store._conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert {"records_camera", "records_timestamp"} <= names
    else:
        names = {r[0] for r in store._c.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname=%s", (store.schema,))}
        assert {"personlens_records_camera", "personlens_records_ts"} <= names


def test_existing_sqlite_library_gets_the_indexes_on_open(tmp_path):
    path = tmp_path / "old.sqlite"
    with SQLiteStore(path) as s:
        s.put([make_record(0, camera="a", timestamp=1.0)])
        s._conn.execute("DROP INDEX records_camera")       # as written before the indexes existed
        s._conn.execute("DROP INDEX records_timestamp")
    with SQLiteStore(path) as s:
        names = {r[0] for r in s._conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert {"records_camera", "records_timestamp"} <= names
        assert s.get_meta("schema_version") == 1 and s.filter_ids({}, cameras=["a"]) == [make_record(0).id]
