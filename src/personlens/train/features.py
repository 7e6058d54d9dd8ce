"""Feature caches: run the frozen lower stages of an image encoder once, store the result.

Training the top of the encoder and the heads then reads these arrays instead of images,
which is what makes training on a 2-core CPU take minutes instead of hours.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..data.augment import PixelAugment
from ..data.background import BackgroundMasksError, PersonMasks, swap_background
from ..data.cache import ArrayCache, key
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


class _AugmentedImages(torch.utils.data.Dataset):
    """``views`` augmented copies of each image; image ``i``'s generator is seeded by
    ``(seed, i)``, so the copies do not depend on batch order or worker processes.

    With ``augment.background_p``, a view of a crop that has a mask is first re-backed with
    that probability: the donor is another crop of ``paths`` with a mask, so the backgrounds come from the
    training cameras only (never from a fold's held-out ones)."""

    def __init__(self, paths, preprocess, augment: PixelAugment, views: int, seed: int):
        self.paths, self.preprocess = paths, preprocess
        self.augment, self.views, self.seed = augment, views, seed
        self.masks, self.donors = None, []
        if augment.background_p > 0:
            self.masks = PersonMasks(augment.masks)
            self.donors = [j for j, p in enumerate(paths) if self.masks.has(p)]
            if len(self.donors) < 2:
                raise BackgroundMasksError(
                    f"background swap needs person masks of at least 2 training crops; "
                    f"{augment.masks} has {len(self.donors)}: make them with scripts/person_masks.py")

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        img = load_image(self.paths[i])
        rng = np.random.default_rng([self.seed, i])
        return torch.stack([self.preprocess(self.augment(self._reback(img, i, rng), rng))
                            for _ in range(self.views)])

    def _reback(self, img, i: int, rng: np.random.Generator):
        if not self.donors or rng.random() >= self.augment.background_p:
            return img
        mask = self.masks.get(self.paths[i], img.size)
        if mask is None:
            return img
        k = rng.integers(len(self.donors))
        if self.donors[k] == i:                 # never its own background: the next masked crop
            k = (k + 1) % len(self.donors)
        j = self.donors[k]
        donor = load_image(self.paths[j])
        return swap_background(img, mask, donor, self.masks.get(self.paths[j], donor.size),
                               self.augment.background_grow)


def cache_dir_for(root: Path, encoder: ImageEncoder, stage: int) -> Path:
    p = encoder.preprocess
    return Path(root) / f"{encoder.name}-{p.height}x{p.width}-s{stage}"


def augmented_cache_dir_for(root: Path, encoder: ImageEncoder, stage: int, augment: PixelAugment,
                            views: int, seed: int, paths: list[Path]) -> Path:
    """One folder per recipe and image list (a fold's training images)."""
    base = cache_dir_for(root, encoder, stage)
    images = key(sorted(str(Path(p).resolve()) for p in paths), digest_size=4)
    recipe = [augment.to_dict(), seed]
    if augment.background_p:
        recipe.append(PersonMasks(augment.masks).stems())
    return base.with_name(f"{base.name}-aug{views}-{key(*recipe, digest_size=4)}-{images}")


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
    _write_views(encoder, _Images(paths, encoder.preprocess), stage, cache, batch_size, workers,
                 f"caching {encoder.name} stage {stage}")
    cache.save_meta("meta", meta)
    return out_dir


def build_augmented_cache(encoder: ImageEncoder, paths: list[Path], stage: int, out_dir: Path,
                          augment: PixelAugment, views: int, seed: int = 0,
                          batch_size: int = 32, workers: int = 1) -> Path:
    """Like ``build_cache``, with ``views`` pixel-augmented copies of each image (``lower.npy``
    of shape (N, views, C, H, W)): the top stages then train on framings, resolutions,
    compressions and exposures that PETA's cameras never had."""
    out_dir = Path(out_dir)
    cache = ArrayCache(out_dir)
    meta = {"encoder": encoder.name, "stage": stage, "preprocess": encoder.preprocess.to_dict(),
            "augment": augment.to_dict(), "views": views, "seed": seed,
            "paths": [str(Path(p).resolve()) for p in paths]}
    old = cache.load_meta("meta")
    if old is not None and old.get("paths") == meta["paths"] \
            and all(old.get(k) == meta[k] for k in meta if k != "paths") \
            and _load_lower(cache, old, views) is not None:
        return out_dir
    cache.meta_path("meta").unlink(missing_ok=True)
    _write_views(encoder, _AugmentedImages(paths, encoder.preprocess, augment, views, seed), stage,
                 cache, batch_size, workers, f"caching {views} augmented views")
    cache.save_meta("meta", meta)
    return out_dir


def _write_views(encoder, dataset, stage, cache, batch_size, workers, desc) -> None:
    encoder = encoder.eval().to(memory_format=torch.channels_last)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    n = 0
    with cache.writing("lower", len(dataset), np.float16) as out, torch.inference_mode(), \
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=resolve_precision("auto") == "bf16"):
        for x in tqdm(loader, desc=desc, unit="batch"):
            b, v = x.shape[:2]
            h = encoder.forward_lower(x.flatten(0, 1).contiguous(memory_format=torch.channels_last), stage)
            out.put(n, h.float().reshape(b, v, *h.shape[1:]).numpy().astype(np.float16))
            n += b


def augmented_views(encoder: ImageEncoder, paths: list[Path], stage: int, cache_root: str | Path,
                    augment: PixelAugment, views: int, seed: int) -> np.ndarray:
    """``views`` pixel-augmented views of each of ``paths`` ``(N, views, C, H, W)``, in RAM:
    from their cache folder (``augmented_cache_dir_for``), built first when missing."""
    out = augmented_cache_dir_for(Path(cache_root), encoder, stage, augment, views, seed, paths)
    build_augmented_cache(encoder, paths, stage, out, augment, views, seed)
    return np.ascontiguousarray(load_cache(out)[0])


def pick_views(feats: np.ndarray, rows: np.ndarray, aug: np.ndarray | None, aug_rows: np.ndarray,
               view: np.ndarray) -> np.ndarray:
    """One cached view per row: ``view`` 0 (clean) and 1 (mirror) from ``feats[rows]``, 2.. the
    augmented views ``aug[aug_rows, view - 2]`` (the augmented cache holds only the training
    images, so its rows are numbered apart)."""
    if aug is None:
        return feats[rows, view]
    h = np.empty((len(rows), *feats.shape[2:]), feats.dtype)
    clean = view < 2
    h[clean] = feats[rows[clean], view[clean]]
    h[~clean] = aug[aug_rows[~clean], view[~clean] - 2]
    return h


def load_cache(out_dir: Path) -> tuple[np.ndarray, dict]:
    """(memory-mapped ``lower.npy``, its metadata); ``FileNotFoundError`` when ``out_dir``
    holds no complete cache."""
    cache = ArrayCache(out_dir)
    meta = cache.load_meta("meta")
    feats = None if meta is None else _load_lower(cache, meta, meta.get("views", 2))
    if feats is None:
        raise FileNotFoundError(f"no complete feature cache in {out_dir}")
    return feats, meta


def _load_lower(cache: ArrayCache, meta: dict, views: int = 2) -> np.ndarray | None:
    """``lower.npy`` memory-mapped, if it has a row of ``views`` per path of ``meta``."""
    return cache.load("lower", shape=(len(meta.get("paths", ())), views, None, None, None), mmap=True)
