"""Training on augmented views: ``_train_batch`` picks each row's view from the right array,
the augmented cache folder follows its recipe, ``build_augmented_cache`` reuses a cache, and
background swap re-backs a view only from another masked training crop."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from crops_testlib import write_crops
from PIL import Image

from personlens.data.augment import PixelAugment
from personlens.data.background import BackgroundMasksError
from personlens.data.images import Preprocess, load_image
from personlens.train.features import (_AugmentedImages, augmented_cache_dir_for, build_augmented_cache,
                                       load_cache)
from personlens.train.par import _train_batch


def _arrays():
    # feats[i, v] == 10 * i + v (all images, clean 0 / mirror 1); aug[j, k] == 1000 + 10 * j + k
    # (training image j, augmented view k), as (C=1, H=1, W=2) maps
    feats = (10 * np.arange(6)[:, None] + np.arange(2)[None, :]).astype(np.float16)
    aug = (1000 + 10 * np.arange(3)[:, None] + np.arange(4)[None, :]).astype(np.float16)
    return (np.repeat(feats[..., None, None, None], 2, -1), np.repeat(aug[..., None, None, None], 2, -1))


def test_rows_come_from_the_clean_or_the_augmented_views():
    feats, aug = _arrays()
    tr_idx = np.array([4, 1, 5])               # training image j is image tr_idx[j] of the cache
    b = np.array([2, 0, 1, 2, 0])
    view = np.array([0, 1, 2, 5, 3])
    h = _train_batch(feats, aug, tr_idx, b, view)
    assert h.shape == (5, 1, 1, 2) and h.dtype == feats.dtype
    assert h[:, 0, 0, 0].tolist() == [50, 41, 1010, 1023, 1001]
    assert (h[..., 0] == h[..., 1]).all()


def test_without_augmented_views_it_is_plain_indexing():
    feats, _ = _arrays()
    tr_idx, b, view = np.array([4, 1, 5]), np.array([1, 2, 0]), np.array([1, 0, 1])
    assert np.array_equal(_train_batch(feats, None, tr_idx, b, view), feats[tr_idx[b], view])
    assert _train_batch(feats, None, tr_idx, b, view)[:, 0, 0, 0].tolist() == [11, 50, 41]


class _Encoder(torch.nn.Module):
    """What the cache needs of an image encoder: a name, a preprocess and ``forward_lower``."""

    name = "fake"

    def __init__(self):
        super().__init__()
        self.preprocess = Preprocess(16, 8)
        self.calls = 0

    def forward_lower(self, x, stage):
        self.calls += 1
        return torch.nn.functional.avg_pool2d(x, 4)          # (B, 3, 4, 2)


def test_augmented_cache_dir_follows_paths_recipe_and_seed(tmp_path):
    enc, aug, paths = _Encoder(), PixelAugment(), [tmp_path / "a.png", tmp_path / "b.png"]
    base = augmented_cache_dir_for(tmp_path, enc, 3, aug, 2, 0, paths)
    assert base.parent == tmp_path and base.name.startswith("fake-16x8-s3-aug2-")
    assert augmented_cache_dir_for(tmp_path, enc, 3, aug, 2, 0, paths[::-1]) == base   # a set
    others = [augmented_cache_dir_for(tmp_path, enc, 3, aug, 2, 0, paths[:1]),
              augmented_cache_dir_for(tmp_path, enc, 3, PixelAugment(blur_p=0.0), 2, 0, paths),
              augmented_cache_dir_for(tmp_path, enc, 3, aug, 2, 1, paths),
              augmented_cache_dir_for(tmp_path, enc, 3, aug, 3, 0, paths),
              augmented_cache_dir_for(tmp_path, enc, 4, aug, 2, 0, paths)]
    assert len({base, *others}) == 6


def test_build_augmented_cache_reuses_and_rebuilds(tmp_path):
    enc, paths, out = _Encoder(), write_crops(tmp_path / "crops", 3), tmp_path / "cache"
    build_augmented_cache(enc, paths, 3, out, PixelAugment(), views=2, seed=0, batch_size=2, workers=0)
    first, meta = load_cache(out)
    first = np.array(first)
    assert first.shape == (3, 2, 3, 4, 2) and meta["views"] == 2 and enc.calls == 2
    assert not np.array_equal(first[:, 0], first[:, 1])       # two different augmentations
    build_augmented_cache(enc, paths, 3, out, PixelAugment(), views=2, seed=0, batch_size=2, workers=0)
    assert enc.calls == 2                                      # reused: nothing recomputed
    build_augmented_cache(enc, paths, 3, out, PixelAugment(blur_p=0.0), views=2, seed=0, batch_size=2,
                          workers=0)
    assert enc.calls == 4 and load_cache(out)[1]["augment"]["blur_p"] == 0.0
    build_augmented_cache(enc, paths, 3, out, PixelAugment(), views=2, seed=0, batch_size=2, workers=0)
    again, _ = load_cache(out)
    assert enc.calls == 6 and np.array_equal(np.array(again), first)   # same seed, same views


def _masked_crops(tmp_path, colours, masked):
    """Solid crops of ``colours``; a centre-column person mask for the indices in ``masked``."""
    (tmp_path / "crops").mkdir()
    (tmp_path / "masks").mkdir(exist_ok=True)
    paths = []
    for i, c in enumerate(colours):
        p = tmp_path / "crops" / f"{i:05d}.png"
        Image.fromarray(np.full((32, 16, 3), c, np.uint8)).save(p)
        paths.append(p)
        if i in masked:
            m = np.zeros((32, 16), np.uint8)
            m[4:28, 6:10] = 255
            Image.fromarray(m).save(tmp_path / "masks" / f"{i:05d}.png")
    return paths


def test_background_swap_takes_another_masked_training_crop(tmp_path):
    red, blue, green = (200, 0, 0), (0, 0, 200), (0, 200, 0)
    paths = _masked_crops(tmp_path, [red, blue, green], masked={0, 1})
    augment = PixelAugment(background_p=1.0, masks=str(tmp_path / "masks"))
    ds = _AugmentedImages(paths, Preprocess(16, 8), augment, views=2, seed=0)
    assert ds.donors == [0, 1]                               # the unmasked crop lends no background
    for seed in range(5):
        out = np.asarray(ds._reback(load_image(paths[0]), 0, np.random.default_rng(seed)))
        assert (out[16, 8] == red).all() and (out[16, 0] == blue).all()   # never its own background
    green_img = load_image(paths[2])
    assert ds._reback(green_img, 2, np.random.default_rng(0)) is green_img   # no mask: as it was
    assert ds[0].shape == (2, 3, 16, 8)
    off = _AugmentedImages(paths, Preprocess(16, 8), PixelAugment(), views=1, seed=0)
    assert off.donors == [] and off._reback(green_img, 2, np.random.default_rng(0)) is green_img


def test_background_swap_without_enough_masks_says_how_to_make_them(tmp_path):
    paths = _masked_crops(tmp_path, [(200, 0, 0), (0, 0, 200)], masked={0})
    augment = PixelAugment(background_p=0.5, masks=str(tmp_path / "masks"))
    with pytest.raises(BackgroundMasksError, match="person_masks.py"):
        _AugmentedImages(paths, Preprocess(16, 8), augment, views=1, seed=0)


def test_background_cache_dir_follows_the_set_of_masks(tmp_path):
    paths = _masked_crops(tmp_path, [(200, 0, 0), (0, 0, 200), (0, 200, 0)], masked={0, 1})
    enc, augment = _Encoder(), PixelAugment(background_p=1.0, masks=str(tmp_path / "masks"))
    before = augmented_cache_dir_for(tmp_path, enc, 3, augment, 2, 0, paths)
    assert before != augmented_cache_dir_for(tmp_path, enc, 3, PixelAugment(), 2, 0, paths)
    Image.fromarray(np.full((32, 16), 255, np.uint8)).save(tmp_path / "masks" / "00002.png")
    assert augmented_cache_dir_for(tmp_path, enc, 3, augment, 2, 0, paths) != before   # a mask more
