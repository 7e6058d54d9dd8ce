"""Service throughput and latency vs the raw batched pipeline (loopback only, bounded).

1. raw: ``PersonPipeline.process`` on decoded synthetic crops at batch ``--max-batch``, in this
   process, no HTTP: the ceiling the service can approach (crops/s).
2. service: ``personlens serve`` in a subprocess on 127.0.0.1 (same model, dynamic batching),
   ``--clients`` concurrent clients (threads, one HTTP connection each) each POSTing
   ``--requests`` requests of ``--crops-per-request`` distinct JPEG crops. Reported: crops/s,
   request latency p50/p90/p99, the batch sizes the server formed (from /metrics), and the
   service / raw throughput ratio. Every crop is new (content-addressed dedupe never answers).

Bounded: clients x requests requests at most, and ``--max-seconds`` of wall time.

    python benchmarks/bench_service.py --json runs/bench_service.json          # shipped model
    python benchmarks/bench_service.py --weights runs/par --clients 16 --requests 8
    python benchmarks/bench_service.py --fake --clients 4 --requests 3       # harness smoke run
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service_lib import ServerProcess, environment, percentiles, synthetic_crop  # noqa: E402


def raw_throughput(weights, batch: int, n: int, threads: int, rounds: int = 2) -> dict:
    import torch

    from personlens.data.images import decode_image
    from personlens.inference.pipeline import PersonPipeline

    torch.set_num_threads(threads)
    pipe = PersonPipeline(weights)
    imgs = [decode_image(synthetic_crop(100_000 + i)) for i in range(n)]
    ids = [f"{i:064x}" for i in range(n)]
    pipe.process(imgs[:batch], ["x"] * min(batch, n), ids=ids[:batch])  # warm-up
    t0 = time.perf_counter()
    done = 0
    for _ in range(rounds):
        for s in range(0, n, batch):
            pipe.process(imgs[s:s + batch], ["x"] * len(imgs[s:s + batch]), ids=ids[s:s + batch])
            done += len(imgs[s:s + batch])
    dt = time.perf_counter() - t0
    return {"batch": batch, "crops": done, "seconds": round(dt, 3), "crops_per_s": round(done / dt, 2)}


def _batch_sizes(metrics_text: str) -> dict:
    out = {}
    for line in metrics_text.splitlines():
        if line.startswith("personlens_batch_size_sum"):
            out["sum"] = float(line.split()[1])
        elif line.startswith("personlens_batch_size_count"):
            out["count"] = float(line.split()[1])
        elif line.startswith("personlens_batch_seconds_sum"):
            out["busy_seconds"] = round(float(line.split()[1]), 3)   # time inside batches
    if out.get("count"):
        out["mean"] = round(out["sum"] / out["count"], 2)
    return out


def service_load(server: ServerProcess, clients: int, requests: int, per_request: int,
                 max_seconds: float) -> dict:
    import httpx

    lat, codes, lock = [], {}, threading.Lock()
    # the crops are encoded before the clock starts: the clients share this machine's cores
    payloads = [[[("files", (f"{b + i}.jpg", synthetic_crop(b + i), "image/jpeg"))
                  for i in range(per_request)]
                 for b in ((k * requests + j) * per_request for j in range(requests))]
                for k in range(clients)]
    end = time.monotonic() + max_seconds

    def client(k: int):
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=120) as c:
            for files in payloads[k]:
                if time.monotonic() > end:
                    return
                t0 = time.perf_counter()
                r = c.post("/v1/persons", files=files)
                dt = time.perf_counter() - t0
                with lock:
                    codes[r.status_code] = codes.get(r.status_code, 0) + 1
                    if r.status_code == 200:
                        lat.append(dt)

    # warm the server's model (first batch pays one-off costs)
    httpx.post(server.url + "/v1/persons", headers=server.headers, timeout=120,
               files=[("files", ("w.jpg", synthetic_crop(999_999), "image/jpeg"))])
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    dt = time.perf_counter() - t0
    ok_crops = len(lat) * per_request
    m = httpx.get(server.url + "/metrics", headers=server.headers, timeout=10).text
    return {"clients": clients, "requests": sum(codes.values()), "status": codes,
            "crops": ok_crops, "seconds": round(dt, 3), "crops_per_s": round(ok_crops / dt, 2),
            "latency": percentiles(lat), "batch_size": _batch_sizes(m)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=None, help="attribute model directory (default: shipped)")
    ap.add_argument("--fake", action="store_true", help="instant fake pipeline (harness check only)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=8, help="requests per client")
    ap.add_argument("--crops-per-request", type=int, default=1)
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--max-wait-ms", type=float, default=50)
    ap.add_argument("--workers", type=int, default=1, help="the server's inference worker threads")
    ap.add_argument("--raw-crops", type=int, default=64, help="crops for the raw measurement (0: skip)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for the raw measurement")
    ap.add_argument("--max-seconds", type=float, default=300)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)

    raw = None
    if a.raw_crops and not a.fake:
        raw = raw_throughput(a.weights, a.max_batch, a.raw_crops, a.threads)
        print(f"raw pipeline      batch {raw['batch']:>3}: {raw['crops_per_s']:8.2f} crops/s")
    server = ServerProcess(fake=a.fake, weights=a.weights, max_batch=a.max_batch,
                           max_wait_ms=a.max_wait_ms, queue_size=max(256, a.clients * a.crops_per_request),
                           extra=() if a.fake else ("--workers", str(a.workers)))
    try:
        svc = service_load(server, a.clients, a.requests, a.crops_per_request, a.max_seconds)
        svc["server_rss_mb"] = server.rss_mb
    finally:
        rc = server.terminate()
    lat = svc["latency"]
    print(f"service {a.clients:>2} clients        : {svc['crops_per_s']:8.2f} crops/s  "
          f"p50 {lat.get('p50_ms')} ms  p99 {lat.get('p99_ms')} ms  "
          f"mean batch {svc['batch_size'].get('mean')}  status {svc['status']}")
    ratio = round(svc["crops_per_s"] / raw["crops_per_s"], 3) if raw else None
    if ratio is not None:
        print(f"service / raw     : {ratio:.2f}")
    out = {"raw": raw, "service": svc, "service_over_raw": ratio, "server_exit_code": rc,
           "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
           "meta": environment()}
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(out, indent=2))
    ok = rc == 0 and set(svc["status"]) <= {200}
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
