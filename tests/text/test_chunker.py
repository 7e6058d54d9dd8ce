"""Adjective-noun chunking of descriptions and queries, table-driven."""
from __future__ import annotations

import pytest

from personlens.text import noun_chunks

CASES = [
    # the brief's example
    ("a woman in a red coat with a black backpack", ["woman", "red coat", "black backpack"]),
    # keyword-style queries
    ("red top, blue jeans, backpack", ["red top", "blue jeans", "backpack"]),
    ("black jacket", ["black jacket"]),
    ("", []),
    ("walking quickly down the street", []),
    # CUHK-PEDES-style human captions
    ("The man is wearing a black jacket with a white shirt underneath, grey pants and black "
     "shoes. He is carrying a blue bag on his shoulder.",
     ["man", "black jacket", "white shirt", "grey pants", "black shoes", "blue bag"]),
    ("A young woman with long brown hair wears a knee-length floral dress and white sneakers.",
     ["young woman", "long brown hair", "knee-length floral dress", "white sneakers"]),
    ("The lady has her hair in a ponytail and wears a pair of dark blue jeans.",
     ["lady", "hair", "ponytail", "dark blue jeans"]),
    # structured (PersonVLM-style) description
    ("The image shows a male adult with black hair wearing a black jacket and blue jeans, "
     "carrying a backpack.",
     ["male adult", "black hair", "black jacket", "blue jeans", "backpack"]),
    # colour lists inside one chunk, hyphenated and comma-joined adjectives
    ("black and white striped T-shirt", ["black and white striped t-shirt"]),
    ("a black-and-white top", ["black-and-white top"]),
    ("a tall, slim man", ["tall slim man"]),
    ("a guy in a dark-blue hoodie", ["guy", "dark-blue hoodie"]),
    ("a short-sleeved greyish shirt", ["short-sleeved greyish shirt"]),
    # "and" between a noun and the next chunk splits
    ("black jacket and white pants", ["black jacket", "white pants"]),
    # noun modifiers and multi-word nouns
    ("pushing a baby buggy and pulling a luggage case", ["baby buggy", "luggage case"]),
    ("a messenger bag and a shopping trolley", ["messenger bag", "shopping trolley"]),
    ("a grey t shirt and a hair band", ["grey t shirt", "hair band"]),
    ("a short sleeve shirt", ["short sleeve shirt"]),
    ("wearing suit trousers and leather shoes", ["suit trousers", "leather shoes"]),
    ("a woman in a dress", ["woman", "dress"]),
    # predicative adjectives move onto their noun
    ("Her hair is long and black.", ["long and black hair"]),
    ("The woman's bag is red", ["woman", "red bag"]),
    ("the man is wearing a cap", ["man", "cap"]),
    # a colour with no noun after "in"/"dressed"
    ("a man in black", ["man", "black"]),
    ("a man dressed all in black and white.", ["man", "black and white"]),
    # body parts and bare "head" are not chunks; "bald head" is
    ("a man with a bald head", ["man", "bald head"]),
    ("a bag in her hand on her head", ["bag"]),
    # plurals, capitals, curly apostrophes, duplicates
    ("Two WOMEN with Handbags", ["women", "handbags"]),
    ("He\u2019s got black shoes and black shoes", ["black shoes"]),
    ("dresses and glasses", ["dresses", "glasses"]),
    # intensifiers stay with their adjective
    ("very short shorts", ["very short shorts"]),
]


@pytest.mark.parametrize("text,expected", CASES)
def test_noun_chunks(text, expected):
    assert noun_chunks(text) == expected


def test_chunks_are_lowercase_and_stripped():
    for text, _ in CASES:
        for c in noun_chunks(text):
            assert c == c.lower().strip() and "  " not in c and "," not in c
