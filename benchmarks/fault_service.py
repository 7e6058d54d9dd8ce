"""Fault injection against a real ``personlens serve`` process on 127.0.0.1 (bounded, loopback only).

Scenarios (``--only`` picks some):

* ``malformed``: each kind of bad input (zero bytes, random bytes, truncated PNG/JPEG, a
  decompression bomb, text, wrong content type, an oversized body, broken JSON / base64)
  ``--repeat`` times: every answer must be 4xx (never 5xx), nothing stored, ``/healthz`` 200.
* ``queue_full``: a server with ``--queue-size`` 4 and batch 1 gets ``--burst`` concurrent
  one-crop requests: counts of 200 and 503 (every 503 carries Retry-After, nothing else).
* ``sigterm``: requests in flight, then SIGTERM: they are all answered 200, requests after the
  signal get 503 (or a refused connection once the listener closed), exit status 0.
* ``sigkill_worker`` (needs ``--redis`` and ``--pg``): redis mode, one worker SIGKILLed while
  it holds crops; a second worker reclaims them (XAUTOCLAIM): every request 200, every crop
  stored once, nothing left pending.
* ``soak``: ``--soak-requests`` requests (bounded by ``--soak-seconds``), server RSS sampled:
  first, last, max and growth per 100 requests.

``--fake`` runs the server (and workers) on an instant fake pipeline (tests/serve/
serve_testlib.py) to check the harness quickly; without it the real model is used.

    python benchmarks/fault_service.py --json runs/fault_service.json
    python benchmarks/fault_service.py --fake --only malformed queue_full sigterm
    eval "$(bash .ci/services.sh)"; python benchmarks/fault_service.py --fake --only sigkill_worker \\
        --redis "$PERSONLENS_TEST_REDIS" --pg "$PERSONLENS_TEST_PG"
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import struct
import sys
import time
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service_lib import (ServerProcess, WorkerProcess, environment, percentiles,  # noqa: E402
                         synthetic_crop)

SCENARIOS = ("malformed", "queue_full", "sigterm", "sigkill_worker", "soak")


def _bomb(width=12000, height=12000) -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    row = b"\x00" * (1 + (width + 7) // 8)
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(row * height, 9))
            + chunk(b"IEND", b""))


def _png(i) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(i).integers(0, 256, (64, 32, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def malformed_inputs() -> dict:
    png, jpg = _png(1), synthetic_crop(1)
    out = {"zero_bytes": b"", "random_bytes": np.random.default_rng(0).bytes(4096)}
    for pct in (10, 50, 90):
        out[f"png_truncated_{pct}%"] = png[: len(png) * pct // 100]
        out[f"jpeg_truncated_{pct}%"] = jpg[: len(jpg) * pct // 100]
    out.update({"decompression_bomb": _bomb(), "text": b"hello, not an image"})
    return out


def scenario_malformed(server: ServerProcess, repeat: int) -> dict:
    import httpx

    H = server.headers
    before = httpx.get(server.url + "/v1/info", headers=H).json()["records"]
    tally: dict[str, dict] = {}

    def note(kind, code):
        tally.setdefault(kind, {}).setdefault(str(code), 0)
        tally[kind][str(code)] += 1

    with httpx.Client(base_url=server.url, headers=H, timeout=60) as c:
        for _ in range(repeat):
            for kind, data in malformed_inputs().items():
                note(kind, c.post("/v1/persons", files=[("files", ("x.png", data, "image/png"))]).status_code)
                note(kind + ":json", c.post("/v1/persons", json={"images": [base64.b64encode(data).decode()]}).status_code)
            note("wrong_content_type", c.post("/v1/persons", content=b"abc",
                                              headers={"content-type": "text/plain"}).status_code)
            note("oversized_body", c.post("/v1/persons", files=[("files", ("big.png", b"\0" * (33 << 20), "image/png"))]).status_code)
            note("broken_json", c.post("/v1/persons", content=b"{\"images\": [",
                                       headers={"content-type": "application/json"}).status_code)
            note("bad_base64", c.post("/v1/persons", json={"images": ["!!!"]}).status_code)
            note("no_token", httpx.post(server.url + "/v1/persons", files=[("files", ("a.png", _png(2), "image/png"))]).status_code)
    after = httpx.get(server.url + "/v1/info", headers=H).json()["records"]
    health = httpx.get(server.url + "/healthz").status_code
    codes = [int(k) for t in tally.values() for k in t]
    ok = all(400 <= c < 500 for c in codes) and after == before and health == 200
    return {"ok": ok, "status_by_kind": tally, "records_added": after - before, "healthz": health,
            "server_rss_mb": server.rss_mb}


def scenario_queue_full(fake: bool, weights, burst: int) -> dict:
    import httpx

    server = ServerProcess(fake=fake, weights=weights, queue_size=4, max_batch=1, max_wait_ms=0,
                           delay=0.2 if fake else 0.0)
    try:
        def one(i):
            r = httpx.post(server.url + "/v1/persons", headers=server.headers, timeout=120,
                           files=[("files", (f"{i}.jpg", synthetic_crop(50_000 + i), "image/jpeg"))])
            return r.status_code, r.headers.get("retry-after")

        t0 = time.perf_counter()
        with ThreadPoolExecutor(burst) as pool:
            res = list(pool.map(one, range(burst)))
        dt = time.perf_counter() - t0
        codes = [c for c, _ in res]
        ok = set(codes) <= {200, 503} and all(ra for c, ra in res if c == 503) and 503 in codes
        return {"ok": ok, "burst": burst, "queue_size": 4, "200": codes.count(200),
                "503": codes.count(503), "seconds": round(dt, 2)}
    finally:
        server.stop()


def scenario_sigterm(fake: bool, weights, inflight: int) -> dict:
    import httpx

    server = ServerProcess(fake=fake, weights=weights, max_batch=2, max_wait_ms=0,
                           delay=0.3 if fake else 0.0)
    H = server.headers

    def one(i):
        try:
            return httpx.post(server.url + "/v1/persons", headers=H, timeout=120,
                              files=[("files", (f"{i}.jpg", synthetic_crop(60_000 + i), "image/jpeg"))]).status_code
        except httpx.TransportError as e:
            return type(e).__name__

    with ThreadPoolExecutor(inflight) as pool:
        futs = [pool.submit(one, i) for i in range(inflight)]
        end = time.monotonic() + 30
        while time.monotonic() < end:   # wait until the server holds them (metrics: in flight)
            m = httpx.get(server.url + "/metrics", headers=H).text
            n = next((float(line.split()[1]) for line in m.splitlines()
                      if line.startswith("personlens_inflight_requests ")), 0)
            if n >= inflight + 1:       # + 1: the metrics request itself is counted too
                break
            time.sleep(0.01)
        t0 = time.perf_counter()
        server.proc.send_signal(15)
        time.sleep(0.05)
        late = [one(1000 + i) for i in range(3)]
        answers = [f.result() for f in futs]
    rc = server.proc.wait(120)
    dt = time.perf_counter() - t0
    server.stop()
    ok = answers == [200] * inflight and rc == 0 and all(x in (503, "ConnectError") for x in late)
    return {"ok": ok, "in_flight": answers, "after_sigterm": late, "exit_code": rc,
            "seconds_to_exit": round(dt, 2)}


def scenario_sigkill_worker(fake: bool, weights, redis_url: str, pg_url: str, crops: int,
                            per_request: int = 10) -> dict:
    import httpx
    import psycopg
    import redis

    schema, stream = f"fault_{uuid.uuid4().hex[:8]}", f"personlens-fault:{uuid.uuid4().hex[:8]}"
    r = redis.Redis.from_url(redis_url)
    # deadline: long enough for the surviving worker to work through every queued crop
    server = ServerProcess(fake=fake, weights=weights, queue_url=redis_url, store_url=pg_url,
                           schema=schema, stream=stream, queue_size=max(256, crops),
                           extra=("--timeout", "600"))
    workers = []
    groups = [list(range(i, min(i + per_request, crops))) for i in range(0, crops, per_request)]
    try:
        w1 = WorkerProcess(fake=fake, weights=weights, queue_url=redis_url, store_url=pg_url,
                           schema=schema, stream=stream, name="w1", delay=0.5, max_batch=4,
                           claim_idle_s=2.0, log_dir=server.db.parent)
        workers.append(w1)

        def one(idx):
            return httpx.post(server.url + "/v1/persons", headers=server.headers, timeout=300,
                              files=[("files", (f"{i}.jpg", synthetic_crop(70_000 + i), "image/jpeg"))
                                     for i in idx]).status_code

        with ThreadPoolExecutor(len(groups)) as pool:
            futs = [pool.submit(one, g) for g in groups]
            end = time.monotonic() + 120
            while time.monotonic() < end:   # w1 holds entries it has not acknowledged
                try:
                    if r.xpending(stream, "workers")["pending"] > 0:
                        break
                except redis.ResponseError:
                    pass
                time.sleep(0.02)
            pending_at_kill = r.xpending(stream, "workers")["pending"]
            queued_at_kill = r.xlen(stream)
            w1.kill()
            t0 = time.perf_counter()
            w2 = WorkerProcess(fake=fake, weights=weights, queue_url=redis_url, store_url=pg_url,
                               schema=schema, stream=stream, name="w2", max_batch=32, claim_idle_s=2.0,
                               log_dir=server.db.parent)
            workers.append(w2)
            answers = [f.result() for f in futs]
            recovery = time.perf_counter() - t0
        with psycopg.connect(pg_url) as c:
            stored = c.execute(f'SELECT COUNT(*), COUNT(DISTINCT id) FROM "{schema}".personlens_records').fetchone()
        left = {"pending": r.xpending(stream, "workers")["pending"], "stream_length": r.xlen(stream)}
        ok = answers == [200] * len(groups) and stored == (crops, crops) and \
            left == {"pending": 0, "stream_length": 0}
        return {"ok": ok, "crops": crops, "requests": len(groups), "pending_at_kill": pending_at_kill,
                "stream_length_at_kill": queued_at_kill, "answers": {str(a): answers.count(a) for a in set(answers)},
                "stored": stored[0], "left": left, "seconds_to_recover": round(recovery, 2)}
    finally:
        for w in workers:
            w.stop()
        server.stop()
        r.delete(stream, f"{stream}:dead")
        r.close()
        with psycopg.connect(pg_url, autocommit=True) as c:
            c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def scenario_soak(server: ServerProcess, requests: int, seconds: float) -> dict:
    import httpx

    samples, lat = [], []
    end = time.monotonic() + seconds
    every = max(1, requests // 20)
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=120) as c:
        for i in range(requests):
            if time.monotonic() > end:
                break
            t0 = time.perf_counter()
            r = c.post("/v1/persons", files=[("files", (f"{i}.jpg", synthetic_crop(80_000 + i), "image/jpeg"))])
            lat.append(time.perf_counter() - t0)
            if r.status_code != 200:
                return {"ok": False, "error": f"request {i}: {r.status_code} {r.text[:200]}"}
            if i % 5 == 0:
                c.get("/v1/search", params={"q": "a person with a backpack", "top_k": 10})
            if i % every == 0:
                samples.append((i, server.rss_mb))
    samples.append((len(lat), server.rss_mb))
    rss = [s for _, s in samples if s is not None]
    growth = None
    if len(samples) > 2 and len(lat) > 1:
        xs, ys = zip(*[(n, s) for n, s in samples[len(samples) // 2:] if s is not None])
        growth = round(float(np.polyfit(xs, ys, 1)[0]) * 100, 3) if len(set(xs)) > 1 else None
    return {"ok": True, "requests": len(lat), "latency": percentiles(lat),
            "rss_mb": {"first": rss[0], "last": rss[-1], "max": max(rss)},
            "rss_growth_mb_per_100_requests_second_half": growth, "samples": samples}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    ap.add_argument("--fake", action="store_true", help="instant fake pipeline (harness check)")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--repeat", type=int, default=2, help="malformed: rounds over every kind")
    ap.add_argument("--burst", type=int, default=16, help="queue_full: concurrent requests")
    ap.add_argument("--inflight", type=int, default=4, help="sigterm: requests in flight")
    ap.add_argument("--kill-crops", type=int, default=12, help="sigkill_worker: crops queued")
    ap.add_argument("--kill-crops-per-request", type=int, default=10,
                    help="sigkill_worker: crops per request (all requests sent at once)")
    ap.add_argument("--soak-requests", type=int, default=200)
    ap.add_argument("--soak-seconds", type=float, default=120)
    ap.add_argument("--redis", default=None, help="redis://127.0.0.1:6379/15 (sigkill_worker)")
    ap.add_argument("--pg", default=None, help="postgresql://... (sigkill_worker)")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)

    results: dict = {}
    shared = None
    try:
        for name in a.only:
            t0 = time.perf_counter()
            if name in ("malformed", "soak") and shared is None:
                shared = ServerProcess(fake=a.fake, weights=a.weights, max_batch=8, max_wait_ms=10)
            if name == "malformed":
                res = scenario_malformed(shared, a.repeat)
            elif name == "queue_full":
                res = scenario_queue_full(a.fake, a.weights, a.burst)
            elif name == "sigterm":
                res = scenario_sigterm(a.fake, a.weights, a.inflight)
            elif name == "sigkill_worker":
                if not (a.redis and a.pg):
                    res = {"ok": None, "skipped": "needs --redis and --pg (bash .ci/services.sh)"}
                else:
                    res = scenario_sigkill_worker(a.fake, a.weights, a.redis, a.pg, a.kill_crops,
                                                  a.kill_crops_per_request)
            else:
                res = scenario_soak(shared, a.soak_requests, a.soak_seconds)
            res["wall_s"] = round(time.perf_counter() - t0, 2)
            results[name] = res
            status = {True: "ok", False: "FAILED", None: "skipped"}[res["ok"]]
            detail = {k: v for k, v in res.items() if k not in ("samples", "status_by_kind", "ok")}
            print(f"{name:<15} {status:<8} {json.dumps(detail)[:300]}")
    finally:
        if shared is not None:
            rc = shared.terminate()
            results["shared_server_exit_code"] = rc
    out = {"results": results, "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
           "meta": environment()}
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(out, indent=2, default=str))
    failed = [n for n, r in results.items() if isinstance(r, dict) and r.get("ok") is False]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
