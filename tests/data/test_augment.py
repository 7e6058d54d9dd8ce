"""data.augment.PixelAugment: size and mode kept, seeded, hue never changed, identity when off."""
from __future__ import annotations

import numpy as np
from PIL import Image

from personlens.data.augment import PixelAugment

W, H = 60, 120


def _noise(seed=0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8))


def test_keeps_size_and_mode():
    aug = PixelAugment()
    for seed in range(8):
        out = aug(_noise(seed), np.random.default_rng(seed))
        assert out.size == (W, H) and out.mode == "RGB"
    assert aug(_noise().convert("L"), np.random.default_rng(0)).mode == "RGB"


def test_deterministic_per_generator_seed():
    aug, img = PixelAugment(), _noise()
    a = np.asarray(aug(img, np.random.default_rng(7)))
    b = np.asarray(aug(img, np.random.default_rng(7)))
    c = np.asarray(aug(img, np.random.default_rng(8)))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_never_changes_the_dominant_colour():
    aug = PixelAugment()
    for channel in range(3):
        arr = np.zeros((H, W, 3), np.uint8)
        arr[..., channel] = 255
        img = Image.fromarray(arr)
        rng = np.random.default_rng(channel)
        for _ in range(40):
            out = np.asarray(aug(img, rng)).astype(int)
            centre = out[H // 2 - 10:H // 2 + 10, W // 2 - 5:W // 2 + 5].reshape(-1, 3)
            others = np.delete(centre, channel, axis=1)
            assert (centre[:, channel] > others.max(1) + 60).all()


def test_all_off_is_the_identity():
    off = PixelAugment(crop_area=(1.0, 1.0), aspect=(1.0, 1.0), shift=0.0, lowres_p=0.0, blur_p=0.0,
                       jpeg_p=0.0, exposure_p=0.0, flip_p=0.0)
    img = _noise(3)
    assert np.array_equal(np.asarray(off(img, np.random.default_rng(0))), np.asarray(img))
    flip = PixelAugment(**{**off.to_dict(), "flip_p": 1.0})
    assert np.array_equal(np.asarray(flip(img, np.random.default_rng(0))), np.asarray(img)[:, ::-1])
