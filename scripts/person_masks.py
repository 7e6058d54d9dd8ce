"""Person masks for the background-swap augmentation (issue 12): one PNG per crop, or none.

A model trained on PETA also learns its cameras' backgrounds: the same corridors, floors and
walls stand behind most people of a sub-dataset, and a camera never seen brings others. The
background-swap augmentation (``personlens.data.background.swap_background``) pastes a person
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
``--pad 0.5`` tries those again centred in a larger canvas (edges replicated), which finds
most of the small crops that the tight crop hides from BlazePose's person detector; the masks
found on the first try stay as they are, so a folder made without it can be completed.
Masks are soft (0-255) at the crop's own size. Resumable: crops with a mask or a recorded
failure are skipped; ``summary.json`` counts what was kept.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

SEG_HEIGHT = 256          # BlazePose finds few people in crops 100-150 pixels high
PAD_SEG_HEIGHT = 384      # a padded canvas (--pad 0.5: the person is half of it, 192 high)


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


def segment(img: Image.Image, pose, pad: float = 0.0) -> np.ndarray | None:
    """The soft person mask of ``img`` at its own size, or None when no person was found.

    With ``pad`` > 0 the crop is first centred in a square canvas whose side is its longer
    side times ``1 + 2 * pad``, edges replicated outwards: BlazePose's person detector looks for
    a person with room around, which a tight, small crop lacks (GRID, PRID), and an edge
    colour adds no second person or hard border that a grey or black frame would."""
    rgb = np.asarray(img.convert("RGB"))
    h, w = rgb.shape[:2]
    px = py = 0
    height = SEG_HEIGHT
    if pad > 0:
        side = max(w, h)
        px, py = round((side - w) / 2 + side * pad), round((side - h) / 2 + side * pad)
        rgb = np.pad(rgb, ((py, py), (px, px), (0, 0)), mode="edge")
        height = PAD_SEG_HEIGHT
    big_h, big_w = rgb.shape[:2]
    big = Image.fromarray(rgb).resize((max(1, round(big_w * height / big_h)), height), Image.BILINEAR)
    res = pose.process(np.asarray(big))
    if res.segmentation_mask is None:
        return None
    m = Image.fromarray((np.clip(res.segmentation_mask, 0, 1) * 255).astype(np.uint8))
    m = np.asarray(m.resize((big_w, big_h), Image.BILINEAR), np.float32) / 255.0
    return m[py:py + h, px:px + w]


def share_by_subset(identities: Path, stems: set[str], out: Path) -> dict[str, float]:
    """Per sub-dataset of ``identities.csv``: the share of its crops (among ``stems``) that
    have a mask in ``out``; where the masks are missing decides which cameras are re-backed."""
    counts: dict[str, list[int]] = {}
    with open(identities, newline="") as f:
        for row in csv.DictReader(f):
            stem = Path(row["file"]).stem
            if stem in stems:
                c = counts.setdefault(row["subset"], [0, 0])
                c[0] += (out / f"{stem}.png").exists()
                c[1] += 1
    return {sub: round(k / n, 4) for sub, (k, n) in sorted(counts.items())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", required=True, help="folder of crops (PETA's images/)")
    ap.add_argument("--out", required=True, help="folder for <crop stem>.png masks")
    ap.add_argument("--limit", type=int, default=0, help="only the first N crops (a trial)")
    ap.add_argument("--identities", type=Path,
                    help="PETA's identities.csv (file, subset): the summary adds the share of "
                         "crops with a mask per sub-dataset")
    ap.add_argument("--pad", type=float, default=0.0,
                    help="where the crop as it is gives no plausible mask, try again centred in a "
                         "square canvas with this margin on each side, as a share of the crop's "
                         "longer side (0.5 recovers most small crops); 0: no second try")
    args = ap.parse_args(argv)
    if not 0 <= args.pad <= 2:
        ap.error(f"--pad {args.pad}: expected 0 to 2")
    if args.identities and not args.identities.is_file():    # say so now, not after the run
        ap.error(f"--identities {args.identities}: no such file")

    import mediapipe as mp
    from tqdm import tqdm

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # One failure list per try, so that a folder made without --pad is completed by a run with
    # it (only the padded try runs again) and an interrupted run of either kind resumes.
    tries = [("plain", 0.0, out / "failed.txt")]
    if args.pad:
        tries.append(("padded", args.pad, out / f"failed-pad{args.pad:g}.txt"))
    failed = {name: set(path.read_text().split()) if path.exists() else set() for name, _, path in tries}
    files = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp"})
    if args.limit:
        files = files[:args.limit]
    last = tries[-1][0]                               # a crop it failed is done for this run
    todo = [p for p in files if p.stem not in failed[last] and not (out / f"{p.stem}.png").exists()]
    with contextlib.ExitStack() as stack:
        pose = stack.enter_context(mp.solutions.pose.Pose(static_image_mode=True, enable_segmentation=True,
                                                          model_complexity=1))
        logs = {name: stack.enter_context(open(path, "a")) for name, _, path in tries}
        for p in tqdm(todo, desc="person masks", unit="crop"):
            try:
                img = Image.open(p)
                img.load()
            except OSError as e:                      # an unreadable crop: no mask, say why
                print(f"{p.name}: {e}", file=sys.stderr)
                img = None
            mask = None
            for name, pad, _ in tries:
                if p.stem in failed[name]:
                    continue                          # this try failed in an earlier run
                mask = None if img is None else segment(img, pose, pad)
                if mask is not None and plausible(mask):
                    break
                mask = None
                logs[name].write(f"{p.stem}\n")
            if mask is not None:                      # whole or not at all: a run killed while
                tmp = out / f"{p.stem}.png.part"      # saving leaves no half-written mask
                Image.fromarray((mask * 255 + 0.5).astype(np.uint8)).save(tmp, format="PNG")
                os.replace(tmp, out / f"{p.stem}.png")
    kept = sum(1 for p in files if (out / f"{p.stem}.png").exists())
    summary = {"crops": len(files), "masks": kept, "share": round(kept / max(1, len(files)), 4),
               "segmenter": "mediapipe BlazePose (model_complexity 1) segmentation",
               "seg_height": SEG_HEIGHT}
    if args.pad:
        summary.update(pad=args.pad, pad_seg_height=PAD_SEG_HEIGHT)
    if args.identities:
        summary["share_by_subset"] = share_by_subset(args.identities, {p.stem for p in files}, out)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
