"""Safe image decoding and the resize/normalise step every encoder config describes.

Every failure becomes an ``ImageLoadError`` with a one-line reason, so callers can
report one bad file and carry on with the rest.
"""
from __future__ import annotations

import io
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

# Person crops are small; anything far beyond this is a mistake or an attack.
MAX_PIXELS = 40_000_000
# file endings taken for images when a folder is listed (the CLI's inputs, unlabelled crops)
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
MAX_BYTES = 50 * 1024 * 1024


class ImageLoadError(ValueError):
    """An input that cannot be decoded into an RGB image."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


def images_in(folder: str | Path, unreadable: list[Path] | None = None) -> list[Path]:
    """The image files under ``folder`` (recursively, by file ending), sorted. Folders that
    cannot be listed are appended to ``unreadable`` when it is given (else skipped)."""
    found = []
    onerror = None if unreadable is None else (lambda e: unreadable.append(Path(e.filename)))
    for top, _dirs, files in os.walk(folder, onerror=onerror):
        found.extend(Path(top) / f for f in files if Path(f).suffix.lower() in IMAGE_EXTENSIONS)
    return sorted(f for f in found if f.is_file())


def decode_image(data: bytes, source: str = "<bytes>", max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode bytes into a fully loaded RGB image or raise ImageLoadError."""
    if len(data) == 0:
        raise ImageLoadError(source, "empty file (0 bytes)")
    if len(data) > MAX_BYTES:
        raise ImageLoadError(source, f"file too large ({len(data)} bytes > {MAX_BYTES})")
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x its limit; we refuse at 1x.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > max_pixels:
                raise ImageLoadError(source, f"image too large ({w}x{h} > {max_pixels} pixels)")
            if w < 1 or h < 1:
                raise ImageLoadError(source, f"image has no pixels ({w}x{h})")
            img.load()
            return img.convert("RGB")
    except ImageLoadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageLoadError(source, f"image too large ({e})") from None
    except UnidentifiedImageError:
        raise ImageLoadError(source, "not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageLoadError(source, f"corrupt image ({e})") from None


def read_image_bytes(path: str | Path) -> bytes:
    """The raw bytes of an image file, or ImageLoadError (missing, a directory, unreadable:
    also a file in a folder that cannot be entered, and a folder that cannot be listed)."""
    path = Path(path)
    try:
        is_dir = stat.S_ISDIR(path.stat().st_mode)
    except (FileNotFoundError, NotADirectoryError):
        raise ImageLoadError(str(path), "no such file") from None
    except OSError as e:
        raise ImageLoadError(str(path), f"cannot read ({e.strerror or e})") from None
    if is_dir:
        try:
            with os.scandir(path):
                pass
        except OSError as e:
            raise ImageLoadError(str(path), f"cannot read folder ({e.strerror or e})") from None
        raise ImageLoadError(str(path), "is a directory, not an image")
    try:
        return path.read_bytes()
    except OSError as e:
        raise ImageLoadError(str(path), f"cannot read ({e.strerror or e})") from None


def load_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> Image.Image:
    return decode_image(read_image_bytes(path), str(path), max_pixels)


@dataclass(frozen=True)
class Preprocess:
    """Resize to (height, width) and normalise; stored with each encoder's weights."""

    height: int
    width: int
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __call__(self, img: Image.Image, flip: bool = False) -> torch.Tensor:
        img = img.resize((self.width, self.height), Image.BILINEAR)
        if flip:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        arr = np.asarray(img, dtype=np.float32) / 255.0
        arr = (arr - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return torch.from_numpy(arr.transpose(2, 0, 1).copy())

    def to_dict(self) -> dict:
        return {"height": self.height, "width": self.width,
                "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocess":
        return cls(int(d["height"]), int(d["width"]), tuple(d["mean"]), tuple(d["std"]))
