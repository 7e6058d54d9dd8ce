"""Word vocabulary for the describer: build, encode/decode, JSON round trip."""
from __future__ import annotations

import json

import pytest

from personlens.text.vocab import SPECIALS, Vocab, detokenize, tokenize

CORPUS = [
    "The image shows a male adult wearing a black jacket.",
    "The image shows a female adult wearing a red t-shirt, carrying a backpack.",
    "The image shows a middle-aged male adult wearing a black jacket.",
]


def test_tokenize_keeps_hyphenated_words_and_splits_punctuation():
    assert tokenize("A Middle-aged man, in a T-shirt.") == [
        "a", "middle-aged", "man", ",", "in", "a", "t-shirt", "."]
    assert detokenize(["a", "man", ",", "a", "hat", "."]) == "a man, a hat."


def test_specials_first_then_by_frequency():
    v = Vocab.build(CORPUS)
    assert tuple(v.itos[:4]) == SPECIALS
    assert (v.pad_id, v.bos_id, v.eos_id, v.unk_id) == (0, 1, 2, 3)
    assert v.itos[4] == "a"  # the most frequent word
    # ties are alphabetical, so the ids never depend on the order of the corpus
    assert Vocab.build(list(reversed(CORPUS))) == v


def test_min_freq_and_unknown_words():
    v = Vocab.build(CORPUS, min_freq=2)
    assert "jacket" in v and "backpack" not in v and "red" not in v
    ids = v.encode("a red jacket")
    assert ids[1] == v.unk_id and ids[0] == v.stoi["a"]
    assert v.decode(ids) == "a jacket"  # <unk> is skipped


def test_encode_decode_round_trip_with_bos_eos():
    v = Vocab.build(CORPUS)
    text = "the image shows a female adult wearing a red t-shirt, carrying a backpack."
    ids = v.encode(text, bos=True, eos=True)
    assert ids[0] == v.bos_id and ids[-1] == v.eos_id
    assert v.decode(ids) == text
    # decoding stops at the first <eos>
    assert v.decode(v.encode("a male adult") + [v.eos_id] + v.encode("jacket")) == "a male adult"
    with pytest.raises(ValueError):
        v.decode([len(v) + 5])


def test_max_size():
    v = Vocab.build(CORPUS, max_size=6)
    assert len(v) == 6


def test_json_round_trip(tmp_path):
    v = Vocab.build(CORPUS)
    path = v.save(tmp_path / "vocab.json")
    assert json.loads(path.read_text())["words"][:4] == list(SPECIALS)
    assert Vocab.load(path) == v


def test_load_rejects_other_files(tmp_path):
    bad = tmp_path / "vocab.json"
    bad.write_text(json.dumps({"words": ["a", "b"]}))
    with pytest.raises(ValueError, match="not a personlens vocabulary"):
        Vocab.load(bad)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read"):
        Vocab.load(bad)
    with pytest.raises(ValueError, match="special tokens"):
        Vocab(["a", "b"])
    with pytest.raises(ValueError, match="duplicate"):
        Vocab([*SPECIALS, "a", "a"])
