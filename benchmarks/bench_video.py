"""How fast `personlens index VIDEO` runs (the goal: TUD-Stadtmitte, 179 frames = 7.2 s of
video, indexed with every head in at most 7.2 s once the models are loaded: >= 1.0x real
time), and detection + tracking alone in frames/s.

A fresh library, the shipped models (attributes, search, re-ID, descriptions), the same call
as the CLI (`personlens.library.video.index_video`), models loaded and warmed up first:

    .venv/bin/python benchmarks/bench_video.py --video ../shared/data/video/TUD-Stadtmitte/TUD-Stadtmitte.mp4 \
        --json docs/results/bench_video.json [--every 1 2]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--video", required=True)
    ap.add_argument("--every", type=int, nargs="+", default=[1])
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from personlens.data.video import VideoSource
    from personlens.inference.encode import resolve_precision
    from personlens.inference.onnx_encoder import resolve_runtime
    from personlens.library import PersonLibrary
    from personlens.library.video import index_video
    from personlens.models.factory import create_detector
    from personlens.video.runner import VideoSettings, track_video

    detector = create_detector("ssdlite")
    detector(np.zeros((480, 640, 3), np.uint8))          # warm-up
    runs = []
    for every in args.every:
        settings = VideoSettings(every=every)
        src = VideoSource(args.video, every=every)
        tr = track_video(src, detector, settings, collect_crops=False, progress=False)
        with tempfile.TemporaryDirectory() as tmp:
            lib = PersonLibrary(Path(tmp) / "db")
            t0 = time.perf_counter()
            pipe = lib.pipeline                          # loading the models is not indexing
            from PIL import Image

            pipe.process([Image.new("RGB", (64, 128))] * 2, ["warm-a", "warm-b"])   # warm-up
            load_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            s = index_video(lib, args.video, camera="bench", start=0.0, settings=settings,
                            detector=detector, progress=False)
            wall = time.perf_counter() - t0
            lib.close()
        runs.append({"every": every, "frames": s.frames, "video_seconds": round(s.video_seconds, 2),
                     "wall_seconds": round(wall, 2), "speed_x_real_time": round(s.video_seconds / wall, 3),
                     "tracks": s.tracks, "crops_encoded": s.tracks * settings.crops.k,
                     "tracking_seconds": round(s.tracking_seconds, 2),
                     "encoding_seconds": round(s.encoding_seconds, 2),
                     "detection_tracking_frames_per_s": round(tr.frames / tr.seconds, 2),
                     "model_load_seconds": round(load_s, 1), "met": s.video_seconds / wall >= 1.0})
        print(json.dumps(runs[-1], indent=2))
    out = {"video": args.video, "goal": ">= 1.0x real time with every head", "runs": runs,
           "precision": resolve_precision("auto"), "threads": torch.get_num_threads(),
           "detector_runtime": detector.runtime,
           "encoder_runtime": resolve_runtime("auto", resolve_precision("auto")),
           "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
