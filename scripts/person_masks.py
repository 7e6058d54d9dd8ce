"""Person masks for the background-swap augmentation (issue 12): one PNG per crop, or none.

A model trained on PETA also learns its cameras' backgrounds: the same corridors, floors and
walls stand behind most people of a sub-dataset, and a camera never seen brings others. The
background-swap augmentation (``personlens.data.augment.BackgroundSwap``) pastes a person
in front of another crop's background; it needs to know which pixels are the person.

The masks come from MediaPipe's BlazePose segmentation (Apache-2.0, weights inside the
wheel, no download), run on each crop scaled to 256 pixels high. MediaPipe 0.10.14 pins
``opencv-contrib-python`` and ``protobuf<5``, which clash with this project's environment,
so it runs in a venv of its own; this script needs only it, numpy, Pillow and tqdm:

    python3.11 -m venv .venv-masks && .venv-masks/bin/pip install mediapipe==0.10.14 pillow tqdm
    .venv-masks/bin/python scripts/person_masks.py --images ../shared/data/PETA/images \\
        --out cache/masks/peta

A mask is kept only when it looks like one whole person (``plausible``): pose segmentation
fails on many low-resolution crops, and a crop without a mask is simply never re-backed.
Masks are soft (0-255) at the crop's own size. Resumable: crops with a mask or a recorded
failure are skipped; ``summary.json`` counts what was kept.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

SEG_HEIGHT = 256          # BlazePose finds few people in crops 100-150 pixels high


def plausible(mask: np.ndarray, min_area: float = 0.12, max_area: float = 0.8,
              min_height: float = 0.6) -> bool:
    """A soft mask ``(H, W)`` in [0, 1] that covers one standing person: a share of the crop
    that a centred pedestrian fills, and rows from near the top to near the bottom (a head or
    a torso alone would re-back the legs and the bag with another crop's floor)."""
    m = mask > 0.5
    area = float(m.mean())
    if not min_area <= area <= max_area:
        return False
    rows = np.flatnonzero(m.mean(axis=1) > 0.02)
    return len(rows) > 0 and (rows[-1] - rows[0] + 1) / m.shape[0] >= min_height


def segment(img: Image.Image, pose) -> np.ndarray | None:
    """The soft person mask of ``img`` at its own size, or None when no person was found."""
    w, h = img.size
    big = img.convert("RGB").resize((max(1, round(w * SEG_HEIGHT / h)), SEG_HEIGHT), Image.BILINEAR)
    res = pose.process(np.asarray(big))
    if res.segmentation_mask is None:
        return None
    m = Image.fromarray((np.clip(res.segmentation_mask, 0, 1) * 255).astype(np.uint8))
    return np.asarray(m.resize((w, h), Image.BILINEAR), np.float32) / 255.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", required=True, help="folder of crops (PETA's images/)")
    ap.add_argument("--out", required=True, help="folder for <crop stem>.png masks")
    ap.add_argument("--limit", type=int, default=0, help="only the first N crops (a trial)")
    args = ap.parse_args(argv)

    import mediapipe as mp
    from tqdm import tqdm

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failed_path = out / "failed.txt"
    failed = set(failed_path.read_text().split()) if failed_path.exists() else set()
    files = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp"})
    if args.limit:
        files = files[:args.limit]
    todo = [p for p in files if p.stem not in failed and not (out / f"{p.stem}.png").exists()]
    with mp.solutions.pose.Pose(static_image_mode=True, enable_segmentation=True,
                                model_complexity=1) as pose, open(failed_path, "a") as fail_log:
        for p in tqdm(todo, desc="person masks", unit="crop"):
            try:
                mask = segment(Image.open(p), pose)
            except OSError as e:                      # an unreadable crop: no mask, say why
                print(f"{p.name}: {e}", file=sys.stderr)
                mask = None
            if mask is None or not plausible(mask):
                fail_log.write(f"{p.stem}\n")
                continue
            Image.fromarray((mask * 255 + 0.5).astype(np.uint8)).save(out / f"{p.stem}.png")
    kept = sum(1 for p in files if (out / f"{p.stem}.png").exists())
    summary = {"crops": len(files), "masks": kept, "share": round(kept / max(1, len(files)), 4),
               "segmenter": "mediapipe BlazePose (model_complexity 1) segmentation",
               "seg_height": SEG_HEIGHT}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
