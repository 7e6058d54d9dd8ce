"""Cached encoder tokens: ``(N, 2, T, C)`` float16, each image and its mirror image.

What attribute heads are trained and compared on when the encoder stays fixed (the head
ablation of ``train.token_heads``): every head sees exactly the same numbers, and the
encoder runs once per image instead of once per head, epoch and seed. Keyed like the
pooled caches (``pooled.cache_namespace``: the model's fingerprint and the precision), by
the list of images; written block by block into a memory-mapped file, so a 19,000-image
cache (4.7 GB) never has to fit in memory, and a killed build leaves no partial file.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..data.cache import ArrayCache
from ..data.cache import key as cache_key
from .encode import EncoderPass
from .pooled import PreprocessedImages, cache_namespace

DEFAULT_TOKEN_CACHE = Path("cache/tokens")


def token_features(model, paths: Sequence[str | Path], *, cache_root: str | Path = DEFAULT_TOKEN_CACHE,
                   batch_size: int = 64, progress: bool = True, workers: int = 0) -> np.ndarray:
    """Read-only memory map ``(N, 2, T, C)`` of the tokens of ``paths`` (view 1: mirrored)."""
    from tqdm import tqdm

    paths = [str(p) for p in paths]
    cache = ArrayCache(cache_root, cache_namespace(model))
    name = cache_key({"paths": paths, "views": 2}, sort_keys=False)
    arr = cache.load(name, shape=(len(paths), 2, None, None), dtype=np.float16, mmap=True)
    if arr is not None:
        return arr
    enc = EncoderPass(model)
    loader = torch.utils.data.DataLoader(PreprocessedImages(paths, enc.preprocess),
                                         batch_size=batch_size, num_workers=workers)
    bar = tqdm(total=len(paths), desc="caching tokens", unit="img", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    done = 0
    try:
        with cache.writing(name, len(paths), np.float16) as w:
            for x in loader:
                b = x.shape[0]
                t = enc(x, mirror=True, probs=False).tokens.float()        # (2b, T, C)
                w.put(done, torch.stack([t[:b], t[b:]], 1).numpy().astype(np.float16))
                done += b
                bar.update(b)
    finally:
        bar.close()
    cache.save_meta(name, {"paths": paths, "views": 2})
    return cache.load(name, mmap=True)
