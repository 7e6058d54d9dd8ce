"""Multi-object-tracking boxes in the MOTChallenge text format ("2D MOT 2015"), one box a line:

    frame, id, left, top, width, height, score_or_flag, x, y, z

``frame`` is 1-based. In ground truth (``gt.txt``) column 7 is a flag (1 = scored, 0 = ignore);
in tracker output it is a confidence score. ``x, y, z`` are world coordinates, -1 when unknown.

:func:`read_mot` returns an ``(N, 10)`` float64 array in that column order; :func:`write_mot`
writes tracker output. Every problem with a file is a :class:`MotFormatError` naming the file
and the 1-based line ("gt.txt:17: width and height must be > 0, got 0 x 40").
"""
from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

NUM_COLUMNS = 10
MIN_COLUMNS = 6  # frame, id and the box; score/flag and world coordinates default to -1
FRAME, TRACK_ID, LEFT, TOP, WIDTH, HEIGHT, SCORE = range(7)


class MotFormatError(ValueError):
    """A MOTChallenge line that cannot be used (file:line: reason)."""

    def __init__(self, path: str | Path, line: int, reason: str):
        super().__init__(f"{path}:{line}: {reason}")
        self.path, self.line, self.reason = str(path), line, reason


def read_mot(path: str | Path, *, scored_only: bool = False) -> np.ndarray:
    """All boxes of a MOTChallenge file as an ``(N, 10)`` float64 array, in file order.

    Blank lines and spaces around fields are ignored; fields are comma-separated (or
    whitespace-separated when a line has no comma). Lines with 6 to 10 columns are accepted,
    missing trailing columns read as -1. ``scored_only`` keeps the rows whose column 7 is not 0,
    i.e. for ground truth the boxes the benchmark scores (for tracker output: score != 0).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MOTChallenge file not found: {path}")
    rows: list[list[float]] = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if line.strip():
                rows.append(_parse_line(line, path, lineno))
    out = np.array(rows, dtype=np.float64).reshape(-1, NUM_COLUMNS)
    if scored_only:
        out = out[out[:, SCORE] != 0]
    return out


def _parse_line(line: str, path: Path, lineno: int) -> list[float]:
    fields = line.split(",") if "," in line else line.split()
    fields = [x.strip() for x in fields]
    if not MIN_COLUMNS <= len(fields) <= NUM_COLUMNS:
        raise MotFormatError(path, lineno, f"expected {MIN_COLUMNS} to {NUM_COLUMNS} columns, "
                                           f"got {len(fields)}")
    values = []
    for col, text in enumerate(fields, start=1):
        try:
            v = float(text)
        except ValueError:
            raise MotFormatError(path, lineno, f"column {col} is not a number: {text!r}") from None
        if not math.isfinite(v):
            raise MotFormatError(path, lineno, f"column {col} is not finite: {text!r}")
        values.append(v)
    frame, track_id, _, _, w, h = values[:MIN_COLUMNS]
    if frame < 1 or not frame.is_integer():
        raise MotFormatError(path, lineno, f"frame must be a whole number >= 1 (frames are "
                                           f"1-based), got {fields[FRAME]}")
    if not track_id.is_integer():
        raise MotFormatError(path, lineno, f"id must be a whole number, got {fields[TRACK_ID]}")
    if w <= 0 or h <= 0:
        raise MotFormatError(path, lineno, f"width and height must be > 0, got "
                                           f"{fields[WIDTH]} x {fields[HEIGHT]}")
    return values + [-1.0] * (NUM_COLUMNS - len(values))


def write_mot(path: str | Path,
              rows: Iterable[tuple[int, int, float, float, float, float, float]]) -> int:
    """Write tracker output ``(frame, track_id, left, top, width, height, score)`` rows as
    MOTChallenge lines ``frame,id,left,top,width,height,score,-1,-1,-1``, sorted by frame then
    id; returns the number of rows written. Every row is checked before anything is written
    (ValueError: frame < 1, a non-finite number, width or height <= 0), and the file is
    replaced atomically, so a reader never sees half a file.
    """
    path = Path(path)
    checked = [_check_row(i, row) for i, row in enumerate(rows)]
    checked.sort(key=lambda r: (r[0], r[1]))  # stable: same (frame, id) keeps input order
    text = "".join(f"{fr},{tid},{left:.2f},{top:.2f},{w:.2f},{h:.2f},{score:.4f},-1,-1,-1\n"
                   for fr, tid, left, top, w, h, score in checked)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(checked)


def _check_row(i: int, row) -> tuple[int, int, float, float, float, float, float]:
    """One output row as plain Python numbers, or ValueError saying which row is wrong."""
    if len(row) != 7:
        raise ValueError(f"row {i}: expected (frame, id, left, top, width, height, score), "
                         f"got {len(row)} values")
    nums = [float(x) for x in row]
    if not all(math.isfinite(x) for x in nums):
        raise ValueError(f"row {i}: non-finite number in {tuple(row)}")
    frame, tid, left, top, w, h, score = nums
    if frame < 1 or not frame.is_integer():
        raise ValueError(f"row {i}: frame must be a whole number >= 1 (1-based), got {row[0]}")
    if not tid.is_integer():
        raise ValueError(f"row {i}: track id must be a whole number, got {row[1]}")
    if w <= 0 or h <= 0:
        raise ValueError(f"row {i}: width and height must be > 0, got {row[4]} x {row[5]}")
    return int(frame), int(tid), left, top, w, h, score
