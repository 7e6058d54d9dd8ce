"""The HTTP API on the real pipeline (fixture PAR model): ingest, search, filters, similar,
records, thumbnails, auth, limits and malformed inputs (always 4xx, never 5xx)."""
from __future__ import annotations

import base64
import hashlib
import io
import json

import pytest
from cli_testlib import FIXTURE_ATTRIBUTES, huge_png, image_bytes, noise_image
from fastapi.testclient import TestClient
from PIL import Image
from serve_testlib import TOKEN, auth, crop_png

from personlens.serve.config import ServeConfig
from personlens.serve.server import build

H = auth()


def files(*blobs, name="crop{}.png", ctype="image/png"):
    return [("files", (name.format(i), b, ctype)) for i, b in enumerate(blobs)]


@pytest.fixture(scope="module")
def client(tmp_path_factory, pipeline):
    db = tmp_path_factory.mktemp("serve") / "db"
    cfg = ServeConfig(db=db, token=TOKEN, max_body_bytes=2_000_000, max_file_bytes=1_000_000,
                      max_files=8, max_batch=8, max_wait_ms=10)
    app, service, _ = build(cfg, pipeline=pipeline, announce=lambda *_: None)
    with TestClient(app) as c:
        c.service = service
        r = c.post("/v1/persons", files=files(*[crop_png(i) for i in range(6)]),
                   data={"camera": "cam-1"}, headers=H)
        assert r.status_code == 200, r.text
        c.seeded = r.json()["records"]
        yield c


def test_upload_returns_records_keyed_by_content(client):
    recs = client.seeded
    assert [r["id"] for r in recs] == [hashlib.sha256(crop_png(i)).hexdigest() for i in range(6)]
    for r in recs:
        assert r["created"] is True and r["camera"] == "cam-1"
        assert set(r["attributes"]) == set(FIXTURE_ATTRIBUTES)
        assert set(r["present"]) <= set(FIXTURE_ATTRIBUTES) and "personalMale" in r["present"]
        assert r["description"].startswith("a person")   # the text-search baseline's sentence
        assert r["image_url"] == f"/v1/persons/{r['id']}/image"
        assert "search_embedding" not in r
    # the same bytes again: nothing new, the stored records
    again = client.post("/v1/persons", files=files(crop_png(0), crop_png(0)), headers=H).json()
    assert again["created"] == 0 and [r["id"] for r in again["records"]] == [recs[0]["id"]] * 2
    assert client.get("/v1/info", headers=H).json()["records"] == 6


def test_upload_json_base64_with_per_image_metadata(client):
    body = {"camera": "cam-j", "images": [
        {"data": base64.b64encode(crop_png(100)).decode(), "timestamp": 1700000000.5, "track_id": "t-1"},
        {"data": base64.b64encode(crop_png(101)).decode(), "timestamp": "2024-01-02T03:04:05Z",
         "camera": "cam-k", "filename": "x.png"}]}
    r = client.post("/v1/persons", json=body, headers=H)
    assert r.status_code == 200, r.text
    a, b = r.json()["records"]
    assert (a["camera"], a["timestamp"], a["track_id"]) == ("cam-j", 1700000000.5, "t-1")
    assert (b["camera"], b["timestamp"], b["track_id"]) == ("cam-k", 1704164645.0, None)
    got = client.get(f"/v1/persons/{a['id']}", headers=H).json()
    assert got["camera"] == "cam-j" and got["attributes"] == a["attributes"]


def test_multipart_metadata_per_file_and_bad_metadata(client):
    r = client.post("/v1/persons", files=files(crop_png(110), crop_png(111)),
                    data={"track_id": ["a", "b"], "timestamp": "12"}, headers=H)
    assert r.status_code == 200, r.text
    assert [x["track_id"] for x in r.json()["records"]] == ["a", "b"]
    assert {x["timestamp"] for x in r.json()["records"]} == {12.0}
    r = client.post("/v1/persons", files=files(crop_png(112)), data={"timestamp": "yesterday"}, headers=H)
    assert r.status_code == 422 and "timestamp" in r.text
    r = client.post("/v1/persons", files=files(crop_png(113), crop_png(114), crop_png(115)),
                    data={"camera": ["a", "b"]}, headers=H)
    assert r.status_code == 422


def test_search_with_where_filters(client):
    r = client.get("/v1/search", params={"q": "a man carrying a backpack", "top_k": 3}, headers=H)
    assert r.status_code == 200
    res = r.json()["results"]
    assert len(res) == 3 and [x["rank"] for x in res] == [1, 2, 3]
    assert res[0]["score"] >= res[1]["score"] >= res[2]["score"]
    with_bp = client.get("/v1/search", params={"q": "a person", "where": "carryingBackpack=yes",
                                               "top_k": 50}, headers=H).json()["results"]
    without = client.get("/v1/search", params={"q": "a person", "where": "carryingBackpack=no",
                                               "top_k": 50}, headers=H).json()["results"]
    assert all("carryingBackpack" in x["present"] for x in with_bp)
    assert all("carryingBackpack" not in x["present"] for x in without)
    total = client.get("/v1/info", headers=H).json()["records"]
    assert len(with_bp) + len(without) == total
    none = client.get("/v1/search", params=[("q", "x"), ("where", "accessoryHat=yes")], headers=H)
    assert none.json()["results"] == []          # threshold 0.98: nobody wears a hat
    browse = client.get("/v1/search", params={"where": "personalMale=yes", "top_k": 4}, headers=H).json()
    assert len(browse["results"]) == 4 and "score" not in browse["results"][0]
    for bad in ("notAnAttribute=yes", "personalMale=maybe", "personalMale"):
        r = client.get("/v1/search", params={"q": "a", "where": bad}, headers=H)
        assert r.status_code == 400, bad
    assert client.get("/v1/search", params={"q": "a", "top_k": 0}, headers=H).status_code == 422


def test_contradictory_where_filters_are_422(client):
    for q in ("a person", None):                                # search and browse
        base = [("q", q)] if q else []
        r = client.get("/v1/search", params=[*base, ("where", "personalMale=yes"),
                                             ("where", "personalMale=no")], headers=H)
        assert r.status_code == 422 and "personalMale" in r.json()["detail"], r.text
        same = client.get("/v1/search", params=[*base, ("where", "personalMale=yes"),
                                                ("where", "personalMale=YES")], headers=H)
        assert same.status_code == 200 and same.json()["where"] == {"personalMale": True}
    rid = client.seeded[0]["id"]
    r = client.get(f"/v1/persons/{rid}/similar", params=[("where", "carryingBackpack=no"),
                                                         ("where", "carryingBackpack=yes")], headers=H)
    assert r.status_code == 422 and "carryingBackpack" in r.json()["detail"]


def test_backend_where_values_are_booleans_or_yes_no():
    """The service's Python path (``Backend.search``/``similar``/``browse``) checks ``where``
    as ``PersonLibrary`` does: ``"no"`` is False, not a truthy string."""
    from personlens.serve.backend import Backend

    class Names(Backend):
        def attribute_names(self):
            return list(FIXTURE_ATTRIBUTES)

    b = Names()
    assert b.validate_where({"personalMale": "no", "carryingBackpack": "YES", "accessoryHat": False}) == \
        {"personalMale": False, "carryingBackpack": True, "accessoryHat": False}
    for bad in ("maybe", 3, None):
        with pytest.raises(ValueError, match="personalMale"):
            b.validate_where({"personalMale": bad})
    with pytest.raises(KeyError, match="did you mean 'accessoryHat'"):
        b.validate_where({"accessoryhat": True})


def test_similar_get_and_thumbnail(client):
    rid = client.seeded[2]["id"]
    r = client.get(f"/v1/persons/{rid}/similar", params={"top_k": 4}, headers=H)
    assert r.status_code == 200
    res = r.json()["results"]
    assert len(res) == 4 and rid not in [x["id"] for x in res]
    assert res[0]["score"] >= res[-1]["score"]
    c = client.get(f"/v1/persons/{rid}/similar", params={"top_k": 4, "camera_centring": "true"},
                   headers=H).json()["results"]
    assert len(c) == 4 and rid not in [x["id"] for x in c]
    assert [x["rank"] for x in c] == [1, 2, 3, 4] and c[0]["score"] >= c[-1]["score"]
    f = client.get(f"/v1/persons/{rid}/similar", params={"where": "carryingBackpack=yes"}, headers=H)
    assert all("carryingBackpack" in x["present"] for x in f.json()["results"])
    assert client.get(f"/v1/persons/{rid}", headers=H).json()["id"] == rid
    img = client.get(f"/v1/persons/{rid}/image", params={"size": 32}, headers=H)
    assert img.status_code == 200 and img.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(img.content)).size) <= 64
    unknown = "0" * 64
    for path in (f"/v1/persons/{unknown}", f"/v1/persons/{unknown}/similar",
                 f"/v1/persons/{unknown}/image", "/v1/persons/not-an-id"):
        assert client.get(path, headers=H).status_code == 404, path


def test_attributes_health_metrics_openapi(client):
    attrs = client.get("/v1/attributes", headers=H).json()["attributes"]
    assert [a["name"] for a in attrs] == FIXTURE_ATTRIBUTES and all(a["phrase"] for a in attrs)
    health = client.get("/healthz").json()                               # open
    assert health["status"] == "ok" and health["checks"] == {"store": "ok"}
    m = client.get("/metrics", headers=H)
    assert m.status_code == 200
    for name in ("personlens_queue_depth", "personlens_batch_size_bucket",
                 "personlens_request_seconds_bucket", 'personlens_errors_total{kind="queue_full"}'):
        assert name in m.text
    spec = client.get("/openapi.json", headers=H).json()
    assert {"/v1/persons", "/v1/search", "/v1/persons/{id}/similar", "/healthz"} <= set(spec["paths"])
    assert "multipart/form-data" in spec["paths"]["/v1/persons"]["post"]["requestBody"]["content"]
    page = client.get("/")
    assert page.status_code == 200 and "<title>personlens</title>" in page.text


def test_attributes_carry_how_they_hold_on_new_cameras():
    """/v1/attributes' rows get the model's new_cameras rating where it has one; a pipeline
    without a predictor, or an unreadable file, gives plain rows (the page still loads)."""
    from types import SimpleNamespace

    from personlens.models.transfer import TransferReport
    from personlens.serve.backend import Backend

    names = ["personalMale", "carryingOther", "hairLong"]
    report = TransferReport.from_dict({"attributes": {
        "personalMale": {"auc_new_cameras": 0.75, "positives": 300},
        "carryingOther": {"auc_new_cameras": 0.52, "positives": 90}}})
    b = Backend()
    b.store = SimpleNamespace(attribute_names=lambda: names)
    b.pipeline = SimpleNamespace(names=names, predictor=SimpleNamespace(transfer=report))
    rows = {a["name"]: a for a in b.attributes()}
    assert rows["personalMale"]["new_cameras"] == {"auc": 0.75, "rating": "holds"}
    assert rows["carryingOther"]["new_cameras"] == {"auc": 0.52, "rating": "near chance"}
    assert "new_cameras" not in rows["hairLong"] and rows["hairLong"]["phrase"]

    class Broken:
        @property
        def transfer(self):
            raise ValueError("new_cameras.json is not readable JSON")

    b.pipeline = SimpleNamespace(names=names, predictor=Broken())
    assert all("new_cameras" not in a for a in b.attributes())
    b.pipeline = SimpleNamespace(names=names)
    assert [a["name"] for a in b.attributes()] == names


def test_auth_is_required_except_health_and_page(client):
    for method, path in (("GET", "/v1/search?q=a"), ("GET", "/metrics"), ("GET", "/openapi.json"),
                         ("POST", "/v1/persons"),          # /docs: open, asks for it (test_serve_docs)
                         ("GET", f"/v1/persons/{client.seeded[0]['id']}")):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            r = client.request(method, path, headers=headers)
            assert r.status_code == 401, (method, path, headers)
            assert r.headers["www-authenticate"] == "Bearer"
    assert client.get("/healthz").status_code == 200
    # ?token= sets a cookie that works for GET (thumbnails in <img>), never for writes
    fresh = TestClient(client.app)
    assert fresh.get("/?token=wrong", follow_redirects=False).status_code == 401
    r = fresh.get(f"/?token={TOKEN}", follow_redirects=False)
    assert r.status_code == 303 and "httponly" in r.headers["set-cookie"].lower()
    assert fresh.get("/v1/info").status_code == 200
    assert fresh.post("/v1/persons", files=files(crop_png(120))).status_code == 401


def test_wrong_content_type_and_size_limits(client):
    r = client.post("/v1/persons", content=b"hello", headers={**H, "content-type": "text/plain"})
    assert r.status_code == 415
    r = client.post("/v1/persons", content=b"x" * 10, headers={**H, "content-type": "image/png"})
    assert r.status_code == 415
    # Content-Length over the limit: refused before the body is read
    r = client.post("/v1/persons", files=files(b"\0" * 2_100_000), headers=H)
    assert r.status_code == 413
    # a chunked body (no Content-Length) that streams past the limit
    def chunks():
        for _ in range(40):
            yield b"\0" * 65536
    r = client.post("/v1/persons", content=chunks(),
                    headers={**H, "content-type": "application/json"})
    assert r.status_code == 413
    # one file over the per-file limit, too many files
    r = client.post("/v1/persons", files=files(b"\0" * 1_100_000), headers=H)
    assert r.status_code == 413
    r = client.post("/v1/persons", files=files(*[crop_png(200 + i) for i in range(9)]), headers=H)
    assert r.status_code == 413
    assert client.post("/v1/persons", data={"camera": "x"}, headers=H).status_code in (415, 422)
    r = client.post("/v1/persons", files=[("other", ("a.png", crop_png(1), "image/png"))], headers=H)
    assert r.status_code == 422


MALFORMED = {
    "zero_bytes": b"",
    "random_bytes": bytes(range(256)) * 7,
    "truncated_png": image_bytes(noise_image(3), "PNG")[:300],
    "truncated_jpeg": image_bytes(noise_image(4), "JPEG")[:400],
    "text": b"not an image at all",
    "decompression_bomb": huge_png(9000, 9000),   # 81 Mpx in ~10 kB
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_malformed_images_are_4xx_and_leave_nothing_behind(client, kind):
    before = client.get("/v1/info", headers=H).json()["records"]
    data = MALFORMED[kind]
    r = client.post("/v1/persons", files=files(crop_png(300), data), headers=H)
    assert r.status_code == 422, r.text
    errors = r.json()["detail"]["errors"]
    assert [e["index"] for e in errors] == [1]
    r = client.post("/v1/persons", json={"images": [base64.b64encode(data).decode()]}, headers=H)
    assert r.status_code == 422
    assert client.get("/v1/info", headers=H).json()["records"] == before   # nothing added
    assert client.get("/healthz").status_code == 200


def test_malformed_json_bodies(client):
    for body in (b"{", b"[]", b'{"images": []}', b'{"images": [1]}', b'{"images": ["***"]}',
                 json.dumps({"images": [{"data": "aGVsbG8="}], "camera": 5}).encode()):
        r = client.post("/v1/persons", content=body, headers={**H, "content-type": "application/json"})
        assert 400 <= r.status_code < 500, (body, r.status_code)
    m = client.get("/metrics", headers=H).text
    assert 'personlens_errors_total{kind="internal"} 0.0' in m


def test_healthz_is_503_when_the_store_does_not_answer(client, monkeypatch):
    def down(timeout_s=2.0):
        raise ConnectionError("store unreachable")

    monkeypatch.setattr(client.service.backend.store, "ping", down)
    r = client.get("/healthz")
    assert r.status_code == 503 and r.headers["retry-after"]
    assert r.json() == {"status": "unavailable",
                        "checks": {"store": "error: ConnectionError: store unreachable"}}
    monkeypatch.undo()
    assert client.get("/healthz").status_code == 200
