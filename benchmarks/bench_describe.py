"""CPU speed of person descriptions through the ``personlens describe`` path.

Measures, with greedy decoding by default (``--decoding``):

* latency at batch 1: ms per description, median (and p90) over ``--runs`` calls after a
  warm-up, from a decoded PIL image: preprocessing, the PAR encoder and head (bf16), text
  generation, clean-up and the consistency check;
* throughput at batch ``--batch`` (32): descriptions/s end to end over ``--rounds`` passes
  through the ``--n`` crops;
* the split of the batch time between the encoder pass (attributes included) and the text.

Inputs are the synthetic person-sized crops of ``bench_attributes.py`` or, with ``--real``,
PETA crops from ``../shared/data/PETA/images``.

    python benchmarks/bench_describe.py --weights runs/describe --json runs/bench_describe.json
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_attributes import DEFAULT_REAL, bench_crops, cpu_info  # noqa: E402
from bench_attributes import bench_latency as _bench_latency  # noqa: E402


def bench_latency(describer, images, warmup: int, runs: int) -> dict:
    return _bench_latency(describer, images, warmup, runs, call=describer.describe_images)


def bench_throughput(describer, images, batch: int, rounds: int) -> dict:
    describer.describe_images(images[:batch])  # warm-up
    count, enc_s, t0 = 0, 0.0, time.perf_counter()
    words = []
    for _ in range(rounds):
        for i in range(0, len(images), batch):
            chunk = images[i:i + batch]
            e0 = time.perf_counter()
            describer.encode(chunk)
            enc_s += time.perf_counter() - e0
            out = describer.describe_images(chunk)
            words += [len(d.text.split()) for d in out]
            count += len(chunk)
    seconds = time.perf_counter() - t0 - enc_s  # the separate encode() calls are not counted
    return {"descriptions_per_s": count / seconds, "ms_per_description": 1000 * seconds / count,
            "descriptions": count, "seconds": seconds, "batch": batch,
            "encoder_share": min(1.0, enc_s / seconds), "mean_words": float(np.mean(words))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=None,
                    help="a description model directory (default: the shipped one)")
    ap.add_argument("--par", type=Path, default=None, help="attribute model (default: the describer's)")
    ap.add_argument("--decoding", choices=["greedy", "beam", "sample"], default="greedy")
    ap.add_argument("--beam-size", type=int, default=4)
    ap.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    ap.add_argument("--n", type=int, default=64, help="distinct crops (default 64)")
    ap.add_argument("--runs", type=int, default=20, help="timed batch-1 calls (default 20)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed batch-1 calls first (default 3)")
    ap.add_argument("--batch", type=int, default=32, help="throughput batch size (default 32)")
    ap.add_argument("--rounds", type=int, default=2, help="passes over the N crops (default 2)")
    ap.add_argument("--real", action="store_true", help=f"use real PETA crops from {DEFAULT_REAL}")
    ap.add_argument("--images", type=Path, default=DEFAULT_REAL, help="folder of crops for --real")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)

    import torch

    import personlens
    from personlens.inference.describe import Describer
    from personlens.models.generate import DecodeConfig

    torch.set_num_threads(args.threads)
    try:
        describer = Describer(args.weights, par_dir=args.par, precision=args.precision)
    except (FileNotFoundError, ValueError, ModuleNotFoundError) as e:
        print(f"error: cannot load model: {e}", file=sys.stderr)
        return 2
    describer.decoding = DecodeConfig(method=args.decoding, beam_size=args.beam_size,
                                      max_len=describer.config.max_words + 1)
    loaded = bench_crops(args)
    if loaded is None:
        return 2
    images, source = loaded

    from personlens.models.describer import parameter_counts

    counts = parameter_counts(describer.model, describer.predictor.model)
    meta = {
        "personlens": personlens.__version__, "torch": torch.__version__,
        "python": platform.python_version(), "threads": torch.get_num_threads(), "cpu": cpu_info(),
        "weights": str(describer.weights), "decoder": describer.config.decoder,
        "decoding": describer.decoding.to_dict(), "precision": args.precision,
        "parameters": counts["total_parameters"], "flip_tta": bool(describer.predictor.config.flip_tta),
        "images": {"source": source, "count": len(images)},
        "settings": {"runs": args.runs, "warmup": args.warmup, "batch": args.batch,
                     "rounds": args.rounds, "seed": args.seed},
    }
    print("batch 1 ...", file=sys.stderr, flush=True)
    lat = bench_latency(describer, images, args.warmup, args.runs)
    print(f"batch {args.batch} ...", file=sys.stderr, flush=True)
    thr = bench_throughput(describer, images, args.batch, args.rounds)
    results = {"batch1": lat, "batch": thr}
    print(f"\npersonlens {meta['personlens']}  torch {meta['torch']}  threads {meta['threads']}  "
          f"cpu: {meta['cpu'].get('model', meta['cpu']['processor'])}")
    print(f"describer: {meta['decoder']} decoder, {args.decoding} decoding, "
          f"{meta['parameters']:,} parameters; {len(images)} {source}")
    print(f"batch 1 ms/description {lat['median_ms']:.1f} (p90 {lat['p90_ms']:.1f});  "
          f"batch {args.batch} descriptions/s {thr['descriptions_per_s']:.1f} "
          f"(encoder {100 * thr['encoder_share']:.0f}% of the time, {thr['mean_words']:.1f} words)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
