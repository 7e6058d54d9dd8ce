"""Hardening of the HTTP API (issue 14): hostile JSON (deep nesting, huge arrays), clients that
hang up or trickle, bounded body parsing, one ``created: true`` per new crop under concurrency,
the multipart file limit, ``HEAD /healthz`` and private file modes. Every answer is 4xx / 503,
never a 500."""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import socket
import stat
import threading
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient
from serve_testlib import TOKEN, FakePipeline, auth, crop_png, live_server

from personlens.serve.config import ServeConfig
from personlens.serve.server import build, make_server

H = auth()
JSON = {**H, "content-type": "application/json"}


@pytest.fixture()
def client(tmp_path):
    cfg = ServeConfig(db=tmp_path / "db", token=TOKEN, max_wait_ms=0)
    app, service, _ = build(cfg, pipeline=FakePipeline(), announce=lambda *_: None)
    with TestClient(app) as c:
        c.service = service
        yield c


def _metrics(get) -> str:
    return get("/metrics", headers=H).text


def _wait(cond, timeout=10.0):
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.01)


# ------------------------------------------------------------------ 1. deep JSON
@pytest.mark.parametrize("depth", [33, 1000, 100_000])
def test_deeply_nested_json_is_400_never_500(client, depth):
    body = '{"images": ' + "[" * depth + "]" * depth + "}"
    for route in ("/v1/persons", "/v1/videos"):
        r = client.post(route, content=body, headers=JSON)
        assert r.status_code == 400, (route, r.status_code, r.text[:200])
        assert "nested" in r.text
    nested_object = '{"a": ' * depth + "1" + "}" * depth
    assert client.post("/v1/persons", content=nested_object, headers=JSON).status_code == 400
    assert 'personlens_errors_total{kind="internal"} 0.0' in _metrics(client.get)


def test_json_within_the_depth_limit_still_parses(client):
    body = {"images": [{"data": base64.b64encode(crop_png(1)).decode(),
                        "filename": "a[b],{c}.png", "camera": "x\"[y"}]}
    r = client.post("/v1/persons", json=body, headers=H)
    assert r.status_code == 200, r.text
    assert r.json()["records"][0]["camera"] == 'x"[y'


# ------------------------------------------------------------------ 1 / 4. long arrays
def test_long_json_arrays_are_refused_before_their_items_are_decoded(client):
    many = json.dumps({"images": [[]] * 5000})
    r = client.post("/v1/persons", content=many, headers=JSON)
    assert r.status_code == 413 and "array" in r.text
    # an array anywhere in the body, not only "images"
    body = json.dumps({"images": [base64.b64encode(crop_png(2)).decode()], "x": list(range(5000))})
    assert client.post("/v1/persons", content=body, headers=JSON).status_code == 413
    # 65 images: refused as too many, by the same early check
    imgs = [base64.b64encode(crop_png(3)).decode()] * 65
    r = client.post("/v1/persons", json={"images": imgs}, headers=H)
    assert r.status_code == 413
    # an object with too many members
    body = json.dumps({f"k{i}": 1 for i in range(5000)} | {"images": []})
    assert client.post("/v1/persons", content=body, headers=JSON).status_code == 413
    assert 'personlens_errors_total{kind="internal"} 0.0' in _metrics(client.get)


def test_a_large_body_of_empty_arrays_stays_small_in_memory(client):
    """8 MB of ``[],``: json.loads would build ~2.7 M lists (~200 MB); refused while scanning."""
    body = b'{"images": [' + b"[]," * 2_700_000 + b"[]]}"
    assert len(body) > 8_000_000
    tracemalloc.start()
    try:
        r = client.post("/v1/persons", content=body, headers=JSON)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.status_code == 413
    assert peak < 6 * len(body), f"peak {peak / 1e6:.0f} MB for a {len(body) / 1e6:.0f} MB body"


def test_large_bodies_are_parsed_a_few_at_a_time(tmp_path):
    """With one body slot, a second large body waits, then gets 503 + Retry-After (its body read
    and dropped, so the client sees the answer); small bodies are not held up."""
    cfg = ServeConfig(db=tmp_path / "db", max_parallel_bodies=1, body_slot_wait_s=0.3,
                      body_timeout_s=5, max_body_bytes=4_000_000)
    with live_server(cfg, FakePipeline()) as (url, server, service):
        host, port = url.removeprefix("http://").split(":")
        slow = socket.create_connection((host, int(port)))
        try:
            slow.sendall(b"POST /v1/persons HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
                         + b"\r\nContent-Type: application/json\r\nContent-Length: 2000000\r\n\r\n"
                         + b'{"images": [')
            _wait(lambda: service.body_slots.locked())
            big = json.dumps({"images": [base64.b64encode(crop_png(9)).decode()],
                              "pad": "x" * 1_500_000})
            r = httpx.post(url + "/v1/persons", content=big, headers=JSON, timeout=30)
            assert r.status_code == 503 and r.headers["retry-after"], r.text
            small = httpx.post(url + "/v1/persons", json={"images": [base64.b64encode(crop_png(8)).decode()]},
                               headers=H, timeout=30)
            assert small.status_code == 200
        finally:
            slow.close()
        _wait(lambda: not service.body_slots.locked())
        r = httpx.post(url + "/v1/persons", content=big, headers=JSON, timeout=30)
        assert r.status_code == 200, r.text


# ------------------------------------------------------------------ 2. hang-ups
class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.mark.parametrize("kind", ["multipart", "json"])
def test_a_client_hanging_up_mid_upload_is_a_client_error(tmp_path, kind):
    cfg = ServeConfig(db=tmp_path / "db")
    logs = _Records()
    loggers = [logging.getLogger(n) for n in ("uvicorn.error", "uvicorn", "personlens.serve")]
    with live_server(cfg, FakePipeline()) as (url, server, service):
        for lg in loggers:
            lg.addHandler(logs)
        try:
            host, port = url.removeprefix("http://").split(":")
            ctype = b"multipart/form-data; boundary=xyz" if kind == "multipart" else b"application/json"
            start = (b"--xyz\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.png\"\r\n"
                     b"Content-Type: image/png\r\n\r\n" + b"\0" * 1000) if kind == "multipart" \
                else b'{"images": ["' + b"A" * 1000
            for _ in range(3):
                s = socket.create_connection((host, int(port)))
                s.sendall(b"POST /v1/persons HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
                          + b"\r\nContent-Type: " + ctype + b"\r\nContent-Length: 500000\r\n\r\n" + start)
                time.sleep(0.2)
                s.close()
            _wait(lambda: 'status="499"} 3.0' in _metrics(lambda p, **kw: httpx.get(url + p, **kw)))
            m = _metrics(lambda p, **kw: httpx.get(url + p, **kw))
        finally:
            for lg in loggers:
                lg.removeHandler(logs)
    assert 'personlens_errors_total{kind="client_disconnect"} 3.0' in m
    assert 'status="500"' not in m and 'personlens_errors_total{kind="internal"} 0.0' in m
    assert not [r for r in logs.records if r.exc_info], [r.getMessage() for r in logs.records]


# ------------------------------------------------------------------ 3. slow clients
def _read_all(s: socket.socket, timeout: float) -> tuple[bytes, float]:
    s.settimeout(timeout)
    t0, out = time.monotonic(), b""
    try:
        while chunk := s.recv(65536):
            out += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    return out, time.monotonic() - t0


def test_slow_clients_are_cut_off(tmp_path):
    cfg = ServeConfig(db=tmp_path / "db", header_timeout_s=0.5, body_timeout_s=0.5,
                      timeout_keep_alive_s=1)
    with live_server(cfg, FakePipeline()) as (url, server, service):
        host, port = url.removeprefix("http://").split(":")
        # connected, says nothing
        idle = socket.create_connection((host, int(port)))
        out, dt = _read_all(idle, 10)
        assert dt < 5 and (out == b"" or out.startswith(b"HTTP/1.1 408"))
        # a request head that never ends (slowloris), before any authentication
        head = socket.create_connection((host, int(port)))
        head.sendall(b"POST /v1/persons HTTP/1.1\r\nHost: x\r\n")
        for _ in range(3):
            time.sleep(0.2)
            head.sendall(b"X-A: b\r\n")
        out, dt = _read_all(head, 10)
        assert dt < 5 and out.startswith(b"HTTP/1.1 408"), out
        # a body that never arrives
        body = socket.create_connection((host, int(port)))
        body.sendall(b"POST /v1/persons HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
                     + b"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"ima")
        out, dt = _read_all(body, 10)
        assert dt < 5 and out.startswith(b"HTTP/1.1 408"), out
        m = httpx.get(url + "/metrics", headers=H).text
        assert 'personlens_errors_total{kind="request_timeout"} 1.0' in m
        assert 'status="408"} 1.0' in m
        # ordinary clients are unaffected, keep-alive included
        with httpx.Client(base_url=url, headers=H, timeout=10) as c:
            for i in range(3):
                r = c.post("/v1/persons", files=[("files", (f"{i}.png", crop_png(i), "image/png"))])
                assert r.status_code == 200
                time.sleep(0.6)      # longer than the head timeout, shorter than keep-alive


def test_server_limits_come_from_the_config(tmp_path):
    cfg = ServeConfig(db=tmp_path / "db", timeout_keep_alive_s=3, limit_concurrency=17,
                      header_timeout_s=4, max_header_bytes=8192)
    app, service, _ = build(cfg, pipeline=FakePipeline(), announce=lambda *_: None)
    server = make_server(app, service, cfg)
    c = server.config
    assert (c.timeout_keep_alive, c.limit_concurrency, c.h11_max_incomplete_event_size) == (3, 17 * 4, 8192)
    assert c.http.header_timeout_s == 4
    defaults = ServeConfig()
    assert (defaults.timeout_keep_alive_s, defaults.limit_concurrency, defaults.header_timeout_s,
            defaults.body_timeout_s) == (5, 64, 10, 15)


def test_serve_options_reach_the_config(monkeypatch, tmp_path):
    from cli_testlib import invoke, make_runner

    import personlens.serve.server as server_mod

    seen = {}
    monkeypatch.setattr(server_mod, "run", lambda cfg, **kw: seen.setdefault("cfg", cfg))
    r = invoke(make_runner(), "serve", "--db", tmp_path / "db", "--timeout-keep-alive", "7",
               "--limit-concurrency", "9", "--header-timeout", "3", "--body-timeout", "12")
    assert r.exit_code == 0, r.output
    cfg = seen["cfg"]
    assert (cfg.timeout_keep_alive_s, cfg.limit_concurrency, cfg.header_timeout_s,
            cfg.body_timeout_s) == (7, 9, 3, 12)


def test_requests_over_the_limit_get_503_with_retry_after(tmp_path):
    gate = threading.Event()
    pipe = FakePipeline(gate=gate)
    cfg = ServeConfig(db=tmp_path / "db", limit_concurrency=1, retry_after_s=2, max_wait_ms=0)
    with live_server(cfg, pipe) as (url, server, service), ThreadPoolExecutor(1) as pool:
        held = pool.submit(lambda: httpx.post(url + "/v1/persons", headers=H, timeout=30,
                                              files=[("files", ("a.png", crop_png(1), "image/png"))]))
        _wait(pipe.entered.is_set)                       # one request is being answered
        r = httpx.post(url + "/v1/persons", headers=H, timeout=10,
                       files=[("files", ("b.png", crop_png(2), "image/png"))])
        assert r.status_code == 503 and r.headers["Retry-After"] == "2"
        assert "requests at once" in r.json()["detail"]
        assert httpx.get(url + "/healthz", timeout=10).status_code == 200   # probes still answered
        gate.set()
        assert held.result().status_code == 200
        assert httpx.post(url + "/v1/persons", headers=H, timeout=10,      # room again
                          files=[("files", ("b.png", crop_png(2), "image/png"))]).status_code == 200
        assert 'personlens_errors_total{kind="overloaded"} 1.0' in httpx.get(url + "/metrics", headers=H).text


# ------------------------------------------------------------------ 5. duplicates
def test_concurrent_posts_of_one_new_crop_create_it_once(tmp_path):
    gate = threading.Event()
    pipe = FakePipeline(gate=gate)
    cfg = ServeConfig(db=tmp_path / "db", max_batch=8, max_wait_ms=0)
    crop = crop_png(42)
    cid = hashlib.sha256(crop).hexdigest()

    def post(_):
        return httpx.post(url + "/v1/persons", headers=H, timeout=30,
                          files=[("files", ("a.png", crop, "image/png"))])

    with live_server(cfg, pipe) as (url, server, service), ThreadPoolExecutor(3) as pool:
        futs = [pool.submit(post, i) for i in range(3)]
        _wait(pipe.entered.is_set)
        time.sleep(0.3)            # the other two have arrived and wait for the first
        gate.set()
        answers = [f.result() for f in futs]
        assert [a.status_code for a in answers] == [200] * 3
        created = [a.json()["records"][0]["created"] for a in answers]
        assert sorted(created) == [False, False, True]
        assert [a.json()["created"] for a in answers].count(1) == 1
        assert pipe.processed == [cid]
        # repeated inside one request: one created: true, on its first occurrence
        other = crop_png(43)
        r = httpx.post(url + "/v1/persons", headers=H, timeout=30,
                       files=[("files", (f"{i}.png", b, "image/png"))
                              for i, b in enumerate([other, crop, other, other])])
        assert [x["created"] for x in r.json()["records"]] == [True, False, False, False]
        assert r.json()["created"] == 1
        m = httpx.get(url + "/metrics", headers=H).text
        assert 'personlens_crops_total{outcome="created"} 2.0' in m


def test_a_waiting_duplicate_takes_over_when_the_first_request_fails(tmp_path):
    gate = threading.Event()
    pipe = FakePipeline(gate=gate)
    cfg = ServeConfig(db=tmp_path / "db", max_batch=1, max_wait_ms=0, queue_size=4)
    crop = crop_png(44)
    with live_server(cfg, pipe) as (url, server, service), ThreadPoolExecutor(3) as pool:
        busy = pool.submit(lambda: httpx.post(url + "/v1/persons", headers=H, timeout=30,
                                              files=[("files", ("b.png", crop_png(45), "image/png"))]))
        _wait(pipe.entered.is_set)           # the worker is held by another crop
        first = pool.submit(lambda: httpx.post(url + "/v1/persons", headers={**H, "X-Timeout-Ms": "300"},
                                               timeout=30, files=[("files", ("a.png", crop, "image/png"))]))
        time.sleep(0.1)
        second = pool.submit(lambda: httpx.post(url + "/v1/persons", headers=H, timeout=30,
                                                files=[("files", ("a.png", crop, "image/png"))]))
        assert first.result().status_code == 504
        time.sleep(0.1)
        gate.set()
        r = second.result()
        assert r.status_code == 200 and r.json()["records"][0]["created"] is True
        assert busy.result().status_code == 200


# ------------------------------------------------------------------ 9. too many files
def test_more_files_than_the_multipart_parser_allows_is_413(client):
    n = client.service.config.max_files + 2
    files = [("files", (f"{i}.png", crop_png(i), "image/png")) for i in range(n)]
    r = client.post("/v1/persons", files=files, headers=H)
    assert r.status_code == 413, r.text
    assert 'personlens_errors_total{kind="too_large"} 1.0' in _metrics(client.get)


# ------------------------------------------------------------------ minor
def test_head_healthz(client):
    r = client.head("/healthz")
    assert r.status_code == 200 and r.content == b""


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_library_and_uploads_are_private(client):
    old = os.umask(0o022)
    try:
        r = client.post("/v1/persons", files=[("files", ("a.png", crop_png(7), "image/png"))], headers=H)
        assert r.status_code == 200
    finally:
        os.umask(old)
    db = client.service.config.db          # (the empty indexes were saved when it was made)
    assert _mode(db) == 0o700
    files = [p for p in db.rglob("*") if p.is_file()]
    assert any(p.name == "personlens.sqlite" for p in files)
    assert any(p.suffix == ".png" for p in files) and any(p.suffix == ".index" for p in files)
    for p in files:
        if p.name != "serve-token":
            assert _mode(p) & 0o077 == 0, f"{p}: {oct(_mode(p))}"
    for d in [p for p in db.rglob("*") if p.is_dir()]:
        assert _mode(d) & 0o077 == 0, f"{d}: {oct(_mode(d))}"
