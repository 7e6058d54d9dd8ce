"""PersonVLM / MSP60K-style JSONL image-text pairs."""
from __future__ import annotations

import json

import pytest

from personlens.data.jsonl import JsonlError, TextPair, read_jsonl, write_jsonl


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_reads_pairs_relative_to_the_file(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.jpg").write_bytes(b"x")
    abs_img = tmp_path / "elsewhere.png"
    f = _write(tmp_path / "train.jsonl", [
        json.dumps({"image": "imgs/a.jpg", "answer": " A man in a red jacket. ", "question": "?"}),
        "",
        json.dumps({"image": str(abs_img), "answer": "A woman."}),
    ])
    pairs = read_jsonl(f)
    assert pairs == [TextPair(tmp_path / "imgs" / "a.jpg", "A man in a red jacket.", 1),
                     TextPair(abs_img, "A woman.", 3)]


def test_other_keys(tmp_path):
    f = _write(tmp_path / "d.jsonl", [json.dumps({"file": "x.png", "caption": "A man."})])
    assert read_jsonl(f, image_key="file", text_key="caption")[0].text == "A man."


@pytest.mark.parametrize("line,reason", [
    ('{"image": "a.jpg", "answer": "x"', "invalid JSON"),
    ('["a.jpg", "x"]', "expected a JSON object, got list"),
    ('{"answer": "x"}', "missing key 'image'"),
    ('{"image": "a.jpg"}', "missing key 'answer'"),
    ('{"image": 3, "answer": "x"}', "'image' must be a string, got int"),
    ('{"image": "a.jpg", "answer": "  "}', "'answer' is empty"),
])
def test_bad_lines_name_file_and_line(tmp_path, line, reason):
    f = _write(tmp_path / "bad.jsonl", [json.dumps({"image": "ok.jpg", "answer": "fine"}), line])
    with pytest.raises(JsonlError) as e:
        read_jsonl(f)
    assert e.value.line == 2 and reason in e.value.reason
    assert str(e.value).startswith(f"{f}:2: ")


def test_skip_bad_lines_and_collect_them(tmp_path):
    f = _write(tmp_path / "mixed.jsonl", ['{"image": "a.jpg", "answer": "A man."}', "oops",
                                          '{"image": "b.jpg"}', '{"image": "c.jpg", "answer": "A woman."}'])
    errors = []
    pairs = read_jsonl(f, on_error="skip", errors=errors)
    assert [p.line for p in pairs] == [1, 4]
    assert [e.line for e in errors] == [2, 3]


def test_missing_images_and_files(tmp_path):
    f = _write(tmp_path / "d.jsonl", ['{"image": "nope.jpg", "answer": "A man."}'])
    assert len(read_jsonl(f)) == 1
    with pytest.raises(JsonlError, match="image not found"):
        read_jsonl(f, check_images=True)
    with pytest.raises(FileNotFoundError):
        read_jsonl(tmp_path / "absent.jsonl")
    (tmp_path / "latin1.jsonl").write_bytes('{"image": "a", "answer": "caf\xe9"}'.encode("latin-1"))
    with pytest.raises(JsonlError, match="UTF-8"):
        read_jsonl(tmp_path / "latin1.jsonl")


def test_write_read_round_trip(tmp_path):
    (tmp_path / "imgs").mkdir()
    pairs = [(tmp_path / "imgs" / "a.jpg", "A man."), (tmp_path / "imgs" / "b.jpg", "A woman.")]
    f = write_jsonl(pairs, tmp_path / "out.jsonl")
    assert json.loads(f.read_text().splitlines()[0])["image"] == "imgs/a.jpg"
    assert [(p.image, p.text) for p in read_jsonl(f)] == pairs
