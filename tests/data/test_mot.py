"""MOTChallenge box files: write/read round trip, reader errors, and the real TUD ground truth
in ../shared/data/video (skipped where it is absent)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from personlens.data.mot import MotFormatError, read_mot, write_mot

VIDEO = Path(__file__).resolve().parents[2].parent / "shared/data/video"


def _gt(seq: str) -> Path:
    path = VIDEO / seq / "gt.txt"
    if not path.is_file():
        pytest.skip(f"needs {path}")
    return path


# ---------------------------------------------------------------- write / read

def test_write_sorts_formats_and_reads_back(tmp_path):
    path = tmp_path / "hyp.txt"
    rows = [(2, 1, 10, 20, 30, 40, 0.5),
            (1, 7, 1.005, 2.5, 3.25, 4, 1),
            (1, 3, -5.5, 0, 12.345, 50.1, 0.123456)]
    assert write_mot(path, rows) == 3
    assert path.read_text().splitlines() == [
        "1,3,-5.50,0.00,12.35,50.10,0.1235,-1,-1,-1",
        "1,7,1.00,2.50,3.25,4.00,1.0000,-1,-1,-1",  # 1.005 is 1.00499... as a float
        "2,1,10.00,20.00,30.00,40.00,0.5000,-1,-1,-1",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hyp.txt"]  # no temp file left
    back = read_mot(path)
    assert back.shape == (3, 10) and back.dtype == np.float64
    np.testing.assert_allclose(back[:, :7], [[1, 3, -5.5, 0, 12.35, 50.1, 0.1235],
                                             [1, 7, 1.0, 2.5, 3.25, 4, 1],
                                             [2, 1, 10, 20, 30, 40, 0.5]])
    assert (back[:, 7:] == -1).all()


def test_write_accepts_numpy_numbers_and_no_rows(tmp_path):
    arr = np.array([[3, 2, 0, 0, 5, 5, 0.9]])
    assert write_mot(tmp_path / "a.txt", [tuple(arr[0])]) == 1
    assert (tmp_path / "a.txt").read_text() == "3,2,0.00,0.00,5.00,5.00,0.9000,-1,-1,-1\n"
    assert write_mot(tmp_path / "empty.txt", []) == 0
    assert read_mot(tmp_path / "empty.txt").shape == (0, 10)


@pytest.mark.parametrize("row, words", [
    ((0, 1, 0, 0, 5, 5, 1), "frame"),
    ((1.5, 1, 0, 0, 5, 5, 1), "frame"),
    ((1, 1, 0, 0, 0, 5, 1), "width and height"),
    ((1, 1, 0, 0, 5, -2, 1), "width and height"),
    ((1, 1, float("nan"), 0, 5, 5, 1), "non-finite"),
    ((1, 1, 0, 0, 5, 5, float("inf")), "non-finite"),
    ((1, 1, 0, 0, 5, 5), "expected"),
])
def test_write_rejects_bad_rows_and_keeps_the_old_file(tmp_path, row, words):
    path = tmp_path / "hyp.txt"
    path.write_text("old\n")
    with pytest.raises(ValueError, match=words):
        write_mot(path, [(1, 1, 0, 0, 5, 5, 1), row])
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["hyp.txt"]


def test_read_is_tolerant_of_blank_lines_spaces_and_short_rows(tmp_path):
    path = tmp_path / "gt.txt"
    path.write_text("\n1, 1, 10, 20, 30, 40, 1, -1, -1, -1\n   \n"
                    "2,1,11,21,30,40,0\n"          # 7 columns: world coordinates padded
                    "3 2 5 5 10 10 1 4.5\n"        # whitespace-separated, 8 columns
                    "4,2,5,5,10,10\n")             # 6 columns: flag padded with -1 too
    rows = read_mot(path)
    np.testing.assert_array_equal(rows, [[1, 1, 10, 20, 30, 40, 1, -1, -1, -1],
                                         [2, 1, 11, 21, 30, 40, 0, -1, -1, -1],
                                         [3, 2, 5, 5, 10, 10, 1, 4.5, -1, -1],
                                         [4, 2, 5, 5, 10, 10, -1, -1, -1, -1]])
    # scored_only drops only the flag-0 row (column 7); -1 means "no flag", so it is kept
    np.testing.assert_array_equal(read_mot(path, scored_only=True)[:, 0], [1, 3, 4])


@pytest.mark.parametrize("bad, words", [
    ("1,1,10,20,abc,40,1,-1,-1,-1", "column 5 is not a number: 'abc'"),
    ("1,1,10,20,,40,1", "column 5 is not a number"),
    ("1,1,10,20,30", "expected 6 to 10 columns, got 5"),
    ("1,1,10,20,30,40,1,-1,-1,-1,9", "got 11"),
    ("0,1,10,20,30,40,1", "frame must be"),
    ("1,1,10,20,0,40,1", "width and height must be > 0"),
    ("1,1,10,20,30,-4,1", "width and height must be > 0"),
    ("1,1,10,nan,30,40,1", "not finite"),
])
def test_read_errors_name_file_and_line(tmp_path, bad, words):
    path = tmp_path / "gt.txt"
    path.write_text("1,1,10,20,30,40,1,-1,-1,-1\n\n" + bad + "\n")
    with pytest.raises(MotFormatError, match=words) as err:
        read_mot(path)
    assert str(err.value).startswith(f"{path}:3: ")  # blank line 2 still counts
    assert err.value.line == 3 and err.value.path == str(path)
    assert isinstance(err.value, ValueError)


def test_read_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="MOTChallenge file not found: .*nope.txt"):
        read_mot(tmp_path / "nope.txt")


# ---------------------------------------------------------------- real ground truth

@pytest.mark.parametrize("seq, boxes, ids, frames", [
    ("TUD-Stadtmitte", 1156, 10, 179),
    ("TUD-Campus", 359, 8, 71),
])
def test_real_ground_truth(seq, boxes, ids, frames):
    gt = read_mot(_gt(seq), scored_only=True)
    assert gt.shape == (boxes, 10)
    assert len(np.unique(gt[:, 1])) == ids
    assert gt[:, 0].min() == 1 and gt[:, 0].max() == frames
    assert (gt[:, 4:6] > 0).all()
