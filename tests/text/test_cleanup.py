"""The clean-up pass for generated descriptions (table-driven)."""
from __future__ import annotations

import numpy as np
import pytest

from personlens.text.captions import CaptionGenerator, structured_description
from personlens.data.schema import PETA_SCHEMA
from personlens.text.cleanup import clean_description

CASES = [
    # repeated phrases
    ("the image shows a man carrying a backpack carrying a backpack",
     "The image shows a man carrying a backpack."),
    ("the the image shows a a man.", "The image shows a man."),
    ("wearing a black jacket and a black jacket, carrying a bag.",
     "Wearing a black jacket, carrying a bag."),
    ("The image shows a man, carrying a backpack, carrying a backpack.",
     "The image shows a man, carrying a backpack."),
    ("a black and black top", "A black and black top."),           # not a list of one thing
    ("carrying a messenger bag, a bag and a folder.",               # "bag, a bag" is two things
     "Carrying a messenger bag, a bag and a folder."),
    # dangling fragments
    ("the image shows a male adult wearing a and blue jeans",
     "The image shows a male adult wearing blue jeans."),
    ("the image shows a man wearing a hat, carrying a.", "The image shows a man wearing a hat."),
    ("the image shows a woman with , wearing a hat", "The image shows a woman, wearing a hat."),
    ("a man wearing and a hat", "A man wearing a hat."),
    ("a man with wearing a hat.", "A man wearing a hat."),
    ("and a man wearing a hat and.", "A man wearing a hat."),
    ("a man wearing a hat and and a scarf", "A man wearing a hat and a scarf."),
    ("the image shows a person wearing", "The image shows a person."),
    # punctuation and spacing
    ("a man ,wearing   a hat ,, carrying a bag ,", "A man, wearing a hat, carrying a bag."),
    ("a man wearing a hat , .", "A man wearing a hat."),
    (", . a man", "A man."),
    ("a man wearing a hat!", "A man wearing a hat!"),
    # articles
    ("a elderly man carrying a umbrella", "An elderly man carrying an umbrella."),
    ("an young woman wearing an uniform", "A young woman wearing a uniform."),
    # capitals and the final period
    ("the image shows a man. he is wearing a hat", "The image shows a man. He is wearing a hat."),
    ("the image shows a man;", "The image shows a man."),
    ("", ""),
    (" , . ", ""),
]


@pytest.mark.parametrize("raw,expected", CASES)
def test_clean_description(raw, expected):
    assert clean_description(raw) == expected


@pytest.mark.parametrize("raw,_", CASES)
def test_idempotent(raw, _):
    once = clean_description(raw)
    assert clean_description(once) == once


def test_leaves_well_formed_captions_alone():
    """Structured descriptions and generated captions of random labels pass unchanged."""
    rng = np.random.default_rng(0)
    gens = [CaptionGenerator("train", seed=1), CaptionGenerator("eval", seed=1)]
    for _ in range(400):
        p = rng.uniform(0.02, 0.35, size=len(PETA_SCHEMA))
        labels = (rng.random(len(PETA_SCHEMA)) < p).astype(np.float32)
        texts = [structured_description(labels)] + [g.generate(labels)[0] for g in gens]
        for t in texts:
            if t[0].isupper() and t.endswith("."):  # keyword lists are not sentences
                assert clean_description(t) == t
