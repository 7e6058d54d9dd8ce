"""Pixel-level augmentation of person crops: what other cameras do to a picture.

Training on one dataset teaches a model that dataset's cameras: their framing, resolution,
compression and exposure. Each operation here imitates one way a new camera differs:

- framing: a random crop of 80-100 % of the area with a different aspect, shifted so that a
  part may fall outside the picture (filled with black, as a detector's padded box is);
- resolution: down-sampled to 25-80 % and back up (distant people, cheap sensors);
- optics and motion: a Gaussian blur;
- compression: JPEG at quality 20-90;
- exposure: brightness, contrast and gamma, equal on the three channels;
- background (opt-in, ``background_p``): the person in front of another training crop's
  background (``data/background.py``; the caller holds the masks and picks the donor).

No operation changes hue or saturation, and exposure stays moderate, so no colour attribute
("red upper body", "white shoes") can be flipped by an augmentation while its label stays.
Each image's operations come from its own ``numpy`` generator, so a cache built twice with
the same seed is the same.
"""
from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageFilter

__all__ = ["PixelAugment"]

_BACKGROUND_FIELDS = ("background_p", "masks", "background_grow")


@dataclass(frozen=True)
class PixelAugment:
    crop_area: tuple[float, float] = (0.8, 1.0)
    aspect: tuple[float, float] = (0.8, 1.25)       # width/height change of the crop box
    shift: float = 0.08                             # largest shift, a fraction of the side
    lowres_p: float = 0.5
    lowres_scale: tuple[float, float] = (0.25, 0.8)
    blur_p: float = 0.3
    blur_radius: tuple[float, float] = (0.3, 1.5)
    jpeg_p: float = 0.5
    jpeg_quality: tuple[int, int] = (20, 90)
    exposure_p: float = 0.8
    brightness: tuple[float, float] = (0.7, 1.3)
    contrast: tuple[float, float] = (0.7, 1.3)
    gamma: tuple[float, float] = (0.75, 1.35)
    flip_p: float = 0.5
    background_p: float = 0.0       # share of the augmented views of a masked crop re-backed; 0: off
    masks: str = ""                 # person-mask folder (scripts/person_masks.py) for background_p
    background_grow: float = 0.06   # mask dilation, a fraction of the width: keeps bags and hair

    def to_dict(self) -> dict:
        """As JSON reads it back (lists, not tuples): cache metadata compares equal. Without
        background swap the background fields are left out, so the recipes cached before
        they existed keep their cache keys."""
        d = json.loads(json.dumps(asdict(self)))
        if not self.background_p:
            for k in _BACKGROUND_FIELDS:
                d.pop(k)
        return d

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        img = img.convert("RGB")
        w, h = img.size
        img = self._frame(img, rng).resize((w, h), Image.BILINEAR)
        if rng.random() < self.lowres_p:
            s = rng.uniform(*self.lowres_scale)
            small = (max(4, round(w * s)), max(4, round(h * s)))
            img = img.resize(small, Image.BOX).resize((w, h), Image.BILINEAR)
        if rng.random() < self.blur_p:
            img = img.filter(ImageFilter.GaussianBlur(rng.uniform(*self.blur_radius)))
        if rng.random() < self.jpeg_p:
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1)))
            img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
        if rng.random() < self.exposure_p:
            img = self._exposure(img, rng)
        if rng.random() < self.flip_p:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        return img

    def _frame(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        w, h = img.size
        area = rng.uniform(*self.crop_area)
        ratio = rng.uniform(*self.aspect)
        cw, ch = w * np.sqrt(area * ratio), h * np.sqrt(area / ratio)
        cw, ch = min(cw, w * 1.1), min(ch, h * 1.1)
        x0 = (w - cw) / 2 + rng.uniform(-self.shift, self.shift) * w
        y0 = (h - ch) / 2 + rng.uniform(-self.shift, self.shift) * h
        return img.crop(tuple(int(round(v)) for v in (x0, y0, x0 + cw, y0 + ch)))

    def _exposure(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        x = np.asarray(img, np.float32) / 255.0
        x = x ** rng.uniform(*self.gamma)
        mean = x.mean()
        x = (x - mean) * rng.uniform(*self.contrast) + mean
        x = x * rng.uniform(*self.brightness)
        return Image.fromarray((np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8))
