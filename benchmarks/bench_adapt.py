"""How long `personlens adapt` takes on N crops (the goal: 1,000 crops in under 2 minutes).

Real crops (PETA images of one sub-dataset, as one camera's crops would be), a fresh
library with no records (so nothing is re-embedded: the time is adaptation alone), the
shipped models, the same call as the CLI (`PersonLibrary.adapt`):

    .venv/bin/python benchmarks/bench_adapt.py --root ../shared/data/PETA --crops 1000 \
        --json docs/results/bench_adapt.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", required=True, help="PETA root (images/ + PETA.mat)")
    ap.add_argument("--crops", type=int, default=1000)
    ap.add_argument("--subset", default="TownCentre", help="PETA sub-dataset the crops come from")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from personlens.data.peta import PETA
    from personlens.inference.encode import resolve_precision
    from personlens.library import PersonLibrary

    ds = PETA(args.root, "train", only_subsets=(args.subset,))
    paths = list(ds.paths)[:args.crops]
    if len(paths) < args.crops:
        raise SystemExit(f"{args.subset} has only {len(paths)} training crops")
    with tempfile.TemporaryDirectory() as tmp:
        lib = PersonLibrary(Path(tmp) / "db")
        t0 = time.perf_counter()
        lib.pipeline                       # loading the models is not adaptation
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        summary = lib.adapt(paths, progress=True)
        seconds = time.perf_counter() - t0
        lib.close()
    out = {"crops": len(paths), "subset": args.subset, "seconds": round(seconds, 1),
           "model_load_seconds": round(load_s, 1), "goal_seconds": 120, "met": seconds < 120,
           "precision": resolve_precision("auto"), "threads": torch.get_num_threads(),
           "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
           "largest_threshold_moves": summary.details.get("largest_threshold_moves")}
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
