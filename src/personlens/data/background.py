"""Background swap: a person pasted in front of another training crop's background.

Each PETA sub-dataset films its people in front of the same few corridors, floors and walls,
so a model can learn "this floor, so trousers" as well as the person; a camera never seen
brings other backgrounds. Re-backing crops during training breaks that link (the re-ID
literature's background-bias augmentations, e.g. Tian et al., CVPR 2018). The person's own
pixels, and so every colour attribute, are kept.

The masks come from ``scripts/person_masks.py`` (one soft PNG per crop, named by the crop's
stem; crops without a plausible mask are never re-backed). The mask is grown by a few
pixels first, so that hair, loose clothes and a bag at the edge stay with the person; the
donor crop's own person is painted out (OpenCV's Telea inpainting) before it becomes the
background.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageFilter

__all__ = ["BackgroundMasksError", "PersonMasks", "swap_background"]


class BackgroundMasksError(ValueError):
    """The person masks cannot serve: no folder, or too few of the training crops' masks."""


class PersonMasks:
    """The folder of masks written by ``scripts/person_masks.py``, looked up by crop path."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise BackgroundMasksError(f"no person-mask folder {self.folder}: make it with "
                                       "scripts/person_masks.py")
        self._stems = {p.stem for p in self.folder.glob("*.png")}

    def stems(self) -> list[str]:
        """The crops that have a mask (a cache built on them keys on this list: a folder that
        was still being filled, then completed, gives another cache)."""
        return sorted(self._stems)

    def has(self, path: str | Path) -> bool:
        return Path(path).stem in self._stems

    def get(self, path: str | Path, size: tuple[int, int]) -> np.ndarray | None:
        """The mask of crop ``path`` in [0, 1] at ``size`` (width, height), or None."""
        if not self.has(path):
            return None
        file = self.folder / f"{Path(path).stem}.png"
        try:
            m = Image.open(file).convert("L")
        except OSError as e:   # a cut write or a damaged disk: say which file, do not guess
            raise BackgroundMasksError(f"unreadable person mask {file} ({e}): delete it and re-run "
                                       "scripts/person_masks.py") from None
        if m.size != size:
            m = m.resize(size, Image.BILINEAR)
        return np.asarray(m, np.float32) / 255.0


def _grow(mask: np.ndarray, pixels: int, feather: float) -> np.ndarray:
    """``mask`` dilated by ``pixels`` (a max filter) and its edge softened outwards only (the
    person's own pixels stay whole, however thin a limb)."""
    m = Image.fromarray((mask * 255).astype(np.uint8))
    if pixels > 0:
        m = m.filter(ImageFilter.MaxFilter(2 * pixels + 1))
    out = np.asarray(m, np.float32) / 255.0
    if feather > 0:
        out = np.maximum(out, np.asarray(m.filter(ImageFilter.GaussianBlur(feather)), np.float32) / 255.0)
    return out


def swap_background(img: Image.Image, mask: np.ndarray, donor: Image.Image, donor_mask: np.ndarray | None,
                    grow: float = 0.06, feather: float = 1.5) -> Image.Image:
    """``img``'s person (``mask``, same size, in [0, 1]) in front of ``donor``'s background.

    ``grow`` is the dilation as a fraction of the crop's width; ``donor_mask`` (at the donor's
    size) marks the donor's person, painted out first (None: the donor is used as it is)."""
    img = img.convert("RGB")
    w, h = img.size
    bg = np.asarray(donor.convert("RGB").resize((w, h), Image.BILINEAR))
    if donor_mask is not None:
        dm = np.asarray(Image.fromarray((donor_mask * 255).astype(np.uint8)).resize((w, h), Image.BILINEAR))
        hole = (_grow(dm / 255.0, max(1, round(grow * w)), 0) > 0.3).astype(np.uint8)
        bg = cv2.inpaint(np.ascontiguousarray(bg), hole, 3, cv2.INPAINT_TELEA)
    alpha = _grow(mask, round(grow * w), feather)[..., None]
    out = alpha * np.asarray(img, np.float32) + (1 - alpha) * bg.astype(np.float32)
    return Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8))
