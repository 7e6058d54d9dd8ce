"""Description metrics: fields parsed from text, the PAR model's fields, caption scores."""
from __future__ import annotations

import shutil

import pytest

from personlens.text.captions import structured_description
from personlens.eval.describe import (caption_scores, field_accuracy, label_fields, par_fields,
                                      simple_tokenize, text_field_accuracy, text_fields)

WOMAN = {"personalFemale": 1, "personalLess30": 1, "hairLong": 1, "upperBodyRed": 1,
         "upperBodyJacket": 1, "lowerBodyBlue": 1, "lowerBodyBlack": 1, "lowerBodyJeans": 1,
         "carryingMessengerBag": 1}


def test_text_and_label_fields_agree_on_structured_descriptions():
    assert text_fields(structured_description(WOMAN)) == label_fields(WOMAN) == {
        "gender": "female", "age": "personalLess30", "hair_length": "long",
        "upper_colour": "red", "lower_colour": "black+blue", "backpack": False, "bag": True}
    many = {"upperBodyRed": 1, "upperBodyBlue": 1, "upperBodyWhite": 1}
    assert label_fields(many)["upper_colour"] == "multicoloured"
    assert text_fields(structured_description(many))["upper_colour"] == "multicoloured"


def test_par_fields():
    probs = {"personalMale": 0.3, "personalLess30": 0.2, "personalLess45": 0.6, "hairLong": 0.7,
             "carryingBackpack": 0.2, "carryingOther": 0.1, "upperBodyRed": 0.9, "upperBodyBlack": 0.1}
    f = par_fields(probs, {"carryingBackpack": 0.15})
    assert f["gender"] == "female"           # the complement of personalMale
    assert f["age"] == "personalLess45" and f["hair_length"] == "long"
    assert f["backpack"] is True and f["bag"] is True   # calibrated threshold 0.15
    assert f["upper_colour"] == "red" and f["lower_colour"] == "n/a"
    assert par_fields({})["gender"] == "n/a"


def test_field_accuracy_skips_unknown_truth_and_marks_missing_fields():
    truth = [label_fields(WOMAN), label_fields({"personalMale": 1})]
    pred = [text_fields("The image shows a female adult wearing a red top."),
            text_fields("The image shows a female adult.")]
    acc = field_accuracy(pred, truth)
    assert acc["gender"] == {"accuracy": 50.0, "n": 2}
    assert acc["upper_colour"] == {"accuracy": 100.0, "n": 1}   # unknown for the man
    assert acc["backpack"]["n"] == 2
    par = field_accuracy([{**p, "upper_colour": "n/a"} for p in pred], truth)
    assert par["upper_colour"]["accuracy"] is None
    assert text_field_accuracy([structured_description(WOMAN)], [WOMAN])["lower_colour"]["accuracy"] == 100.0


def test_caption_scores_simple_tokenizer():
    refs = ["The image shows a male adult wearing a black jacket.",
            "The image shows a young female adult with long hair."]
    perfect = caption_scores(refs, refs, tokenizer="simple")
    assert perfect["tokenizer"] == "simple"
    assert perfect["BLEU-1"] == pytest.approx(100.0, abs=1e-3) and perfect["BLEU-4"] > 99
    assert perfect["ROUGE-L"] == pytest.approx(100.0)
    worse = caption_scores(refs, ["The image shows a person.", ""], tokenizer="simple")
    assert worse["BLEU-4"] < 20 and worse["CIDEr"] < perfect["CIDEr"]
    assert simple_tokenize("A man, in a T-shirt.") == "a man in a t-shirt"
    with pytest.raises(ValueError):
        caption_scores(refs, refs[:1])


@pytest.mark.skipif(shutil.which("java") is None, reason="the PTB tokenizer needs Java")
def test_caption_scores_ptb_tokenizer():
    refs = ["The image shows a male adult wearing a black jacket."]
    s = caption_scores(refs, ["the image shows a male adult wearing a black jacket"])
    assert s["tokenizer"] == "ptb" and s["BLEU-1"] == pytest.approx(100.0, abs=1e-3)
