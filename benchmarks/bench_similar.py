"""Latency of re-ID queries ("more like this person") with and without per-camera centring.

    .venv/bin/python benchmarks/bench_similar.py --sizes 10000 100000 --json runs/bench_similar.json

Builds a library of synthetic records (re-ID vectors of the shipped head's size, 1792, spread
over ``--cameras`` cameras) in a temporary folder and times, on the library's own store and
exact faiss index:

* ``plain``: ``ranked_records`` (one index search, then the records from SQLite);
* ``centred``: ``camera_centred_records`` (1,000 raw candidates re-scored after centring),
  with the per-camera statistics already computed;
* ``stats``: computing those statistics from the store (done once, then again only after the
  store grows by more than 2 % or a change is 10 minutes old; ``CameraStatsCache``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from personlens.library import CameraStatsCache, PersonLibrary, camera_centred_records, ranked_records
from personlens.inference.records import PersonRecord

REID_DIM, SEARCH_DIM = 1792, 384


class _Dims:
    """The pipeline facts a library needs to store and index records it did not make."""

    model_version = "bench"
    reid_dim, search_dim = REID_DIM, SEARCH_DIM


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def build(lib: PersonLibrary, n: int, cameras: int, seed: int = 0, chunk: int = 5000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    offsets = rng.normal(size=(cameras, REID_DIM)) * 0.5
    search = _unit(rng.normal(size=SEARCH_DIM)).astype(np.float32)
    for s in tqdm(range(0, n, chunk), desc=f"building {n:,} records", unit="chunk"):
        m = min(chunk, n - s)
        cams = rng.integers(0, cameras, m)
        reid = _unit(rng.normal(size=(m, REID_DIM)) + offsets[cams]).astype(np.float32)
        lib.add_records([PersonRecord(id=hashlib.sha256(str(s + i).encode()).hexdigest(),
                                      path=f"/bench/{s + i}.jpg", attributes={"personalMale": 0.5},
                                      present=[], search_embedding=search, reid_embedding=reid[i],
                                      model_version="bench", camera=f"cam{cams[i]}")
                         for i in range(m)])
    return offsets


def timed(fn, queries, warmup: int = 5) -> dict:
    for q in queries[:warmup]:
        fn(q)
    ms = []
    for q in queries:
        t = time.perf_counter()
        fn(q)
        ms.append((time.perf_counter() - t) * 1000)
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2)}


def bench(n: int, args) -> dict:
    with tempfile.TemporaryDirectory() as d:
        lib = PersonLibrary(Path(d) / "db", pipeline=_Dims())
        build(lib, n, args.cameras)
        rng = np.random.default_rng(1)
        queries = [(_unit(rng.normal(size=REID_DIM)).astype(np.float32), f"cam{i % args.cameras}")
                   for i in range(args.queries)]
        index = lib.index("reid")
        t = time.perf_counter()
        stats = CameraStatsCache().get(lib.store, "bench")
        stats_s = time.perf_counter() - t
        row = {"records": n, "cameras": args.cameras, "top_k": args.top_k,
               "stats_seconds": round(stats_s, 2),
               "plain": timed(lambda q: ranked_records(lambda: index, lib.store, "bench", q[0],
                                                       args.top_k, {}), queries),
               "centred": timed(lambda q: camera_centred_records(
                   lambda: index, lib.store, "bench", q[0], q[1], stats, args.top_k, {}), queries)}
        lib.close()
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000])
    ap.add_argument("--cameras", type=int, default=8)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--top-k", type=int, default=20)
    ap.add_argument("--json", type=Path, required=True)
    args = ap.parse_args(argv)
    rows = []
    for n in args.sizes:
        rows.append(bench(n, args))
        print(json.dumps(rows[-1]), flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"benchmark": "similar with camera centring", "rows": rows},
                                    indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
