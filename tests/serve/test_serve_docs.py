"""The API documentation: ``/docs`` served offline (Swagger UI from the fastapi-offline wheel),
its token form and cookie, ``/openapi.json`` behind the token, the bearer scheme and a
documented body on every write; and the page in a real browser (skipped without chromium)."""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from serve_testlib import TOKEN, FakePipeline, auth, live_server

from personlens.serve.config import ServeConfig
from personlens.serve.guard import OPEN_PATHS
from personlens.serve.server import build

CHROMIUM = os.environ.get("PERSONLENS_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
        "--disable-dev-shm-usage"]


def _app(tmp_path, token=TOKEN):
    cfg = ServeConfig(db=tmp_path / "db", token=token, auth=token is not None)
    app, _, _ = build(cfg, pipeline=FakePipeline(), announce=lambda *_: None)
    return app


@pytest.fixture()
def client(tmp_path):
    with TestClient(_app(tmp_path)) as c:
        yield c


def test_openapi_documents_bearer_auth_and_every_request_body(client):
    spec = client.get("/openapi.json", headers=auth()).json()
    scheme = spec["components"]["securitySchemes"]["bearer"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    assert spec["security"] == [{"bearer": []}]
    writes = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            # the open routes say so; every other one needs the token
            assert op.get("security") == ([] if path in OPEN_PATHS else None), (method, path)
            if method in ("post", "put", "patch"):
                writes.append((method, path))
                body = op.get("requestBody")
                assert body and body.get("content"), f"{method.upper()} {path}: no requestBody"
                for media, content in body["content"].items():
                    assert content.get("schema"), f"{method.upper()} {path} {media}: no schema"
    assert ("post", "/v1/persons") in writes and ("post", "/v1/videos") in writes
    persons = spec["paths"]["/v1/persons"]["post"]["requestBody"]["content"]
    assert persons["multipart/form-data"]["schema"]["properties"]["files"]["items"]["format"] == "binary"
    assert persons["application/json"]["schema"]["required"] == ["images"]
    videos = spec["paths"]["/v1/videos"]["post"]["requestBody"]["content"]
    assert videos["multipart/form-data"]["schema"]["required"] == ["file"]
    assert videos["application/json"]["schema"]["required"] == ["path"]
    assert spec["paths"]["/healthz"]["get"]["security"] == []


def test_docs_page_is_offline_and_asks_for_the_token(client):
    assert client.get("/openapi.json").status_code == 401           # the spec needs the token
    form = client.get("/docs")                                       # the page is open: a form
    assert form.status_code == 200 and 'name="token"' in form.text and "swagger" not in form.text.lower()
    assert client.post("/docs", data={"token": "wrong"}).status_code == 401
    assert client.get("/docs?token=wrong", follow_redirects=False).status_code == 401
    r = client.post("/docs", data={"token": TOKEN}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/docs"
    assert "httponly" in r.headers["set-cookie"].lower() and "samesite=strict" in r.headers["set-cookie"].lower()
    page = client.get("/docs")                                       # the cookie: Swagger UI
    assert page.status_code == 200
    assert "/static/docs/swagger-ui-bundle.js" in page.text and "/static/docs/swagger-ui.css" in page.text
    assert "http://" not in page.text and "https://" not in page.text     # nothing from a CDN
    assert client.get("/openapi.json").status_code == 200            # the page's spec fetch (cookie)
    redoc = client.get("/redoc")
    assert "/static/docs/redoc.standalone.js" in redoc.text and "https://" not in redoc.text
    fresh = TestClient(client.app)                                   # assets: open, no token
    for name, kind in (("swagger-ui-bundle.js", "javascript"), ("swagger-ui.css", "css"),
                       ("redoc.standalone.js", "javascript"), ("favicon.png", "image/png")):
        r = fresh.get(f"/static/docs/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"] and len(r.content) > 1000, name
    assert fresh.get("/static/index.html").status_code == 200     # the page's own /static still works
    # a link with ?token= works as for the search page; the header works too
    assert fresh.get(f"/docs?token={TOKEN}", follow_redirects=False).status_code == 303
    assert "swagger-ui-bundle.js" in TestClient(client.app).get("/docs", headers=auth()).text


def test_docs_without_auth_show_swagger_directly(tmp_path):
    with TestClient(_app(tmp_path, token=None)) as c:
        assert "swagger-ui-bundle.js" in c.get("/docs").text
        spec = c.get("/openapi.json").json()
        assert "securitySchemes" not in spec.get("components", {}) and "security" not in spec


def test_docs_in_a_browser_render_offline_and_try_it_out(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install -y chromium)")
    cfg = ServeConfig(db=tmp_path / "db", max_batch=8, max_wait_ms=5)
    with live_server(cfg, FakePipeline()) as (url, _, _), sync_api.sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        except Exception as e:  # pragma: no cover - a broken browser install
            pytest.skip(f"chromium does not start: {e}")
        try:
            page = browser.new_page()
            page.set_default_timeout(20000)
            asked = []
            page.on("request", lambda req: asked.append(req.url))
            page.goto(url + "/docs")
            page.fill("input[name=token]", TOKEN)
            page.click("button[type=submit]")
            page.wait_for_selector(".opblock-summary-path[data-path='/v1/persons']")  # spec loaded
            assert page.locator(".swagger-ui .btn.authorize").count() == 1
            # Authorize with the token, then "Try it out" on GET /v1/info
            page.click(".swagger-ui .btn.authorize")
            page.fill(".auth-container input[type=text], .auth-container input[type=password]", TOKEN)
            page.click(".auth-container .btn.modal-btn.auth.authorize")
            page.click(".swagger-ui .btn-done")
            page.click("#operations-service-info_v1_info_get .opblock-summary")
            page.click("#operations-service-info_v1_info_get .try-out__btn")
            page.click("#operations-service-info_v1_info_get .btn.execute")
            op = "#operations-service-info_v1_info_get"
            page.wait_for_selector(f"{op} .live-responses-table tbody .response-col_status")
            status = page.locator(f"{op} .live-responses-table tbody .response-col_status").first.inner_text()
            if os.environ.get("PERSONLENS_DOCS_SCREENSHOT"):
                page.screenshot(path=os.environ["PERSONLENS_DOCS_SCREENSHOT"], full_page=True)
            assert status.strip().startswith("200"), status
            curl = page.locator(f"{op} .curl-command").inner_text()
            assert f"Bearer {TOKEN}" in curl
        finally:
            browser.close()
    hosts = {urlsplit(u).hostname for u in asked if not u.startswith(("data:", "blob:"))}
    assert hosts == {"127.0.0.1"}, hosts                             # nothing from a CDN
