"""Plain helpers for the CLI tests (imported by conftest.py and the test modules)."""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from PIL import Image

# Four PETA attributes (and thresholds) for the fixture model. The thresholds are far
# apart on purpose: 0.02 makes personalMale present on (practically) every image and
# 0.98 keeps accessoryHat absent, so "present" is never empty nor everything.
FIXTURE_ATTRIBUTES = ["personalMale", "accessoryHat", "carryingBackpack", "upperBodyBlack"]
FIXTURE_THRESHOLDS = [0.02, 0.98, 0.5, 0.45]

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def noise_image(seed: int, size: tuple[int, int] = (64, 160)) -> Image.Image:
    """A person-crop-shaped (width x height) RGB noise image."""
    w, h = size
    arr = np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    return Image.fromarray(arr)


def image_bytes(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def huge_png(width: int = 9000, height: int = 9000) -> bytes:
    """A valid 1-bit grayscale PNG of width x height (all black): ~10 kB on disk."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(row * height, 6)) + chunk(b"IEND", b""))


def make_runner() -> CliRunner:
    """A CliRunner whose result keeps stdout and stderr apart (click 8.1 and 8.2+)."""
    try:
        return CliRunner(mix_stderr=False)  # click < 8.2
    except TypeError:
        return CliRunner()  # click >= 8.2: result.stdout / result.stderr are separate


def invoke(runner: CliRunner, *args):
    """Run ``personlens ARGS...`` (paths and numbers as strings); exceptions propagate."""
    from personlens.cli import main

    return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)


def write_fake_peta(root: Path, labels: np.ndarray, partition: dict[str, list[int]]) -> Path:
    """A PETA root in the layout ``personlens.data.peta`` reads: ``PETA.mat`` + ``images/``.

    ``labels``: (N, 105) 0/1 in PETA attribute order; ``partition``: 1-based image indices
    for train/val/test (written as all five partitions).
    """
    import scipy.io

    from personlens.data.schema import PETA_ATTRIBUTE_NAMES

    n = labels.shape[0]
    assert labels.shape[1] == len(PETA_ATTRIBUTE_NAMES) == 105
    idx = np.arange(1, n + 1)
    data = np.column_stack([idx, idx, np.ones(n), idx, labels]).astype(np.float64)  # N x 109
    attribute = np.empty((105, 1), dtype=object)
    for i, name in enumerate(PETA_ATTRIBUTE_NAMES):
        attribute[i, 0] = name
    parts = np.empty((5, 1), dtype=object)
    for i in range(5):
        parts[i, 0] = {k: np.asarray(v, np.float64).reshape(-1, 1) for k, v in partition.items()}
    peta = {"data": data, "attribute": attribute,
            "selected_attribute": np.arange(1, 36, dtype=np.float64).reshape(1, -1),
            "partion_attribute": parts}
    root.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(root / "PETA.mat"), {"peta": peta})
    images = root / "images"
    images.mkdir(exist_ok=True)
    for i in idx:
        noise_image(100 + int(i), size=(24, 60)).save(images / f"{i:05d}.png")
    return root
