"""Background swap: the person's pixels stay, the rest comes from the donor with its own
person painted out; masks are looked up by crop stem; the switch stays out of old cache keys."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from personlens.data.augment import PixelAugment
from personlens.data.background import BackgroundMasksError, PersonMasks, swap_background

W, H = 24, 48


def _solid(rgb, box=None, box_rgb=None) -> Image.Image:
    a = np.zeros((H, W, 3), np.uint8) + np.array(rgb, np.uint8)
    if box is not None:
        x0, y0, x1, y1 = box
        a[y0:y1, x0:x1] = box_rgb
    return Image.fromarray(a)


def _mask(box) -> np.ndarray:
    m = np.zeros((H, W), np.float32)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = 1.0
    return m


def test_person_kept_background_from_the_donor_without_its_person():
    person_box = (8, 6, 16, 42)
    img = _solid((0, 0, 0), person_box, (200, 30, 30))                 # a red person on black
    donor = _solid((20, 20, 220), person_box, (20, 200, 20))           # a green person on blue
    out = np.asarray(swap_background(img, _mask(person_box), donor, _mask(person_box), grow=0.0,
                                     feather=0.0))
    assert out.shape == (H, W, 3)
    assert (out[10:38, 10:14] == (200, 30, 30)).all()                  # the person, untouched
    assert (np.abs(out[:, :4].astype(int) - (20, 20, 220)).max(-1) <= 2).all()   # donor's wall
    assert (out[..., 1] < 120).all()                                   # no trace of the green person


def test_grown_mask_keeps_a_margin_of_the_own_picture():
    person_box = (8, 6, 16, 42)
    img = _solid((0, 0, 0), person_box, (200, 30, 30))
    out = np.asarray(swap_background(img, _mask(person_box), _solid((20, 20, 220)), None,
                                     grow=2 / W, feather=0.0))
    assert (out[20, 6:8] == 0).all()              # 2 pixels of the original (black) beside the person
    assert (out[20, :5] == (20, 20, 220)).all()   # then the donor
    assert (out[20, 8:16] == (200, 30, 30)).all()


def test_person_masks_by_stem_and_resized(tmp_path):
    Image.fromarray(np.full((10, 5), 255, np.uint8)).save(tmp_path / "00012.png")
    masks = PersonMasks(tmp_path)
    assert masks.has("/anywhere/00012.jpg") and not masks.has("00013.png")
    m = masks.get("x/00012.png", (W, H))
    assert m.shape == (H, W) and m.dtype == np.float32 and m.min() == 1.0
    assert masks.get("00013.png", (W, H)) is None
    with pytest.raises(BackgroundMasksError, match="person_masks.py"):
        PersonMasks(tmp_path / "missing")
    (tmp_path / "00014.png").write_bytes(b"cut short")
    with pytest.raises(BackgroundMasksError, match="unreadable person mask .*00014.png"):
        PersonMasks(tmp_path).get("00014.jpg", (W, H))


def test_background_fields_stay_out_of_the_cache_key_when_off():
    assert "background_p" not in PixelAugment().to_dict()
    assert PixelAugment().to_dict() == PixelAugment(masks="m").to_dict()     # off: masks ignored
    on = PixelAugment(background_p=0.5, masks="m").to_dict()
    assert on["background_p"] == 0.5 and on["masks"] == "m" and on["background_grow"] == 0.06
    assert PixelAugment(**on).to_dict() == on                                # read back from JSON
