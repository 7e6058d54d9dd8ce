"""Caption generation from PETA labels."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from personlens.text.captions import (EVAL_ONLY_WORDS, EVAL_TEMPLATES, SYNONYMS,
                                      TRAIN_ONLY_WORDS, TRAIN_TEMPLATES, CaptionGenerator,
                                      parse_labels, structured_description)
from personlens.data.schema import PETA_ATTRIBUTE_NAMES, PETA_SCHEMA
from personlens.text import noun_chunks

MAN = {"personalMale": 1, "personalLess45": 1, "hairShort": 1, "hairBlack": 1,
       "upperBodyJacket": 1, "upperBodyBlack": 1, "lowerBodyJeans": 1, "lowerBodyBlue": 1,
       "footwearLeatherShoes": 1, "footwearBrown": 1, "carryingBackpack": 1}
WOMAN = {"personalFemale": 1, "personalLess30": 1, "hairLong": 1, "hairBrown": 1,
         "upperBodyTshirt": 1, "upperBodyRed": 1, "upperBodyLogo": 1,
         "lowerBodyShortSkirt": 1, "lowerBodyBlack": 1, "lowerBodyWhite": 1,
         "footwearSandals": 1, "accessorySunglasses": 1, "carryingBabyBuggy": 1,
         "carryingOther": 1}


def _random_labels(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """Plausible random label vectors: each attribute on with its own small probability."""
    p = rng.uniform(0.02, 0.35, size=len(PETA_SCHEMA))
    return [(rng.random(len(PETA_SCHEMA)) < p).astype(np.float32) for _ in range(n)]


# ---------------------------------------------------------------- structured description

STRUCTURED = [
    ({"personalMale": 1, "personalLess45": 1, "hairBlack": 1, "upperBodyJacket": 1,
      "upperBodyBlack": 1, "lowerBodyJeans": 1, "lowerBodyBlue": 1, "carryingBackpack": 1},
     "The image shows a male adult with black hair wearing a black jacket and blue jeans, "
     "carrying a backpack."),
    (MAN, "The image shows a male adult with short black hair wearing a black jacket, blue "
          "jeans and brown leather shoes, carrying a backpack."),
    (WOMAN, "The image shows a young female adult with long brown hair wearing a red t-shirt "
            "with a logo, a black and white short skirt, sandals and sunglasses, carrying a "
            "bag and pushing a baby buggy."),
    ({}, "The image shows a person."),
    ({"personalLess15": 1}, "The image shows a child."),
    ({"personalFemale": 1, "personalLarger60": 1, "hairBald": 1, "hairGrey": 1},
     "The image shows an elderly female adult with a bald head."),
    ({"carryingLuggageCase": 1, "carryingUmbrella": 1},
     "The image shows a person carrying an umbrella and pulling a luggage case."),
    # contradictions: both genders -> none; two ages -> none; short+long hair -> colour only
    ({"personalMale": 1, "personalFemale": 1, "personalLess30": 1, "personalLess60": 1,
      "hairLong": 1, "hairShort": 1, "hairBlack": 1},
     "The image shows a person with black hair."),
    # colour without a garment type, several colours
    ({"upperBodyGreen": 1, "lowerBodyGrey": 1, "lowerBodyBlue": 1, "footwearWhite": 1},
     "The image shows a person wearing a green top, blue and grey bottoms and white shoes."),
    ({"upperBodyRed": 1, "upperBodyBlue": 1, "upperBodyWhite": 1, "upperBodySweater": 1,
      "upperBodyVNeck": 1, "upperBodyThinStripes": 1},
     "The image shows a person wearing a v-neck multicoloured striped sweater."),
    # garment type with no colour -> no colour word; casual/formal alone say nothing
    ({"lowerBodyTrousers": 1, "upperBodyCasual": 1, "accessoryNothing": 1},
     "The image shows a person wearing trousers."),
]


@pytest.mark.parametrize("labels,expected", STRUCTURED)
def test_structured_description(labels, expected):
    assert structured_description(labels) == expected


def test_structured_description_accepts_arrays():
    arr = np.zeros(len(PETA_SCHEMA), np.float32)
    for name in MAN:
        arr[PETA_SCHEMA.index(name)] = 1
    assert structured_description(arr) == structured_description(MAN)
    assert structured_description(arr.astype(bool)) == structured_description(MAN)
    assert structured_description(arr * 0.9) == structured_description(MAN)  # probabilities
    assert structured_description(arr * 0.4) == "The image shows a person."


def test_bad_labels_raise():
    with pytest.raises(KeyError, match="personalmale"):
        parse_labels({"personalmale": 1})
    with pytest.raises(ValueError, match="105"):
        parse_labels(np.zeros(35))


# ---------------------------------------------------------------- chunks

def test_chunks_canonical():
    g = CaptionGenerator("eval", seed=5)
    assert g.chunks(MAN) == ["man", "short black hair", "black jacket", "blue jeans",
                             "brown leather shoes", "backpack"]
    assert g.chunks(WOMAN) == ["young woman", "long brown hair", "red t-shirt", "logo",
                               "black and white short skirt", "sandals", "sunglasses", "bag",
                               "baby buggy"]
    assert g.chunks({}) == ["person"]
    assert g.chunks({"personalFemale": 1, "personalLess15": 1}) == ["girl"]
    assert g.chunks({"personalMale": 1, "personalLarger60": 1}) == ["elderly man"]
    # style and seed do not matter
    assert CaptionGenerator("train", seed=1).chunks(WOMAN) == g.chunks(WOMAN)


def test_structured_description_chunks_match_canonical_chunks():
    rng = np.random.default_rng(0)
    gen = CaptionGenerator()
    for labels in _random_labels(rng, 150):
        # the subject differs on purpose ("young female adult" vs "young woman")
        assert noun_chunks(structured_description(labels))[1:] == gen.chunks(labels)[1:]


# ---------------------------------------------------------------- generated captions

def test_generate_is_deterministic_given_seed():
    a = CaptionGenerator("train", seed=3)
    b = CaptionGenerator("train", seed=3)
    assert [a.generate(MAN, 4), a.generate(WOMAN, 2)] == [b.generate(MAN, 4),
                                                          b.generate(WOMAN, 2)]
    c = CaptionGenerator("train", seed=4)
    assert a.generate(MAN, 6) != c.generate(MAN, 6)


def test_key_makes_captions_order_independent():
    g1, g2 = CaptionGenerator("eval", seed=1), CaptionGenerator("eval", seed=1)
    first = g1.generate(MAN, 3, key=17)
    g2.generate(WOMAN, 5)  # other calls in between change nothing
    assert g2.generate(MAN, 3, key=17) == first
    assert g1.generate(MAN, 3, key=18) != first


def test_n_captions_are_distinct_where_possible():
    caps = CaptionGenerator("train", seed=0).generate(WOMAN, 8)
    assert len(caps) == 8 and len(set(caps)) == 8
    assert CaptionGenerator().generate(MAN, 0) == []
    with pytest.raises(ValueError):
        CaptionGenerator().generate(MAN, -1)


def test_empty_labels_give_a_person():
    for style in ("train", "eval"):
        caps = CaptionGenerator(style, seed=0).generate({}, 5)
        assert caps and all(noun_chunks(c) and noun_chunks(c)[0] in
                            {"person", "pedestrian", "individual"} for c in caps)


def test_templates_are_disjoint_and_all_used():
    assert not set(TRAIN_TEMPLATES) & set(EVAL_TEMPLATES)
    for style, names in (("train", TRAIN_TEMPLATES), ("eval", EVAL_TEMPLATES)):
        used = {c.template for c in CaptionGenerator(style, seed=0).sample(MAN, 60)}
        assert used == set(names)


def test_eval_only_words_never_appear_in_train_captions():
    assert {"gentleman", "knapsack", "stroller", "pullover", "slacks"} <= EVAL_ONLY_WORDS
    assert {"guy", "rucksack", "pram", "jumper", "handbag"} <= TRAIN_ONLY_WORDS
    rng = np.random.default_rng(1)
    labels = _random_labels(rng, 120) + [MAN, WOMAN]
    texts = {s: " ".join(c.lower() for lab in labels
                         for c in CaptionGenerator(s, seed=2).generate(lab, 3))
             for s in ("train", "eval")}

    def has(text: str, phrase: str) -> bool:
        return re.search(rf"(?<![\w-]){re.escape(phrase)}(?![\w-])", text) is not None

    for w in EVAL_ONLY_WORDS:
        assert not has(texts["train"], w), w
    for w in TRAIN_ONLY_WORDS:
        assert not has(texts["eval"], w), w
    # and each style really uses its own words
    assert sum(has(texts["eval"], w) for w in EVAL_ONLY_WORDS) >= len(EVAL_ONLY_WORDS) // 2
    assert sum(has(texts["train"], w) for w in TRAIN_ONLY_WORDS) >= len(TRAIN_ONLY_WORDS) // 2
    # template signatures
    for marker in ("looking for", "worn by", "find the", "there is"):
        assert marker in texts["eval"] and marker not in texts["train"]
    for marker in ("this ", "wearing ", " is wearing"):
        assert marker in texts["train"]


def test_colours_attach_to_garments():
    caps = CaptionGenerator("train", seed=0, partial=0.0).generate(MAN, 10)
    chunks = {c for cap in caps for c in noun_chunks(cap)}
    assert "blue jeans" in chunks
    assert {"black jacket", "black coat"} & chunks
    assert not {"blue jacket", "black jeans", "blue coat"} & chunks
    # no colour known -> no colour word
    caps = CaptionGenerator("eval", seed=0, partial=0.0).generate(
        {"personalMale": 1, "lowerBodyJeans": 1}, 5)
    assert all(re.search(r"\b(jeans|denims)\b", c, re.I) for c in caps)
    colours = {"black", "blue", "brown", "green", "grey", "orange", "pink", "purple", "red",
               "white", "yellow"}
    assert not any(colours & set(re.findall(r"[a-z]+", c.lower())) for c in caps)


def test_partial_descriptions_mention_subsets():
    g = CaptionGenerator("train", seed=0, partial=1.0)
    full = set(CaptionGenerator().chunks(MAN)[1:])
    sizes = []
    for cap in g.sample(MAN, 40):
        mentioned = [c for c in cap.chunks[1:]]
        assert 1 <= len(mentioned) <= len(full)
        sizes.append(len(mentioned))
    assert min(sizes) < len(full)  # some captions leave things out
    # partial=0: every caption mentions every facet (hair, 3 garments, backpack)
    for cap in CaptionGenerator("eval", seed=0, partial=0.0).sample(MAN, 10):
        assert len(cap.chunks) == 1 + len(full)


def test_gender_and_age_phrases():
    words = lambda labels, style: " ".join(  # noqa: E731
        CaptionGenerator(style, seed=0, partial=0.0).generate(labels, 30)).lower()
    text = words({"personalMale": 1, "personalLarger60": 1}, "train")
    assert re.search(r"\b(old|elderly) (man|guy)\b", text)
    text = words({"personalFemale": 1, "personalLess30": 1}, "eval")
    assert re.search(r"\byoung (woman|female|blouse)\b", text)
    text = words({"personalFemale": 1, "personalLess15": 1}, "train")
    assert "girl" in text and "woman" not in text
    text = words({"personalMale": 1}, "eval")
    assert "gentleman" in text and "guy" not in text


def test_accessories_footwear_carrying_hair():
    labels = {"accessoryHat": 1, "accessoryHeadphone": 1, "footwearBoots": 1,
              "footwearBlack": 1, "carryingUmbrella": 1, "hairLong": 1, "hairYellow": 1}
    text = " ".join(CaptionGenerator("train", seed=0, partial=0.0).generate(labels, 10))
    for phrase in ("headphones", "black boots", "umbrella", "long yellow hair"):
        assert phrase in text
    assert re.search(r"\b(hat|cap)\b", text)


@pytest.mark.parametrize("style", ["train", "eval"])
def test_chunker_recovers_what_each_caption_mentions(style):
    rng = np.random.default_rng(7)
    g = CaptionGenerator(style, seed=11)
    for labels in _random_labels(rng, 120) + [MAN, WOMAN, {}]:
        for cap in g.sample(labels, 2):
            assert sorted(noun_chunks(cap.text)) == sorted(cap.chunks), cap


def test_synonym_table_is_well_formed():
    for concept, (train, ev) in SYNONYMS.items():
        assert train and ev, concept
    for name in PETA_ATTRIBUTE_NAMES:
        if name.startswith(("carrying", "accessory")) and not name.endswith("Nothing"):
            assert name in SYNONYMS, name


PETA_MAT = Path(__file__).resolve().parents[2].parent / "shared/data/PETA/PETA.mat"


@pytest.mark.skipif(not PETA_MAT.exists(), reason=f"real PETA not found at {PETA_MAT}")
def test_real_peta_labels():
    import scipy.io

    data = np.asarray(scipy.io.loadmat(str(PETA_MAT))["peta"][0, 0]["data"])
    rows = data[np.random.default_rng(0).choice(len(data), 150, replace=False), 4:]
    gen = {s: CaptionGenerator(s, seed=0) for s in ("train", "eval")}
    for row in rows:
        s = structured_description(row)
        assert s.startswith("The image shows ") and s.endswith(".")
        for g in gen.values():
            for cap in g.sample(row, 2):
                assert sorted(noun_chunks(cap.text)) == sorted(cap.chunks), cap
