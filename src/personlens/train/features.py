"""Feature caches: run the frozen lower stages of an image encoder once, store the result.

Training the top of the encoder and the heads then reads these arrays instead of images,
which is what makes training on a 2-core CPU take minutes instead of hours.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..data.images import load_image
from ..models.image_encoders import ImageEncoder


class _Images(torch.utils.data.Dataset):
    def __init__(self, paths, preprocess):
        self.paths, self.preprocess = paths, preprocess

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        img = load_image(self.paths[i])
        return torch.stack([self.preprocess(img), self.preprocess(img, flip=True)])


def cache_dir_for(root: Path, encoder: ImageEncoder, stage: int) -> Path:
    p = encoder.preprocess
    return Path(root) / f"{encoder.name}-{p.height}x{p.width}-s{stage}"


def build_cache(encoder: ImageEncoder, paths: list[Path], stage: int, out_dir: Path,
                batch_size: int = 64, workers: int = 1) -> Path:
    """Write ``lower.npy`` (N, 2, C, H, W) float16: features of each image and its mirror."""
    out_dir = Path(out_dir)
    meta_path = out_dir / "meta.json"
    meta = {"encoder": encoder.name, "stage": stage, "preprocess": encoder.preprocess.to_dict(),
            "paths": [str(Path(p).resolve()) for p in paths]}
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        same = all(old.get(k) == meta[k] for k in ("encoder", "stage", "preprocess"))
        if same and set(meta["paths"]) <= set(old["paths"]):
            return out_dir  # an earlier cache already covers these images
    out_dir.mkdir(parents=True, exist_ok=True)
    encoder = encoder.eval().to(memory_format=torch.channels_last)
    loader = torch.utils.data.DataLoader(_Images(paths, encoder.preprocess), batch_size=batch_size,
                                         num_workers=workers)
    arr = None
    n = 0
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        for x in tqdm(loader, desc=f"caching {encoder.name} stage {stage}", unit="batch"):
            b = x.shape[0]
            h = encoder.forward_lower(x.flatten(0, 1).contiguous(memory_format=torch.channels_last), stage)
            h = h.float().reshape(b, 2, *h.shape[1:]).numpy().astype(np.float16)
            if arr is None:
                arr = np.lib.format.open_memmap(out_dir / "lower.npy.tmp", mode="w+",
                                                dtype=np.float16, shape=(len(paths), *h.shape[1:]))
            arr[n:n + b] = h
            n += b
    arr.flush()
    del arr
    (out_dir / "lower.npy.tmp").replace(out_dir / "lower.npy")
    meta_path.write_text(json.dumps(meta))
    return out_dir


def load_cache(out_dir: Path) -> tuple[np.ndarray, dict]:
    out_dir = Path(out_dir)
    meta = json.loads((out_dir / "meta.json").read_text())
    return np.load(out_dir / "lower.npy", mmap_mode="r"), meta
