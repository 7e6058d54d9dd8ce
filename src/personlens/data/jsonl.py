"""Image-text pairs in PersonVLM / MSP60K-style JSONL: one JSON object per line,

    {"image": "imgs/000001.jpg", "answer": "The image shows a young female adult ..."}

Image paths are relative to the folder of the JSONL file (absolute paths are kept). Blank
lines are skipped; every other problem is a :class:`JsonlError` naming the file and line
("train.jsonl:17: missing key 'answer'"). Other keys (``question``, ids, ...) are ignored.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

IMAGE_KEY, TEXT_KEY = "image", "answer"


class JsonlError(ValueError):
    """A JSONL line that cannot be used (file:line: reason)."""

    def __init__(self, path: str | Path, line: int, reason: str):
        super().__init__(f"{path}:{line}: {reason}")
        self.path, self.line, self.reason = str(path), line, reason


@dataclass(frozen=True)
class TextPair:
    image: Path
    text: str
    line: int  # 1-based line number in the JSONL file


def read_jsonl(path: str | Path, image_key: str = IMAGE_KEY, text_key: str = TEXT_KEY,
               check_images: bool = False, on_error: str = "raise",
               errors: list[JsonlError] | None = None) -> list[TextPair]:
    """All pairs in a JSONL file.

    ``check_images``: also require each image file to exist. ``on_error="skip"`` drops bad
    lines instead of raising (they are appended to ``errors`` when a list is given).
    """
    if on_error not in ("raise", "skip"):
        raise ValueError("on_error must be 'raise' or 'skip'")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such JSONL file")
    base = path.resolve().parent
    out: list[TextPair] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise JsonlError(path, 0, f"not UTF-8 text ({e.reason})") from None
    for n, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            out.append(_parse_line(raw, path, n, base, image_key, text_key, check_images))
        except JsonlError as e:
            if on_error == "raise":
                raise
            if errors is not None:
                errors.append(e)
    return out


def _parse_line(raw: str, path: Path, n: int, base: Path, image_key: str, text_key: str,
                check_images: bool) -> TextPair:
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as e:
        raise JsonlError(path, n, f"invalid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(obj, dict):
        raise JsonlError(path, n, f"expected a JSON object, got {type(obj).__name__}")
    for key in (image_key, text_key):
        if key not in obj:
            raise JsonlError(path, n, f"missing key {key!r}")
        if not isinstance(obj[key], str):
            raise JsonlError(path, n, f"{key!r} must be a string, got {type(obj[key]).__name__}")
        if not obj[key].strip():
            raise JsonlError(path, n, f"{key!r} is empty")
    image = Path(obj[image_key])
    image = image if image.is_absolute() else base / image
    if check_images and not image.is_file():
        raise JsonlError(path, n, f"image not found: {image}")
    return TextPair(image=image, text=obj[text_key].strip(), line=n)


def write_jsonl(pairs, path: str | Path, image_key: str = IMAGE_KEY, text_key: str = TEXT_KEY) -> Path:
    """Write ``(image, text)`` pairs; image paths inside the JSONL's folder are made relative."""
    path = Path(path)
    base = path.resolve().parent
    with path.open("w", encoding="utf-8") as f:
        for image, text in pairs:
            image = Path(image)
            try:
                image = image.resolve().relative_to(base)
            except ValueError:
                pass
            f.write(json.dumps({image_key: str(image), text_key: text}) + "\n")
    return path
