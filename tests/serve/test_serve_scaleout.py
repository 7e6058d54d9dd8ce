"""Scale-out mode against real servers: Redis Streams queue + PostgreSQL store + workers.

Skipped when PERSONLENS_TEST_REDIS / PERSONLENS_TEST_PG are unset or unreachable (.ci/services.sh).
"""
from __future__ import annotations

import hashlib
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from PIL import Image
from scaleout_testlib import (WorkerThread, drop_schema, drop_stream, fresh_schema, pg_url_or_skip,
                              redis_url_or_skip)
from serve_testlib import FakePipeline, auth, crop_png, live_server

from personlens.serve.backend import StoreBackend
from personlens.serve.config import ServeConfig
from personlens.serve.redisq import GROUP, Worker
from personlens.store.postgres import PostgresStore

H = auth()


@pytest.fixture()
def env(tmp_path):
    redis_url, pg_url = redis_url_or_skip(), pg_url_or_skip()
    schema, stream = fresh_schema(pg_url), f"personlens-test:{uuid.uuid4().hex[:8]}"
    yield redis_url, pg_url, schema, stream
    drop_stream(redis_url, stream)
    drop_schema(pg_url, schema)


def _server(tmp_path, env, **cfg):
    redis_url, pg_url, schema, stream = env
    config = ServeConfig(db=tmp_path / "api", queue_url=redis_url, store_url=pg_url, stream=stream,
                         **cfg)
    factory = lambda: StoreBackend(PostgresStore(pg_url, schema=schema), FakePipeline())  # noqa: E731
    return live_server(config, FakePipeline(), backend_factory=factory)


def _worker(env, pipe=None, **kw):
    redis_url, pg_url, schema, stream = env
    kw.setdefault("block_s", 0.05)
    kw.setdefault("max_wait_s", 0.01)
    return Worker(redis_url, None, pipe or FakePipeline(), stream=stream,
                  store=PostgresStore(pg_url, schema=schema), **kw)


def _post(url, *idx, timeout_ms=None):
    headers = dict(H)
    if timeout_ms:
        headers["X-Timeout-Ms"] = str(timeout_ms)
    return httpx.post(url + "/v1/persons", headers=headers, timeout=30,
                      files=[("files", (f"{i}.png", crop_png(i), "image/png")) for i in idx])


def _wait(cond, timeout=10):
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.02)


def _redis(env):
    import redis

    return redis.Redis.from_url(env[0])


def test_api_and_workers_end_to_end(tmp_path, env):
    pipes = [FakePipeline(), FakePipeline()]
    with _server(tmp_path, env, max_batch=8) as (url, server, service):
        workers = [WorkerThread(_worker(env, p, name=f"w{i}")) for i, p in enumerate(pipes)]
        try:
            with ThreadPoolExecutor(4) as pool:
                futs = [pool.submit(_post, url, *range(3 * k, 3 * k + 3)) for k in range(4)]
                res = [f.result() for f in futs]
            assert [r.status_code for r in res] == [200] * 4, [r.text for r in res]
            ids = [x["id"] for r in res for x in r.json()["records"]]
            assert ids == [hashlib.sha256(crop_png(i)).hexdigest() for i in range(12)]
            assert sum(len(p.processed) for p in pipes) == 12          # each crop computed once
            again = _post(url, 0, 1)
            assert again.json()["created"] == 0                         # answered from the store
            hits = httpx.get(url + "/v1/search", params={"q": "a man", "top_k": 5}, headers=H).json()
            assert len(hits["results"]) == 5
            sim = httpx.get(url + f"/v1/persons/{ids[0]}/similar", headers=H).json()["results"]
            assert len(sim) == 11 and ids[0] not in {x["id"] for x in sim}
            got = httpx.get(url + f"/v1/persons/{ids[4]}", headers=H).json()
            assert got["path"].endswith(".png")
            assert httpx.get(url + f"/v1/persons/{ids[4]}/image", headers=H).status_code == 200
            r = _redis(env)
            assert r.xlen(env[3]) == 0 and r.xpending(env[3], GROUP)["pending"] == 0
        finally:
            for w in workers:
                w.stop()


def test_queue_full_in_redis_mode_is_an_exact_503_count(tmp_path, env):
    with _server(tmp_path, env, queue_size=3) as (url, server, service), ThreadPoolExecutor(4) as pool:
        waiting = [pool.submit(_post, url, i) for i in range(3)]        # no worker yet
        _wait(lambda: _redis(env).xlen(env[3]) == 3)
        rejected = [_post(url, 10 + i) for i in range(4)]
        assert [r.status_code for r in rejected] == [503] * 4
        assert all(r.headers["retry-after"] for r in rejected)
        w = WorkerThread(_worker(env))
        try:
            assert [f.result().status_code for f in waiting] == [200] * 3
        finally:
            w.stop()


def test_a_dead_workers_entries_are_reclaimed(tmp_path, env):
    with _server(tmp_path, env) as (url, server, service), ThreadPoolExecutor(4) as pool:
        waiting = [pool.submit(_post, url, 20 + i) for i in range(3)]
        _wait(lambda: _redis(env).xlen(env[3]) == 3)
        r = _redis(env)
        taken = r.xreadgroup(GROUP, "dead-worker", {env[3]: ">"}, count=10)  # takes them, dies
        assert len(taken[0][1]) == 3
        assert r.xpending(env[3], GROUP)["consumers"][0]["name"] == b"dead-worker"
        pipe = FakePipeline()
        w = WorkerThread(_worker(env, pipe, claim_idle_s=0.3))
        try:
            assert [f.result().status_code for f in waiting] == [200] * 3
            assert len(pipe.processed) == 3 and w.worker.stats["claimed"] == 3
            assert r.xpending(env[3], GROUP)["pending"] == 0 and r.xlen(env[3]) == 0
        finally:
            w.stop()


def test_a_redelivered_crop_already_stored_is_not_computed_again(tmp_path, env):
    redis_url, pg_url, schema, stream = env
    with _server(tmp_path, env) as (url, server, service), ThreadPoolExecutor(2) as pool:
        fut = pool.submit(_post, url, 30)
        _wait(lambda: _redis(env).xlen(stream) == 1)
        # a worker that stored the record, then died before XACK
        first = _worker(env, FakePipeline(), name="crashy")
        batch = first.next_batch()
        stored = first.pipeline.process([Image.new("RGB", (4, 8))], ["x"],
                                        ids=[batch[0][1][b"id"].decode()])
        first.store.put(stored)
        first.close()
        pipe = FakePipeline()
        w = WorkerThread(_worker(env, pipe, claim_idle_s=0.2))
        try:
            assert fut.result().status_code == 200
            assert pipe.processed == [] and w.worker.stats["skipped"] == 1
        finally:
            w.stop()


def test_expired_entries_are_acknowledged_without_inference(tmp_path, env):
    with _server(tmp_path, env) as (url, server, service):
        r = _post(url, 40, timeout_ms=200)                              # no worker: times out
        assert r.status_code == 504
        assert _redis(env).xlen(env[3]) == 1
        pipe = FakePipeline()
        w = WorkerThread(_worker(env, pipe))
        try:
            _wait(lambda: _redis(env).xlen(env[3]) == 0)
            assert pipe.processed == [] and w.worker.stats["expired"] == 1
        finally:
            w.stop()


def test_healthz_checks_the_store_and_queue_servers(tmp_path, env):
    with _server(tmp_path, env) as (url, server, service):
        ok = httpx.get(url + "/healthz", timeout=10)
        assert ok.status_code == 200
        assert ok.json()["checks"] == {"store": "ok", "queue": "ok"}
        service.backend.store.url = "postgresql://nobody@127.0.0.1:1/none"  # server gone
        down = httpx.get(url + "/healthz", timeout=10)
        assert down.status_code == 503 and down.headers["retry-after"]
        body = down.json()
        assert body["status"] == "unavailable" and body["checks"]["queue"] == "ok"
        assert body["checks"]["store"].startswith("error: OperationalError")
