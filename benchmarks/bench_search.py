"""Search latency and recall over stored vectors, and indexing throughput of the real pipeline.

Search (synthetic vectors, through ``personlens.index.VectorIndex``, the path ``personlens
search`` and ``similar`` use, id mapping included):

* for each library size in ``--sizes`` (10k and 1M by default), unit vectors of the search
  embedding's dimension (384: MiniLM) drawn from a clustered distribution with low intrinsic
  dimension (uneven cluster centres + a shared low-rank variation + a little isotropic noise),
  so approximate search faces realistic structure rather than uniform noise;
* single-query latency (one query at a time, ``--threads`` threads), p50 and p99 in ms over
  ``--queries`` held-out queries from the same distribution, after a warm-up;
* recall@k (k = 10) of each approximate index against the exact one;
* indexes: ``flat`` (exact), ``ivf`` over an ``--nprobe`` sweep and ``hnsw`` over an
  ``--ef-search`` sweep; plus one attribute-filtered row per index (a random
  ``--filter-fraction`` of the records allowed, as ``--where`` does; the filter is compiled
  once, as the library caches it, and its compile time reported apart).

The goal checked at 1M vectors: p99 < 50 ms with recall@10 >= 0.95.

Indexing throughput (``--crops``, 0 to skip): the real ``PersonPipeline`` (attributes, search
and re-ID heads from one encoder pass) at batch ``--batch`` (32) on synthetic person crops, in
crops/s: (a) ``pipeline.process`` on decoded images, (b) ``PersonLibrary.index_paths`` end to
end from JPEG files (read, hash, decode, model, SQLite commit, index update).

    python benchmarks/bench_search.py --json runs/bench_search.json          # everything
    python benchmarks/bench_search.py --sizes 10000 100000 --kinds flat ivf  # smaller
    python benchmarks/bench_search.py --sizes 10000 --crops 64 --weights runs/par
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


# ----------------------------------------------------------------------------- data
class ClusteredVectors:
    """Unit vectors around uneven cluster centres, varying along a shared low-rank basis."""

    def __init__(self, dim: int, clusters: int, rank: int = 32, spread: float = 1.0, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.dim, self.rank = dim, rank
        c = rng.standard_normal((clusters, dim), dtype=np.float32)
        self.centres = c / np.linalg.norm(c, axis=1, keepdims=True)
        self.basis = rng.standard_normal((dim, rank), dtype=np.float32) / np.sqrt(dim)
        self.scales = (spread * rng.uniform(0.05, 0.2, size=(clusters, rank))).astype(np.float32)
        self.noise = 0.01 * spread
        w = 1.0 / np.arange(1, clusters + 1) ** 0.7  # uneven cluster sizes
        self.p = w / w.sum()

    def sample(self, n: int, seed: int, chunk: int = 65536) -> np.ndarray:
        rng = np.random.default_rng(seed)
        out = np.empty((n, self.dim), np.float32)
        for s in range(0, n, chunk):
            m = min(chunk, n - s)
            lab = rng.choice(len(self.centres), size=m, p=self.p)
            z = rng.standard_normal((m, self.rank), dtype=np.float32) * self.scales[lab]
            x = self.centres[lab] + z @ self.basis.T
            x += self.noise * rng.standard_normal((m, self.dim), dtype=np.float32)
            out[s:s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out


def record_ids(n: int) -> list[str]:
    return [hashlib.sha256(i.to_bytes(8, "little")).hexdigest() for i in range(n)]


# ----------------------------------------------------------------------------- search
def time_queries(index, queries: np.ndarray, k: int, allowed=None, warmup: int = 20):
    """Latency per single query. A filter (set of ids) is compiled once, outside the timing,
    as the library's ``FilterCache`` does for a repeated ``--where``; the compile time is
    reported as ``filter_compile_ms``."""
    extra = {}
    if allowed is not None:
        t0 = time.perf_counter()
        allowed = index.compile_filter(allowed)
        extra["filter_compile_ms"] = (time.perf_counter() - t0) * 1000
    for q in queries[:warmup]:
        index.search(q, k, allowed)
    lat, got = [], []
    for q in queries:
        t0 = time.perf_counter()
        hits = index.search(q, k, allowed)
        lat.append((time.perf_counter() - t0) * 1000)
        got.append([h for h, _ in hits])
    lat = np.asarray(lat)
    return {"p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "mean_ms": float(lat.mean()), "queries": len(queries), **extra}, got


def recall(got: list[list[str]], truth: list[list[str]], k: int) -> float:
    return float(np.mean([len(set(g[:k]) & set(t[:k])) / max(1, min(k, len(t)))
                          for g, t in zip(got, truth)]))


def bench_size(n: int, args, log) -> list[dict]:
    from personlens.index import VectorIndex

    clusters = args.clusters or int(np.clip(n // 1000, 50, 2000))
    gen = ClusteredVectors(args.dim, clusters, seed=args.seed)
    log(f"[{n}] generating {n} x {args.dim} vectors ({clusters} clusters) ...")
    data = gen.sample(n, seed=args.seed + 1)
    queries = gen.sample(args.queries, seed=args.seed + 2)
    ids = record_ids(n)
    rng = np.random.default_rng(args.seed + 3)
    allowed = set(np.asarray(ids)[rng.random(n) < args.filter_fraction].tolist())
    rows: list[dict] = []

    def build(kind, **params):
        _threads(args.build_threads)
        t0 = time.perf_counter()
        idx = VectorIndex.build(ids, data, kind=kind, **params)
        secs = time.perf_counter() - t0
        _threads(args.threads)
        return idx, secs

    def row(kind, params, secs, stats, rec, filtered=False, **extra):
        r = {"n": n, "kind": kind, "params": params, "filtered": filtered, "build_s": secs,
             **stats, f"recall@{args.k}": rec, **extra}
        r["meets_goal"] = bool(stats["p99_ms"] < args.goal_p99_ms and rec >= args.goal_recall)
        rows.append(r)
        log(f"[{n}] {kind:<5} {json.dumps(params):<26} {'filtered ' if filtered else ''}"
            f"p50 {stats['p50_ms']:.2f} ms  p99 {stats['p99_ms']:.2f} ms  recall {rec:.3f}")

    log(f"[{n}] flat (exact) ...")
    flat, secs = build("flat")
    stats, truth = time_queries(flat, queries, args.k)
    row("flat", {}, secs, stats, 1.0)
    fstats, ftruth = time_queries(flat, queries, args.k, allowed)
    row("flat", {}, secs, fstats, 1.0, filtered=True, allowed=len(allowed))
    del flat

    if "ivf" in args.kinds:
        log(f"[{n}] ivf: training ...")
        params = {"train_size": min(n, 20000)}
        if args.nlist:
            params["nlist"] = args.nlist
        ivf, secs = build("ivf", **params)
        best = None
        for nprobe in args.nprobe:
            if nprobe > ivf.nlist:
                continue
            ivf.params["nprobe"] = nprobe
            stats, got = time_queries(ivf, queries, args.k)
            rec = recall(got, truth, args.k)
            row("ivf", {"nlist": ivf.nlist, "nprobe": nprobe}, secs, stats, rec)
            if best is None and rec >= args.goal_recall:
                best = nprobe
        ivf.params["nprobe"] = best or max(p for p in args.nprobe if p <= ivf.nlist)
        stats, got = time_queries(ivf, queries, args.k, allowed)
        row("ivf", {"nlist": ivf.nlist, "nprobe": ivf.params["nprobe"]}, secs, stats,
            recall(got, ftruth, args.k), filtered=True, allowed=len(allowed))
        del ivf

    if "hnsw" in args.kinds:
        log(f"[{n}] hnsw: building (m={args.hnsw_m}, efConstruction={args.ef_construction}) ...")
        hnsw, secs = build("hnsw", m=args.hnsw_m, ef_construction=args.ef_construction)
        best = None
        for ef in args.ef_search:
            hnsw.params["ef_search"] = ef
            stats, got = time_queries(hnsw, queries, args.k)
            rec = recall(got, truth, args.k)
            row("hnsw", {"m": args.hnsw_m, "ef_search": ef}, secs, stats, rec)
            if best is None and rec >= args.goal_recall:
                best = ef
        hnsw.params["ef_search"] = best or max(args.ef_search)
        stats, got = time_queries(hnsw, queries, args.k, allowed)
        row("hnsw", {"m": args.hnsw_m, "ef_search": hnsw.params["ef_search"]}, secs, stats,
            recall(got, ftruth, args.k), filtered=True, allowed=len(allowed))
        del hnsw
    return rows


def _threads(n: int | None) -> None:
    import faiss

    if n:
        faiss.omp_set_num_threads(n)


# ----------------------------------------------------------------------------- throughput
def bench_throughput(args, log) -> dict:
    import torch

    from personlens.library import PersonLibrary
    from personlens.inference.pipeline import PersonPipeline

    spec = importlib.util.spec_from_file_location("bench_attributes", HERE / "bench_attributes.py")
    ba = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ba)

    torch.set_num_threads(args.torch_threads)
    log(f"[throughput] loading the pipeline ({args.weights or 'shipped model'}) ...")
    pipe = PersonPipeline(args.weights)
    crops = ba.synthetic_crops(args.crops, args.seed)
    b = args.batch
    pipe.process(crops[:b], [f"w{i}" for i in range(len(crops[:b]))])  # warm-up
    log(f"[throughput] pipeline.process, {args.crops} crops, batch {b} ...")
    t0 = time.perf_counter()
    for s in range(0, len(crops), b):
        chunk = crops[s:s + b]
        pipe.process(chunk, [f"c{s + i}" for i in range(len(chunk))])
    process_s = time.perf_counter() - t0
    similar = time_new_image_query(pipe, crops[:args.similar_queries], log)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "crops"
        folder.mkdir()
        paths = []
        for i, im in enumerate(crops):
            p = folder / f"{i:06d}.jpg"
            im.save(p, quality=90)
            paths.append(p)
        log(f"[throughput] index_paths end to end ({len(paths)} JPEG files) ...")
        lib = PersonLibrary(Path(tmp) / "db", pipeline=pipe)
        t0 = time.perf_counter()
        summary = lib.index_paths(paths, batch_size=b, progress=False)
        index_s = time.perf_counter() - t0
        lib.close()
    return {"crops": len(crops), "batch": b, "torch_threads": torch.get_num_threads(),
            "runtime": pipe.predictor.encoder.runtime, "precision": pipe.predictor.encoder.precision,
            "flip_tta": bool(getattr(pipe.model.config, "flip_tta", False)),
            "process_crops_per_s": len(crops) / process_s,
            "index_paths_crops_per_s": len(crops) / index_s, "added": summary.added,
            "similar_new_image": similar, "pipeline": pipe.describe()}


def time_new_image_query(pipe, crops, log) -> dict:
    """The encoder work of ``similar`` on an image the library does not hold, one crop at a
    time: the re-ID embedding alone (``reid_embeddings``, what ``similar`` runs now) against
    a whole record (``process``: attributes, search embedding and description too, what it
    ran before 0.2). Median ms over the crops, after one warm-up call of each."""
    if not crops:
        return {}
    log(f"[throughput] similar on a new image: {len(crops)} single-crop queries ...")
    pipe.reid_embeddings(crops[:1])
    pipe.process(crops[:1], ["w"])
    out = {}
    for name, fn in (("reid_embeddings_ms", lambda im: pipe.reid_embeddings([im])),
                     ("process_ms", lambda im: pipe.process([im], ["q"]))):
        times = []
        for im in crops:
            t0 = time.perf_counter()
            fn(im)
            times.append((time.perf_counter() - t0) * 1000)
        out[name] = float(np.median(times))
    out["queries"] = len(crops)
    out["speed_up"] = out["process_ms"] / out["reid_embeddings_ms"]
    return out


# ----------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=384, help="vector size (384: the MiniLM search space)")
    ap.add_argument("--kinds", nargs="+", choices=["flat", "ivf", "hnsw"], default=["flat", "ivf", "hnsw"],
                    help="indexes to measure (flat, the exact reference, always runs)")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--clusters", type=int, default=None, help="default: n/1000 within [50, 2000]")
    ap.add_argument("--nlist", type=int, default=None, help="IVF lists (default: about sqrt(n))")
    ap.add_argument("--nprobe", type=int, nargs="+", default=[4, 8, 16, 32, 64, 128])
    ap.add_argument("--hnsw-m", type=int, default=32)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--ef-search", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    ap.add_argument("--filter-fraction", type=float, default=0.1,
                    help="share of records an attribute filter allows in the filtered rows")
    ap.add_argument("--threads", type=int, default=1, help="faiss threads while searching")
    ap.add_argument("--build-threads", type=int, default=None, help="faiss threads while building")
    ap.add_argument("--goal-p99-ms", type=float, default=50.0)
    ap.add_argument("--goal-recall", type=float, default=0.95)
    ap.add_argument("--crops", type=int, default=256, help="crops for the throughput test (0: skip)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--similar-queries", type=int, default=30,
                    help="single-crop `similar` queries timed on new images (0: skip)")
    ap.add_argument("--torch-threads", type=int, default=2)
    ap.add_argument("--weights", type=Path, default=None, help="PAR model dir (default: shipped)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    import faiss

    import personlens

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    meta = {"personlens": personlens.__version__, "faiss": faiss.__version__,
            "python": platform.python_version(), "cpu": _cpu(), "search_threads": args.threads,
            "dim": args.dim, "k": args.k, "queries": args.queries,
            "goal": {"n": 1_000_000, "p99_ms": args.goal_p99_ms, f"recall@{args.k}": args.goal_recall},
            "data": "clustered unit vectors, low intrinsic dimension (see ClusteredVectors)",
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    rows = []
    for n in args.sizes:
        rows.extend(bench_size(n, args, log))
    throughput = None
    if args.crops > 0:
        try:
            throughput = bench_throughput(args, log)
        except FileNotFoundError as e:
            log(f"[throughput] skipped: cannot load model: {e}")
            throughput = {"error": str(e)}
    print_table(rows, throughput, args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "search": rows, "throughput": throughput,
                                         "chosen": chosen(rows, args)}, indent=2))
        print(f"wrote {args.json}")
    return 0


def chosen(rows, args) -> dict:
    """Per size and kind: the fastest unfiltered setting that reaches the recall goal."""
    out = {}
    key = f"recall@{args.k}"
    for r in rows:
        if r["filtered"] or r[key] < args.goal_recall:
            continue
        cur = out.setdefault(str(r["n"]), {}).get(r["kind"])
        if cur is None or r["p99_ms"] < cur["p99_ms"]:
            out[str(r["n"])][r["kind"]] = {"params": r["params"], "p50_ms": r["p50_ms"],
                                           "p99_ms": r["p99_ms"], key: r[key]}
    return out


def print_table(rows, throughput, args) -> None:
    key = f"recall@{args.k}"
    head = (f"{'vectors':>9} {'index':<5} {'settings':<22} {'filter':>6} {'build s':>8} "
            f"{'p50 ms':>8} {'p99 ms':>8} {key:>10} {'goal':>5}")
    print(head)
    print("-" * len(head))
    for r in rows:
        settings = ",".join(f"{k}={v}" for k, v in r["params"].items()) or "exact"
        goal = ("yes" if r["meets_goal"] else "no") if r["n"] >= 1_000_000 else "-"
        print(f"{r['n']:>9} {r['kind']:<5} {settings:<22} "
              f"{(f'{args.filter_fraction:.0%}' if r['filtered'] else '-'):>6} {r['build_s']:>8.1f} "
              f"{r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r[key]:>10.3f} {goal:>5}")
    if throughput and "error" not in throughput:
        print(f"\nindexing throughput, batch {throughput['batch']}, {throughput['torch_threads']} torch "
              f"threads, flip TTA {'on' if throughput['flip_tta'] else 'off'}, encoder in "
              f"{throughput['runtime']} ({throughput['precision']}): "
              f"{throughput['process_crops_per_s']:.1f} crops/s (pipeline.process), "
              f"{throughput['index_paths_crops_per_s']:.1f} crops/s (index_paths from JPEG files)")
        sim = throughput.get("similar_new_image") or {}
        if sim:
            print(f"similar on a new image (encoder side, median of {sim['queries']}): "
                  f"{sim['reid_embeddings_ms']:.1f} ms re-ID only vs {sim['process_ms']:.1f} ms "
                  f"for a whole record ({sim['speed_up']:.1f}x)")


def _cpu() -> dict:
    info = {"machine": platform.machine(), "cores": None}
    try:
        import os

        info["cores"] = os.cpu_count()
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info


if __name__ == "__main__":
    sys.exit(main())
