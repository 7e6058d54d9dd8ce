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
* ``deep_json``: JSON nested 33, 1,000 and 100,000 levels (objects and arrays) to
  ``/v1/persons`` and ``/v1/videos``, ``--repeat`` times: every answer 400, no 5xx.
* ``hangups``: ``--hangups`` clients send half a multipart / JSON upload and hang up: each is
  counted as ``client_disconnect`` (status label 499), none as a 500, no traceback logged.
* ``slow_clients``: connections that say nothing, send a head a line at a time, or send a body
  a few bytes at a time (``--slow-clients`` of each, at once): how long the server holds them
  (header / body timeout) and that a normal request is answered meanwhile.
* ``large_arrays``: four ~31 MB JSON bodies of empty arrays at once (x ``--array-rounds``):
  answers (413, or 503 + Retry-After while two are parsed) and the server's RSS (sampled every
  20 ms, and its high-water mark): it must stay under 1.2 GB.
* ``duplicates``: ``--dup-clients`` concurrent POSTs of one new crop, for ``--dup-crops`` crops:
  exactly one ``created: true`` per crop, and the model ran once per crop.

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

SCENARIOS = ("malformed", "queue_full", "sigterm", "sigkill_worker", "soak", "deep_json", "hangups",
             "slow_clients", "large_arrays", "duplicates")
SHARED = ("malformed", "soak", "deep_json", "hangups", "slow_clients", "large_arrays", "duplicates")


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

    # (--limit-concurrency above the burst: this is about the queue, not the connection cap)
    server = ServerProcess(fake=fake, weights=weights, queue_size=4, max_batch=1, max_wait_ms=0,
                           delay=0.2 if fake else 0.0, extra=("--limit-concurrency", str(2 * burst + 8)))
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
    groups = [list(range(i, min(i + per_request, crops))) for i in range(0, crops, per_request)]
    # deadline: long enough for the surviving worker to work through every queued crop; every
    # request at once: --limit-concurrency above their number (the connection cap is not tested here)
    server = ServerProcess(fake=fake, weights=weights, queue_url=redis_url, store_url=pg_url,
                           schema=schema, stream=stream, queue_size=max(256, crops),
                           extra=("--timeout", "600", "--limit-concurrency", str(len(groups) + 16)))
    workers = []
    try:
        w1 = WorkerProcess(fake=fake, weights=weights, queue_url=redis_url, store_url=pg_url,
                           schema=schema, stream=stream, name="w1", delay=0.5, max_batch=4,
                           claim_idle_s=2.0, log_dir=server.db.parent)
        workers.append(w1)

        def one(idx):
            # (as long as the server's deadline: one real worker may need minutes for 1,000 crops)
            return httpx.post(server.url + "/v1/persons", headers=server.headers, timeout=600,
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


def _metrics(server: ServerProcess) -> dict[str, float]:
    import httpx

    out = {}
    for line in httpx.get(server.url + "/metrics", headers=server.headers, timeout=30).text.splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            out[k] = float(v)
    return out


def _status_counts(m: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in m.items():
        if k.startswith("personlens_requests_total{"):
            code = k.split('status="')[1].split('"')[0]
            out[code] = out.get(code, 0) + v
    return out


def _delta(after: dict, before: dict) -> dict:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0)}


def _hostport(server: ServerProcess) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


def _log_tracebacks(server: ServerProcess) -> int:
    server.log.flush()
    return Path(server.log.name).read_text(errors="replace").count("Traceback")


def scenario_deep_json(server: ServerProcess, repeat: int) -> dict:
    import httpx

    H = {**server.headers, "content-type": "application/json"}
    bodies = {}
    for depth in (33, 1000, 100_000):
        bodies[f"arrays_{depth}"] = '{"images": ' + "[" * depth + "]" * depth + "}"
        bodies[f"objects_{depth}"] = '{"a": ' * depth + "1" + "}" * depth
    tally: dict[str, dict] = {}
    before = _status_counts(_metrics(server))
    with httpx.Client(base_url=server.url, headers=H, timeout=60) as c:
        for _ in range(repeat):
            for kind, body in bodies.items():
                for route in ("/v1/persons", "/v1/videos"):
                    code = c.post(route, content=body).status_code
                    tally.setdefault(f"{kind}{route}", {}).setdefault(str(code), 0)
                    tally[f"{kind}{route}"][str(code)] += 1
    codes = {k for t in tally.values() for k in t}
    statuses = _delta(_status_counts(_metrics(server)), before)
    return {"ok": codes == {"400"} and not any(k.startswith("5") for k in statuses),
            "requests": sum(sum(t.values()) for t in tally.values()), "status_by_kind": tally,
            "statuses": statuses}


def scenario_hangups(server: ServerProcess, n: int) -> dict:
    import socket

    before, tb_before = _metrics(server), _log_tracebacks(server)
    host, port = _hostport(server)
    token = server.headers["Authorization"].encode()
    for i in range(n):
        multipart = i % 2 == 0
        ctype = b"multipart/form-data; boundary=xyz" if multipart else b"application/json"
        start = (b"--xyz\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.jpg\"\r\n"
                 b"Content-Type: image/jpeg\r\n\r\n" + synthetic_crop(90_000 + i)) if multipart \
            else b'{"images": ["' + base64.b64encode(synthetic_crop(90_000 + i))
        s = socket.create_connection((host, port))
        s.sendall(b"POST /v1/persons HTTP/1.1\r\nHost: x\r\nAuthorization: " + token
                  + b"\r\nContent-Type: " + ctype + b"\r\nContent-Length: 2000000\r\n\r\n" + start)
        time.sleep(0.05)
        s.close()
    end = time.monotonic() + 30
    while time.monotonic() < end:
        d = _delta(_metrics(server), before)
        if d.get('personlens_errors_total{kind="client_disconnect"}', 0) >= n:
            break
        time.sleep(0.1)
    d = _delta(_metrics(server), before)
    statuses = {k: v for k, v in _status_counts(d).items()}
    disconnects = d.get('personlens_errors_total{kind="client_disconnect"}', 0)
    tracebacks = _log_tracebacks(server) - tb_before
    ok = disconnects == n and statuses.get("499", 0) == n and not any(k.startswith("5") for k in statuses) \
        and tracebacks == 0
    return {"ok": ok, "hangups": n, "client_disconnect": disconnects, "statuses": statuses,
            "tracebacks_logged": tracebacks}


def scenario_slow_clients(server: ServerProcess, n: int) -> dict:
    import socket
    import threading

    import httpx

    host, port = _hostport(server)
    token = server.headers["Authorization"].encode()
    results: dict[str, list] = {"idle": [], "slow_head": [], "slow_body": []}
    lock = threading.Lock()

    def held(kind: str, first: bytes, drip: bytes) -> None:
        t0 = time.monotonic()
        s = socket.create_connection((host, port))
        s.settimeout(0.5)
        answer = b""
        try:
            if first:
                s.sendall(first)
            while time.monotonic() - t0 < 120:
                try:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    answer += chunk
                except socket.timeout:
                    if drip:
                        try:
                            s.sendall(drip)
                        except OSError:
                            break
                except OSError:
                    break
        finally:
            s.close()
        with lock:
            results[kind].append((round(time.monotonic() - t0, 2), answer.split(b"\r\n", 1)[0].decode()))

    head = b"POST /v1/persons HTTP/1.1\r\nHost: x\r\n"
    body_head = (b"POST /v1/persons HTTP/1.1\r\nHost: x\r\nAuthorization: " + token
                 + b"\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
    threads = [threading.Thread(target=held, args=a) for _ in range(n)
               for a in (("idle", b"", b""), ("slow_head", head, b"X-A: b\r\n"), ("slow_body", body_head, b"  "))]
    for t in threads:
        t.start()
    time.sleep(1.0)
    t0 = time.perf_counter()
    r = httpx.post(server.url + "/v1/persons", headers=server.headers, timeout=60,
                   files=[("files", ("n.jpg", synthetic_crop(95_000), "image/jpeg"))])
    normal = {"status": r.status_code, "seconds": round(time.perf_counter() - t0, 2)}
    for t in threads:
        t.join(180)
    summary = {k: {"held_s_max": max(x[0] for x in v), "held_s_min": min(x[0] for x in v),
                   "answers": sorted({x[1] or "(closed)" for x in v})} for k, v in results.items()}
    ok = normal["status"] == 200 and all(s["held_s_max"] < 30 for s in summary.values())
    return {"ok": ok, "connections_per_kind": n, "held": summary, "normal_request_meanwhile": normal}


def scenario_large_arrays(server: ServerProcess, rounds: int, clients: int = 4) -> dict:
    import httpx

    from service_lib import rss_mb

    body = b'{"images": [' + b"[]," * 10_300_000 + b"[]]}"       # ~31 MB of empty arrays
    H = {**server.headers, "content-type": "application/json"}

    def hwm() -> float | None:
        for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
        return None

    rss_before, hwm_before = server.rss_mb, hwm()
    samples, stop = [], [False]

    def sample():
        while not stop[0]:
            v = rss_mb(server.proc.pid)
            if v is not None:
                samples.append(v)
            time.sleep(0.02)

    def one(_):
        r = httpx.post(server.url + "/v1/persons", content=body, headers=H, timeout=120)
        return r.status_code, r.headers.get("retry-after")

    codes = []
    with ThreadPoolExecutor(1) as pool, ThreadPoolExecutor(clients) as senders:
        sampler = pool.submit(sample)
        t0 = time.perf_counter()
        for _ in range(rounds):
            codes += list(senders.map(one, range(clients)))
        dt = time.perf_counter() - t0
        stop[0] = True
        sampler.result()
    statuses = {str(c): [c for c, _ in codes].count(c) for c in {c for c, _ in codes}}
    peak = max(samples) if samples else None
    ok = set(statuses) <= {"413", "503"} and all(ra for c, ra in codes if c == 503) \
        and peak is not None and peak < 1200 and (hwm() or 0) < 1200
    return {"ok": ok, "body_mb": round(len(body) / 1e6, 1), "clients_at_once": clients, "rounds": rounds,
            "statuses": statuses, "seconds": round(dt, 2),
            "rss_mb": {"before": rss_before, "peak_sampled": peak, "after": server.rss_mb},
            "vm_hwm_mb": {"before": hwm_before, "after": hwm()}}


def scenario_duplicates(server: ServerProcess, crops: int, clients: int) -> dict:
    import httpx

    before = _metrics(server)
    per_crop = []
    for k in range(crops):
        data = synthetic_crop(97_000 + k)

        def one(_):
            return httpx.post(server.url + "/v1/persons", headers=server.headers, timeout=120,
                              files=[("files", (f"d{k}.jpg", data, "image/jpeg"))])
        with ThreadPoolExecutor(clients) as pool:
            answers = list(pool.map(one, range(clients)))
        created = [a.json()["records"][0]["created"] for a in answers if a.status_code == 200]
        per_crop.append({"statuses": sorted({a.status_code for a in answers}), "created_true": created.count(True)})
    # one request repeating a new crop: one created: true
    data = synthetic_crop(98_000)
    r = httpx.post(server.url + "/v1/persons", headers=server.headers, timeout=120,
                   files=[("files", (f"r{i}.jpg", data, "image/jpeg")) for i in range(4)])
    repeated = [x["created"] for x in r.json()["records"]]
    d = _delta(_metrics(server), before)
    computed = d.get('personlens_crops_total{outcome="created"}', 0)
    ok = all(p["statuses"] == [200] and p["created_true"] == 1 for p in per_crop) \
        and repeated == [True, False, False, False] and computed == crops + 1
    return {"ok": ok, "crops": crops, "clients_per_crop": clients, "per_crop": per_crop,
            "repeated_in_one_request": repeated, "crops_computed": computed}


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
    ap.add_argument("--hangups", type=int, default=20, help="hangups: clients hanging up mid-upload")
    ap.add_argument("--slow-clients", type=int, default=8, help="slow_clients: connections of each kind")
    ap.add_argument("--array-rounds", type=int, default=2, help="large_arrays: rounds of 4 bodies at once")
    ap.add_argument("--dup-crops", type=int, default=5, help="duplicates: new crops")
    ap.add_argument("--dup-clients", type=int, default=8, help="duplicates: concurrent POSTs per crop")
    ap.add_argument("--redis", default=None, help="redis://127.0.0.1:6379/15 (sigkill_worker)")
    ap.add_argument("--pg", default=None, help="postgresql://... (sigkill_worker)")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)

    results: dict = {}
    shared = None
    try:
        for name in a.only:
            t0 = time.perf_counter()
            if name in SHARED and shared is None:
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
            elif name == "soak":
                res = scenario_soak(shared, a.soak_requests, a.soak_seconds)
            elif name == "deep_json":
                res = scenario_deep_json(shared, a.repeat)
            elif name == "hangups":
                res = scenario_hangups(shared, a.hangups)
            elif name == "slow_clients":
                res = scenario_slow_clients(shared, a.slow_clients)
            elif name == "large_arrays":
                res = scenario_large_arrays(shared, a.array_rounds)
            else:
                res = scenario_duplicates(shared, a.dup_crops, a.dup_clients)
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
