"""CPU speed of attribute recognition through the shipped inference path.

Measures, for each precision (bf16 and fp32 by default):

* latency at batch 1: ms per image, median (and p90) over ``--runs`` calls after a warm-up,
  from a decoded PIL image (preprocessing included);
* throughput at batch ``--batch`` (32): images/s end to end from decoded PIL images, and
  again starting from JPEG bytes (decoding with ``personlens.data.images.decode_image``).

Inputs are synthetic person-sized crops (about 256x128, smooth random colour fields plus
noise) or, with ``--real``, PETA crops read from ``../shared/data/PETA/images``.

    python benchmarks/bench_attributes.py                      # the shipped model
    python benchmarks/bench_attributes.py --weights runs/par --json bench.json
"""
from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DEFAULT_REAL = REPO / ".." / "shared" / "data" / "PETA" / "images"


def synthetic_crops(n: int, seed: int = 0) -> list[Image.Image]:
    """Person-crop-sized RGB images: a smooth random colour field plus pixel noise.

    Pure noise would make JPEGs unrealistically large and slow to decode; a smooth field
    with noise compresses more like a real crop.
    """
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        h, w = int(rng.integers(224, 289)), int(rng.integers(96, 161))
        coarse = Image.fromarray(rng.integers(0, 256, size=(8, 4, 3), dtype=np.uint8))
        base = np.asarray(coarse.resize((w, h), Image.BICUBIC), np.int16)
        noisy = base + rng.integers(-12, 13, size=base.shape, dtype=np.int16)
        out.append(Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)))
    return out


def real_crops(n: int, folder: Path, seed: int = 0) -> list[Image.Image]:
    from personlens.data.images import load_image

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp"})
    if not files:
        raise SystemExit(f"no images in {folder}")
    pick = np.random.default_rng(seed).choice(len(files), size=min(n, len(files)), replace=False)
    return [load_image(files[i]) for i in sorted(pick)]


def bench_crops(args) -> tuple[list[Image.Image], str] | None:
    """(``--n`` crops, where they came from): real PETA crops with ``--real``, else synthetic;
    None (after a message) when ``--real`` finds no crops."""
    if not args.real:
        return synthetic_crops(args.n, args.seed), "synthetic smooth-noise crops (h 224-288, w 96-160)"
    if not args.images.is_dir():
        print(f"error: --real needs crops in {args.images}", file=sys.stderr)
        return None
    return real_crops(args.n, args.images, args.seed), f"PETA crops from {args.images.resolve()}"


def jpeg_bytes(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def percentile(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def bench_latency(predictor, images, warmup: int, runs: int, call=None) -> dict:
    """ms per image at batch 1, from a decoded image (preprocessing included).

    ``call(batch)`` is what is timed (default: the predictor's probabilities)."""
    call = call or predictor.probabilities
    for i in range(warmup):
        call([images[i % len(images)]])
    times = []
    for i in range(runs):
        img = images[i % len(images)]
        t0 = time.perf_counter()
        call([img])
        times.append((time.perf_counter() - t0) * 1000)
    return {"median_ms": statistics.median(times), "p90_ms": percentile(times, 90),
            "min_ms": min(times), "mean_ms": statistics.fmean(times), "runs": runs}


def bench_throughput(predictor, items, batch: int, rounds: int, decode=None) -> dict:
    """images/s over ``rounds`` passes through ``items`` in batches (one warm-up batch first)."""
    def run_batch(chunk):
        imgs = [decode(b, f"<bench {i}>") for i, b in enumerate(chunk)] if decode else chunk
        predictor.probabilities(imgs)

    run_batch(items[:batch])  # warm-up
    count, t0 = 0, time.perf_counter()
    for _ in range(rounds):
        for i in range(0, len(items), batch):
            chunk = items[i:i + batch]
            run_batch(chunk)
            count += len(chunk)
    seconds = time.perf_counter() - t0
    return {"images_per_s": count / seconds, "ms_per_image": 1000 * seconds / count,
            "images": count, "seconds": seconds, "batch": batch}


def cpu_info() -> dict:
    info = {"machine": platform.machine(), "processor": platform.processor()}
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.startswith("model name"):
                info["model"] = line.split(":", 1)[1].strip()
                break
        flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
        info["bf16_flags"] = sorted(f for f in flags if "bf16" in f or f.startswith("amx"))
    except OSError:
        pass
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=None,
                    help="a trained model directory (default: the shipped model)")
    ap.add_argument("--precision", nargs="+", choices=["bf16", "fp32"], default=["bf16", "fp32"])
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    ap.add_argument("--n", type=int, default=128, help="distinct crops (default 128)")
    ap.add_argument("--runs", type=int, default=30, help="timed batch-1 calls (default 30)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed batch-1 calls first (default 5)")
    ap.add_argument("--batch", type=int, default=32, help="throughput batch size (default 32)")
    ap.add_argument("--rounds", type=int, default=2,
                    help="passes over the N crops for throughput (default 2)")
    ap.add_argument("--real", action="store_true", help=f"use real PETA crops from {DEFAULT_REAL}")
    ap.add_argument("--images", type=Path, default=DEFAULT_REAL, help="folder of crops for --real")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-flip-tta", action="store_true",
                    help="skip mirror-image averaging (twice the speed, slightly lower accuracy)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)

    import torch

    import personlens
    from personlens.data.images import decode_image
    from personlens.inference.predict import AttributePredictor

    torch.set_num_threads(args.threads)
    try:
        predictor = AttributePredictor(args.weights, precision=args.precision[0], threads=args.threads,
                                       flip_tta=False if args.no_flip_tta else None)
    except FileNotFoundError as e:
        print(f"error: cannot load model: {e}", file=sys.stderr)
        return 2

    loaded = bench_crops(args)
    if loaded is None:
        return 2
    images, source = loaded
    encoded = [jpeg_bytes(im) for im in images]
    sizes = np.array([im.size for im in images])

    cfg = predictor.config
    meta = {
        "personlens": personlens.__version__, "torch": torch.__version__,
        "python": platform.python_version(), "threads": torch.get_num_threads(),
        "cpu": cpu_info(),
        "weights": str(args.weights) if args.weights else "shipped:par-peta",
        "model": {"encoder": cfg.encoder, "head": cfg.head.kind, "attributes": len(cfg.attributes),
                  "input": [predictor.preprocess.height, predictor.preprocess.width]},
        "images": {"source": source, "count": len(images),
                   "mean_size_wh": [round(float(x)) for x in sizes.mean(0)],
                   "mean_jpeg_bytes": round(float(np.mean([len(b) for b in encoded])))},
        "settings": {"flip_tta": predictor.flip_tta, "runs": args.runs, "warmup": args.warmup, "batch": args.batch,
                     "rounds": args.rounds, "seed": args.seed},
    }

    results = {}
    reference = None
    for prec in args.precision:
        predictor.precision = prec
        print(f"[{prec}] batch 1 ...", file=sys.stderr, flush=True)
        lat = bench_latency(predictor, images, args.warmup, args.runs)
        print(f"[{prec}] batch {args.batch} from decoded images ...", file=sys.stderr, flush=True)
        thr = bench_throughput(predictor, images, args.batch, args.rounds)
        print(f"[{prec}] batch {args.batch} from JPEG bytes ...", file=sys.stderr, flush=True)
        thr_jpeg = bench_throughput(predictor, encoded, args.batch, args.rounds, decode=decode_image)
        probs = predictor.probabilities(images[:8])
        results[prec] = {"batch1": lat, "batch_decoded": thr, "batch_jpeg": thr_jpeg}
        if reference is None:
            reference = probs
        else:
            results[prec]["max_abs_prob_diff_vs_" + args.precision[0]] = float(np.abs(probs - reference).max())

    print_table(results, meta, args.batch)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
        print(f"wrote {args.json}")
    return 0


def print_table(results: dict, meta: dict, batch: int) -> None:
    m = meta["model"]
    print(f"\npersonlens {meta['personlens']}  torch {meta['torch']}  threads {meta['threads']}  "
          f"cpu: {meta['cpu'].get('model', meta['cpu']['processor'])}")
    print(f"model: {m['encoder']} + {m['head']} head, {m['attributes']} attributes, "
          f"input {m['input'][0]}x{m['input'][1]}; {meta['images']['count']} {meta['images']['source']}")
    head = (f"{'precision':<10} {'batch 1 ms/img':>15} {'p90':>8} "
            f"{f'batch {batch} img/s':>15} {'+ JPEG decode':>14}")
    print(head)
    print("-" * len(head))
    for prec, r in results.items():
        print(f"{prec:<10} {r['batch1']['median_ms']:>15.1f} {r['batch1']['p90_ms']:>8.1f} "
              f"{r['batch_decoded']['images_per_s']:>15.1f} {r['batch_jpeg']['images_per_s']:>14.1f}")


if __name__ == "__main__":
    sys.exit(main())
