"""Reading descriptions back into attributes, and checking them against an attribute model."""
from __future__ import annotations

import numpy as np
import pytest

from personlens.text.captions import CaptionGenerator, parse_labels, structured_description
from personlens.data.schema import PETA_ATTRIBUTE_NAMES, PETA_SCHEMA, PETA_STANDARD_35
from personlens.text.consistency import (asserted_attributes, check_consistency,
                                         parse_description, reconcile)

TEXT = ("The image shows a young female adult with long black hair wearing a red jacket and "
        "blue jeans, carrying a backpack.")


def _random_labels(rng, n):
    p = rng.uniform(0.02, 0.35, size=len(PETA_SCHEMA))
    return [(rng.random(len(PETA_SCHEMA)) < p).astype(np.float32) for _ in range(n)]


def test_structured_descriptions_parse_back_to_their_facts():
    """parse_description inverts structured_description: same facts, same sentence."""
    for labels in _random_labels(np.random.default_rng(0), 500):
        text = structured_description(labels)
        facts = parse_description(text)
        assert structured_description(facts) == text
        expected = parse_labels(labels)
        assert (facts.gender, facts.age, facts.hair_length, facts.carried) == (
            expected.gender, expected.age, expected.hair_length, expected.carried)


def test_parse_other_wording():
    f = parse_description("A lady with short hair in a pink blouse and black-and-white slacks, "
                          "holding a knapsack.")
    assert f.gender == "female" and f.hair_length == "short"
    assert f.upper.colours == ("pink",) and f.lower.kind == "lowerBodyTrousers"
    assert f.lower.colours == ("black", "white") and f.carried == ("carryingBackpack",)
    g = parse_description("An elderly gentleman, bald, carrying nothing.")
    assert (g.gender, g.age, g.hair_length, g.carrying_nothing) == ("male", "personalLarger60", "bald", True)


def test_asserted_attributes_include_exclusions():
    a = asserted_attributes(TEXT)
    assert a["personalFemale"] and a["personalMale"] is False
    assert a["personalLess30"] and a["personalLess45"] is False
    assert a["hairLong"] and a["hairShort"] is False and a["hairBlack"]
    assert a["upperBodyJacket"] and a["upperBodyRed"] and a["lowerBodyJeans"] and a["lowerBodyBlue"]
    assert a["carryingBackpack"]


CONSISTENT = {"personalMale": 0.1, "personalLess30": 0.8, "hairLong": 0.9, "carryingBackpack": 0.7,
              "upperBodyJacket": 0.6, "lowerBodyJeans": 0.9, "accessoryHat": 0.9}


def test_no_contradictions_when_the_model_agrees():
    # the hat the model sees but the text omits is an omission, not a contradiction
    assert check_consistency(TEXT, CONSISTENT) == []


@pytest.mark.parametrize("change,field,attribute", [
    ({"personalMale": 0.93}, "gender", "personalMale"),        # text female, model male
    ({"personalLess30": 0.2, "personalLess45": 0.7}, "age", "personalLess45"),
    ({"hairLong": 0.2}, "hair_length", "hairLong"),            # one attribute codes the group
    ({"carryingBackpack": 0.1}, "carried", "carryingBackpack"),
    ({"upperBodyJacket": 0.3}, "upper_type", "upperBodyJacket"),
    ({"upperBodyRed": 0.05}, "upper_colour", "upperBodyRed"),
])
def test_each_contradiction_is_found(change, field, attribute):
    found = check_consistency(TEXT, {**CONSISTENT, **change})
    assert [(c.field, c.attribute) for c in found] == [(field, attribute)]
    assert field in str(found[0]) and attribute in found[0].to_dict()["message"]


def test_male_text_against_a_model_with_only_personal_male():
    text = "The image shows a male adult."
    assert check_consistency(text, {"personalMale": 0.3})[0].field == "gender"
    assert check_consistency(text, {"personalMale": 0.6}) == []
    # thresholds: present means p >= the attribute's threshold
    assert check_consistency(text, {"personalMale": 0.3}, thresholds={"personalMale": 0.25}) == []


def test_unsure_model_is_no_contradiction():
    # no age reaches its threshold: the model says nothing about the age
    probs = {**CONSISTENT, "personalLess30": 0.4, "personalLess45": 0.35}
    assert check_consistency(TEXT, probs) == []


def test_present_list_form():
    found = check_consistency(TEXT, ["personalMale"], known=list(PETA_STANDARD_35))
    assert {c.field for c in found} >= {"gender", "carried"}


def test_flag_keeps_text_fix_rewrites_it():
    probs = {**CONSISTENT, "personalMale": 0.9, "carryingBackpack": 0.05}
    text, found = reconcile(TEXT, probs, mode="flag")
    assert text == TEXT and len(found) == 2
    fixed, found = reconcile(TEXT, probs, mode="fix")
    assert fixed == ("The image shows a young male adult with long black hair wearing a red jacket "
                     "and blue jeans.")
    assert check_consistency(fixed, probs) == []
    assert reconcile(TEXT, CONSISTENT, mode="fix") == (TEXT, [])
    with pytest.raises(ValueError):
        reconcile(TEXT, probs, mode="maybe")


def test_fix_always_removes_every_contradiction():
    rng = np.random.default_rng(1)
    gen = CaptionGenerator("train", seed=0)
    for i, labels in enumerate(_random_labels(rng, 300)):
        text = structured_description(labels) if i % 2 else gen.generate(labels)[0]
        names = PETA_STANDARD_35 if i % 3 else PETA_ATTRIBUTE_NAMES
        probs = {n: float(rng.random()) for n in names}
        fixed, _ = reconcile(text, probs)
        assert check_consistency(fixed, probs) == [], (text, fixed)
