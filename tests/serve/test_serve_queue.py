"""A real uvicorn server (127.0.0.1, random port) on a gated fake pipeline: the bounded queue
answers 503 + Retry-After at once, deadlines give 504 without taking a worker, batches form."""
from __future__ import annotations

import hashlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from serve_testlib import FakePipeline, auth, crop_png, live_server

from personlens.serve.config import ServeConfig

H = auth()


def _post(url, i, timeout_ms=None, n=1):
    headers = dict(H)
    if timeout_ms is not None:
        headers["X-Timeout-Ms"] = str(timeout_ms)
    files = [("files", (f"c{i}-{k}.png", crop_png(1000 * i + k), "image/png")) for k in range(n)]
    return httpx.post(url + "/v1/persons", files=files, headers=headers, timeout=30)


def _wait(cond, timeout=10):
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.01)


def test_queue_full_gives_exactly_the_expected_503s(tmp_path):
    gate = threading.Event()
    pipe = FakePipeline(gate=gate)
    cfg = ServeConfig(db=tmp_path / "db", queue_size=3, max_batch=1, max_wait_ms=0, workers=1,
                      retry_after_s=2)
    with live_server(cfg, pipe) as (url, server, service), ThreadPoolExecutor(8) as pool:
        first = pool.submit(_post, url, 0)
        _wait(pipe.entered.is_set)                    # the one worker is busy (gated)
        queued = [pool.submit(_post, url, i) for i in (1, 2, 3)]
        _wait(lambda: service.depth == 3)             # the queue is full
        t0 = time.monotonic()
        rejected = [_post(url, 10 + i) for i in range(5)]
        assert time.monotonic() - t0 < 5              # answered at once, not after the gate
        assert [r.status_code for r in rejected] == [503] * 5
        assert all(r.headers["retry-after"] == "2" for r in rejected)
        too_big = _post(url, 20, n=2)                 # 2 crops never fit beside 3 waiting
        assert too_big.status_code == 503
        gate.set()
        assert [f.result().status_code for f in [first, *queued]] == [200] * 4
        assert len(pipe.processed) == 4
        m = httpx.get(url + "/metrics", headers=H).text
        assert 'personlens_errors_total{kind="queue_full"} 6.0' in m
        assert 'personlens_requests_total{method="POST",route="/v1/persons",status="503"} 6.0' in m
        assert httpx.get(url + "/healthz").status_code == 200


def test_expired_request_gets_504_and_never_takes_a_worker(tmp_path):
    gate = threading.Event()
    pipe = FakePipeline(gate=gate)
    cfg = ServeConfig(db=tmp_path / "db", queue_size=10, max_batch=8, max_wait_ms=0, workers=1)
    with live_server(cfg, pipe) as (url, server, service), ThreadPoolExecutor(4) as pool:
        first = pool.submit(_post, url, 0)
        _wait(pipe.entered.is_set)
        late = pool.submit(_post, url, 1, 150)        # 150 ms deadline, the worker is busy
        ok = pool.submit(_post, url, 2)
        r = late.result()
        assert r.status_code == 504
        _wait(lambda: service.depth == 1)             # the expired crop left the queue
        gate.set()
        assert first.result().status_code == 200 and ok.result().status_code == 200
        late_id = hashlib.sha256(crop_png(1000)).hexdigest()   # the crop of request 1
        assert late_id not in pipe.processed
        assert len(pipe.processed) == 2
        m = httpx.get(url + "/metrics", headers=H).text
        assert 'personlens_errors_total{kind="deadline"} 1.0' in m


def test_concurrent_requests_share_batches(tmp_path):
    gate = threading.Event()
    pipe = FakePipeline(gate=gate)
    cfg = ServeConfig(db=tmp_path / "db", queue_size=64, max_batch=16, max_wait_ms=20, workers=1)
    with live_server(cfg, pipe) as (url, server, service), ThreadPoolExecutor(12) as pool:
        first = pool.submit(_post, url, 0)
        _wait(pipe.entered.is_set)
        futs = [pool.submit(_post, url, i) for i in range(1, 11)]
        _wait(lambda: service.depth == 10)
        gate.set()
        assert [f.result().status_code for f in [first, *futs]] == [200] * 11
        assert [len(b) for b in pipe.batches] == [1, 10]   # ten requests, one forward


def test_refusals_reach_the_client_over_a_real_socket(tmp_path):
    """413 / 401 are answered before the body is used; the rest of the body is read and
    dropped so the kernel does not reset the connection under the client's feet."""
    cfg = ServeConfig(db=tmp_path / "db", max_body_bytes=1_000_000)
    with live_server(cfg, FakePipeline()) as (url, server, service), httpx.Client(timeout=30) as c:
        big = [("files", ("big.png", b"\0" * 3_000_000, "image/png"))]
        for _ in range(5):
            assert c.post(url + "/v1/persons", files=big, headers=H).status_code == 413
            assert c.post(url + "/v1/persons", files=[("files", ("a.png", b"\0" * 500_000, "image/png"))]
                          ).status_code == 401

        def chunks():
            for _ in range(50):
                yield b"\0" * 65536
        r = c.post(url + "/v1/persons", content=chunks(), headers={**H, "content-type": "application/json"})
        assert r.status_code == 413
        assert c.post(url + "/v1/persons", headers=H,
                      files=[("files", ("ok.png", crop_png(1), "image/png"))]).status_code == 200
