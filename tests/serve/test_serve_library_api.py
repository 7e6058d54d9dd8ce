"""The API's camera / time filters, the one result schema, /v1/cameras, search by photo,
export and delete, on the real pipeline (fixture PAR model); delete on the PostgreSQL
store backend too (skipped without a server)."""
from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import sys
from pathlib import Path

import pytest
from cli_testlib import FIXTURE_ATTRIBUTES
from fastapi.testclient import TestClient
from PIL import Image
from serve_testlib import TOKEN, FakePipeline, auth, crop_png

from personlens.serve.config import ServeConfig
from personlens.serve.server import build

H = auth()
T0 = 1_700_000_000.0
# crop i: camera, timestamp
META = {0: ("cam-1", T0), 1: ("cam-1", T0 + 10), 2: ("cam-1", T0 + 20), 3: ("cam-2", T0 + 30),
        4: ("cam-2", None), 5: (None, T0 + 40)}
KEYS = ["id", "path", "attributes", "present", "camera", "timestamp", "timestamp_iso", "track_id",
        "description", "model_version", "image_url"]


def _b64(i: int) -> str:
    return base64.b64encode(crop_png(i)).decode()


def _id(i: int) -> str:
    return hashlib.sha256(crop_png(i)).hexdigest()


@pytest.fixture(scope="module")
def client(tmp_path_factory, pipeline):
    db = tmp_path_factory.mktemp("serve-lib") / "db"
    cfg = ServeConfig(db=db, token=TOKEN, max_body_bytes=2_000_000, max_file_bytes=1_000_000,
                      max_files=8, max_batch=8, max_wait_ms=10)
    app, service, _ = build(cfg, pipeline=pipeline, announce=lambda *_: None)
    with TestClient(app) as c:
        c.db = db
        images = [{"data": _b64(i), "camera": cam, "timestamp": ts} for i, (cam, ts) in META.items()]
        r = c.post("/v1/persons", json={"images": images}, headers=H)
        assert r.status_code == 200, r.text
        c.seeded = r.json()["records"]
        yield c


def _search(client, **params):
    r = client.get("/v1/search", params=params, headers=H)
    assert r.status_code == 200, r.text
    return r.json()


def test_one_result_schema_and_paths_inside_the_library(client):
    rec = client.seeded[0]
    assert list(rec) == KEYS + ["created"]
    assert rec["path"] == f"uploads/{rec['id'][:2]}/{rec['id']}.png"        # never the server's path
    assert set(rec["attributes"]) == set(FIXTURE_ATTRIBUTES)
    assert rec["present"] == sorted(rec["present"], key=lambda a: -rec["attributes"][a])
    assert rec["timestamp_iso"] == "2023-11-14T22:13:20Z" and client.seeded[4]["timestamp_iso"] is None
    got = client.get(f"/v1/persons/{rec['id']}", headers=H).json()
    assert list(got) == KEYS and got["path"] == rec["path"]
    hit = _search(client, q="a person", top_k=1)["results"][0]
    assert list(hit) == ["id", "rank", "score", *KEYS[1:]]
    assert not any(str(client.db) in json.dumps(x) for x in (rec, got, hit))


def test_search_and_browse_filter_by_camera_and_time(client):
    def ids(**params):
        out = _search(client, top_k=50, **params)
        return {x["id"] for x in out["results"]}, out["total"]

    for q in ({"q": "a person"}, {}):                     # ranked and browsed alike
        assert ids(**q) == ({_id(i) for i in META}, 6)
        assert ids(camera="cam-1", **q) == ({_id(i) for i in (0, 1, 2)}, 3)
        assert ids(camera=["cam-1", "cam-2"], **q)[1] == 5
        assert ids(camera="no-such-camera", **q) == (set(), 0)
        assert ids(after=T0 + 10, **q) == ({_id(i) for i in (1, 2, 3, 5)}, 4)      # inclusive
        assert ids(before="2023-11-14T22:13:40Z", **q) == ({_id(i) for i in (0, 1)}, 2)  # exclusive
        assert ids(after="2023-11-14T22:13:40", before=T0 + 40, camera="cam-1", **q) == ({_id(2)}, 1)
    page = _search(client, q="a person", top_k=2, offset=2)
    assert [x["rank"] for x in page["results"]] == [3, 4] and page["total"] == 6
    full = _search(client, q="a person", top_k=6)["results"]
    assert [x["score"] for x in page["results"]] == [x["score"] for x in full[2:4]]
    browse = _search(client, top_k=2, offset=1)
    assert [x["id"] for x in browse["results"]] == [_id(4), _id(3)]               # newest first
    assert browse["total"] == 6


def test_bad_times_are_422_with_a_readable_message(client):
    for params in ({"q": "a", "after": "yesterday"}, {"before": "nan"}, {"after": "2024-13-01"}):
        r = client.get("/v1/search", params=params, headers=H)
        assert r.status_code == 422, params
        assert "ISO 8601" in r.json()["detail"] or "finite" in r.json()["detail"]
    r = client.get(f"/v1/persons/{_id(0)}/similar", params={"after": "soon"}, headers=H)
    assert r.status_code == 422 and r.json()["detail"].startswith("after 'soon'")


def test_similar_with_camera_filters_and_other_cameras(client):
    def similar(**params):
        r = client.get(f"/v1/persons/{_id(0)}/similar", params={"top_k": 50, **params}, headers=H)
        assert r.status_code == 200, r.text
        return {x["id"]: x for x in r.json()["results"]}

    assert set(similar()) == {_id(i) for i in META if i != 0}
    assert set(similar(camera="cam-2")) == {_id(3), _id(4)}
    assert set(similar(other_cameras="true")) == {_id(3), _id(4), _id(5)}       # cam-1 left out
    assert set(similar(other_cameras="true", after=T0 + 35)) == {_id(5)}


def test_cameras(client):
    r = client.get("/v1/cameras", headers=H)
    assert r.status_code == 200
    assert r.json() == {"cameras": [
        {"name": "cam-1", "count": 3, "first": T0, "last": T0 + 20,
         "first_iso": "2023-11-14T22:13:20Z", "last_iso": "2023-11-14T22:13:40Z"},
        {"name": "cam-2", "count": 2, "first": T0 + 30, "last": T0 + 30,
         "first_iso": "2023-11-14T22:13:50Z", "last_iso": "2023-11-14T22:13:50Z"}]}


def _jpeg(i: int) -> bytes:
    buf = io.BytesIO()
    Image.open(io.BytesIO(crop_png(i))).save(buf, format="JPEG", quality=98)
    return buf.getvalue()


def test_search_by_image(client):
    def post(data, fields=None, params=None, name="q.jpg"):
        return client.post("/v1/search/image", files={"file": (name, data, "image/jpeg")},
                           data=fields or {}, params=params or {}, headers=H)

    r = post(_jpeg(3), {"top_k": "50"})                       # a new photo of a stored person
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert res[0]["id"] == _id(3) and res[0]["rank"] == 1 and len(res) == 6
    assert list(res[0]) == ["id", "rank", "score", *KEYS[1:]]
    assert [x["id"] for x in post(_jpeg(3), {"top_k": "2"}).json()["results"]] == [x["id"] for x in res[:2]]
    stored = post(crop_png(3), {"top_k": "50"}, name="q.png").json()["results"]  # the stored bytes
    assert _id(3) not in {x["id"] for x in stored} and len(stored) == 5           # itself left out
    only = post(_jpeg(3), {"camera": "cam-1", "after": str(T0 + 10)}).json()["results"]
    assert {x["id"] for x in only} == {_id(1), _id(2)}
    ex = post(_jpeg(3), {"exclude_camera": ["cam-1", "cam-2"]}).json()["results"]
    assert {x["id"] for x in ex} == {_id(5)}
    q = post(_jpeg(3), params={"camera": "cam-2", "top_k": 1}).json()["results"]  # query-string fields
    assert [x["id"] for x in q] == [_id(3)]
    w = post(_jpeg(3), {"where": "carryingBackpack=yes", "top_k": "50"}).json()["results"]
    assert all("carryingBackpack" in x["present"] for x in w)
    bad = post(b"not an image at all")
    assert bad.status_code == 422 and bad.json()["detail"]["errors"][0]["index"] == 0
    assert post(_jpeg(3), {"top_k": "0"}).status_code == 422
    assert post(_jpeg(3), {"before": "later"}).status_code == 422
    assert post(_jpeg(3), {"where": "nope=yes"}).status_code == 400
    assert client.post("/v1/search/image", json={"file": "x"}, headers=H).status_code == 415
    assert client.post("/v1/search/image", files={"other": ("a.png", crop_png(1), "image/png")},
                       headers=H).status_code == 422
    assert client.post("/v1/search/image", files={"file": ("a.jpg", _jpeg(3), "image/jpeg")}).status_code == 401


def test_export_csv_and_jsonl(client):
    r = client.get("/v1/export", params={"format": "csv"}, headers=H)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"] == 'attachment; filename="personlens-export.csv"'
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["id", "path", "camera", "timestamp_iso", "track_id", "present", "description",
                       *FIXTURE_ATTRIBUTES]
    assert [row[0] for row in rows[1:]] == [_id(i) for i in META]                 # stored order
    first = dict(zip(rows[0], rows[1]))
    assert first["camera"] == "cam-1" and first["timestamp_iso"] == "2023-11-14T22:13:20Z"
    assert first["path"] == client.seeded[0]["path"]
    assert first["present"].split(";") == client.seeded[0]["present"]              # most probable first
    assert float(first["personalMale"]) == pytest.approx(client.seeded[0]["attributes"]["personalMale"], abs=1e-6)
    r = client.get("/v1/export", params={"format": "jsonl", "camera": "cam-2"}, headers=H)
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert [x["id"] for x in lines] == [_id(3), _id(4)] and list(lines[0]) == KEYS   # + image_url
    none = client.get("/v1/export", params={"format": "csv", "camera": "zzz"}, headers=H)
    assert len(none.text.splitlines()) == 1                                      # just the header
    assert client.get("/v1/export", params={"format": "xml"}, headers=H).status_code == 422
    assert client.get("/v1/export", params={"after": "x"}, headers=H).status_code == 422
    assert client.get("/v1/export", params={"where": "nope=yes"}, headers=H).status_code == 400


def test_delete(client):
    r = client.post("/v1/persons", json={"images": [{"data": _b64(50), "camera": "cam-9"}]}, headers=H)
    rec = r.json()["records"][0]
    upload = client.db / rec["path"]
    assert upload.is_file()
    assert client.delete(f"/v1/persons/{rec['id']}").status_code == 401                # a write
    r = client.delete(f"/v1/persons/{rec['id']}", headers=H)
    assert r.status_code == 204 and r.content == b""
    assert client.get(f"/v1/persons/{rec['id']}", headers=H).status_code == 404
    assert client.delete(f"/v1/persons/{rec['id']}", headers=H).status_code == 404
    assert client.delete("/v1/persons/not-an-id", headers=H).status_code == 404
    assert not upload.exists()
    assert rec["id"] not in {x["id"] for x in _search(client, q="a person", top_k=50)["results"]}
    assert "cam-9" not in [c["name"] for c in client.get("/v1/cameras", headers=H).json()["cameras"]]
    assert client.get("/v1/info", headers=H).json()["records"] == 6


def test_store_backend_delete_keeps_indexes_and_removes_uploads(tmp_path):
    sys.path.insert(0, str(Path(__file__).parent))
    from scaleout_testlib import drop_schema, fresh_schema, pg_url_or_skip

    from personlens.serve.backend import StoreBackend
    from personlens.store.postgres import PostgresStore

    url = pg_url_or_skip()
    schema = fresh_schema(url)
    pipe = FakePipeline()
    try:
        b = StoreBackend(PostgresStore(url, schema=schema), pipe, root=tmp_path)
        paths = []
        for i in range(3):
            p = tmp_path / "uploads" / f"{i:02d}" / f"{i}.png"
            p.parent.mkdir(parents=True)
            p.write_bytes(crop_png(i))
            paths.append(p)
        recs = pipe.process([Image.open(p) for p in paths], [str(p.resolve()) for p in paths],
                            ids=[_id(i) for i in range(3)], camera="c")
        b.add(recs)
        assert len(b.index("reid")) == 3
        assert b.delete([_id(1), "0" * 64]) == 1
        assert not paths[1].exists() and paths[0].exists()
        assert sorted(b.index("reid").ids()) == sorted([_id(0), _id(2)])
        assert [r.id for _, r in b.similar_vector(recs[0].reid_embedding, 5)] == [_id(0), _id(2)] or \
            {r.id for _, r in b.similar_vector(recs[0].reid_embedding, 5)} == {_id(0), _id(2)}
        assert b.cameras() == [{"name": "c", "count": 2, "first": None, "last": None}]
        b.close()
    finally:
        drop_schema(url, schema)
