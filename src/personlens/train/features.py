"""Feature caches: run the frozen lower stages of an image encoder once, store the result.

Training the top of the encoder and the heads then reads these arrays instead of images,
which is what makes training on a 2-core CPU take minutes instead of hours.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..data.cache import ArrayCache
from ..data.images import load_image
from ..models.image_encoders import ImageEncoder
from ..inference.encode import resolve_precision


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
    cache = ArrayCache(out_dir)
    meta = {"encoder": encoder.name, "stage": stage, "preprocess": encoder.preprocess.to_dict(),
            "paths": [str(Path(p).resolve()) for p in paths]}
    old = cache.load_meta("meta")
    if old is not None and _load_lower(cache, old) is not None:
        same = all(old.get(k) == meta[k] for k in ("encoder", "stage", "preprocess"))
        if same and set(meta["paths"]) <= set(old["paths"]):
            return out_dir  # an earlier cache already covers these images
    cache.meta_path("meta").unlink(missing_ok=True)   # it describes the old array
    encoder = encoder.eval().to(memory_format=torch.channels_last)
    loader = torch.utils.data.DataLoader(_Images(paths, encoder.preprocess), batch_size=batch_size,
                                         num_workers=workers)
    n = 0
    with cache.writing("lower", len(paths), np.float16) as out, torch.inference_mode(), \
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=resolve_precision("auto") == "bf16"):
        for x in tqdm(loader, desc=f"caching {encoder.name} stage {stage}", unit="batch"):
            b = x.shape[0]
            h = encoder.forward_lower(x.flatten(0, 1).contiguous(memory_format=torch.channels_last), stage)
            out.put(n, h.float().reshape(b, 2, *h.shape[1:]).numpy().astype(np.float16))
            n += b
    cache.save_meta("meta", meta)
    return out_dir


def load_cache(out_dir: Path) -> tuple[np.ndarray, dict]:
    """(memory-mapped ``lower.npy``, its metadata); ``FileNotFoundError`` when ``out_dir``
    holds no complete cache."""
    cache = ArrayCache(out_dir)
    meta = cache.load_meta("meta")
    feats = None if meta is None else _load_lower(cache, meta)
    if feats is None:
        raise FileNotFoundError(f"no complete feature cache in {out_dir}")
    return feats, meta


def _load_lower(cache: ArrayCache, meta: dict) -> np.ndarray | None:
    """``lower.npy`` memory-mapped, if it has a row per path of ``meta``."""
    return cache.load("lower", shape=(len(meta.get("paths", ())), 2, None, None, None), mmap=True)
