"""Safe decoding (every bad input -> ImageLoadError with a reason) and Preprocess."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from personlens.data.images import ImageLoadError, Preprocess, decode_image, load_image


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _jpeg_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _noise(w=32, h=48, seed=0) -> Image.Image:
    arr = np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    return Image.fromarray(arr)


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose (valid) IHDR claims width x height, then IEND: no pixel data at all."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
            + struct.pack(">I", zlib.crc32(chunk) & 0xFFFFFFFF)
            + b"\x00\x00\x00\x00IEND" + struct.pack(">I", zlib.crc32(b"IEND")))


def test_valid_png_roundtrip(tmp_path):
    img = _noise()
    p = tmp_path / "ok.png"
    p.write_bytes(_png_bytes(img))
    out = load_image(p)
    assert out.mode == "RGB" and out.size == (32, 48)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(img))


def test_grey_and_rgba_become_rgb():
    for mode in ("L", "RGBA", "P"):
        out = decode_image(_png_bytes(_noise().convert(mode)))
        assert out.mode == "RGB"


def test_zero_byte_file(tmp_path):
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty file") as e:
        load_image(p)
    assert e.value.source == str(p)


def test_random_bytes():
    data = np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    with pytest.raises(ImageLoadError, match="not an image") as e:
        decode_image(data, "noise.bin")
    assert e.value.source == "noise.bin"
    assert str(e.value).startswith("noise.bin: ")


def test_truncated_jpeg(tmp_path):
    data = _jpeg_bytes(_noise(64, 128))
    p = tmp_path / "cut.jpg"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="corrupt image") as e:
        load_image(p)
    assert "truncated" in e.value.reason


def test_directory(tmp_path):
    with pytest.raises(ImageLoadError, match="is a directory"):
        load_image(tmp_path)


def test_missing_path(tmp_path):
    with pytest.raises(ImageLoadError, match="no such file"):
        load_image(tmp_path / "nope.png")


def test_header_claiming_huge_size_is_refused_before_decoding():
    with pytest.raises(ImageLoadError, match="image too large"):
        decode_image(_png_header(100_000, 100_000))
    # just over our own limit but under Pillow's bomb threshold: refused by our check
    with pytest.raises(ImageLoadError, match=r"image too large \(8000x6000 > 40000000"):
        decode_image(_png_header(8000, 6000))


def test_max_pixels_argument(tmp_path):
    p = tmp_path / "ok.png"
    p.write_bytes(_png_bytes(_noise(32, 48)))
    with pytest.raises(ImageLoadError, match=r"32x48 > 1000 pixels"):
        load_image(p, max_pixels=1000)
    assert load_image(p, max_pixels=32 * 48).size == (32, 48)


def test_preprocess_shape_and_normalisation():
    pre = Preprocess(height=64, width=32)
    x = pre(Image.new("RGB", (50, 70), (255, 0, 128)))
    assert x.shape == (3, 64, 32) and x.dtype == torch.float32
    mean, std = np.array(pre.mean), np.array(pre.std)
    expected = (np.array([1.0, 0.0, 128 / 255]) - mean) / std
    for c in range(3):
        torch.testing.assert_close(x[c], torch.full((64, 32), float(expected[c])))


def test_preprocess_flip_mirrors_width():
    img = _noise(16, 24, seed=3)
    pre = Preprocess(height=24, width=16, mean=(0.5,) * 3, std=(0.5,) * 3)
    x, xf = pre(img), pre(img, flip=True)
    assert not torch.equal(x, xf)
    torch.testing.assert_close(xf, x.flip(-1))
    # same size: resize is the identity, so values are exactly (v/255 - 0.5) / 0.5
    torch.testing.assert_close(x, torch.from_numpy(np.asarray(img, np.float32) / 127.5 - 1)
                               .permute(2, 0, 1))


def test_preprocess_dict_roundtrip():
    pre = Preprocess(height=352, width=176, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    assert Preprocess.from_dict(pre.to_dict()) == pre
