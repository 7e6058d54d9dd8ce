"""PersonRecord validation."""
from __future__ import annotations

import numpy as np
import pytest
from crops_testlib import make_record

from personlens.inference.records import PersonRecord, content_id


def _kw(**over):
    r = make_record(1)
    d = dict(id=r.id, path=r.path, attributes=r.attributes, present=r.present,
             search_embedding=r.search_embedding, reid_embedding=r.reid_embedding,
             model_version=r.model_version)
    d.update(over)
    return d


def test_valid_record_roundtrips_to_dict():
    r = PersonRecord(**_kw(camera="cam1", timestamp=12.5, track_id="t7", description="a person"))
    d = r.to_dict()
    assert d["camera"] == "cam1" and d["timestamp"] == 12.5 and "search_embedding" not in d
    assert r.search_embedding.dtype == np.float32
    assert len(r.to_dict(embeddings=True)["reid_embedding"]) == 12
    assert r == PersonRecord(**_kw(camera="cam1", timestamp=12.5, track_id="t7", description="a person"))


def test_content_id_is_sha256_hex():
    assert content_id(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


@pytest.mark.parametrize("over, match", [
    ({"id": "not-a-hash"}, "SHA-256"),
    ({"id": "A" * 64}, "SHA-256"),
    ({"path": ""}, "path"),
    ({"model_version": ""}, "model_version"),
    ({"attributes": {"personalMale": 1.2, "accessoryHat": 0.1, "carryingBackpack": 0.1,
                     "upperBodyBlack": 0.1}}, r"\[0, 1\]"),
    ({"attributes": {"personalMale": float("nan"), "accessoryHat": 0.1, "carryingBackpack": 0.1,
                     "upperBodyBlack": 0.1}}, r"\[0, 1\]"),
    ({"present": ["notAnAttribute"]}, "without a probability"),
    ({"present": ["personalMale", "personalMale"]}, "repeat"),
    ({"search_embedding": np.ones(8, np.float32)}, "unit vector"),
    ({"reid_embedding": np.full(12, np.nan, np.float32)}, "NaN"),
    ({"reid_embedding": np.zeros(0, np.float32)}, "empty"),
    ({"timestamp": float("inf")}, "timestamp"),
    ({"camera": 3}, "camera"),
])
def test_invalid_records_are_refused(over, match):
    with pytest.raises(ValueError, match=match):
        PersonRecord(**_kw(**over))


def test_norm_tolerance_is_1e_3():
    v = make_record(1).search_embedding * np.float32(1.0009)
    PersonRecord(**_kw(search_embedding=v))
    with pytest.raises(ValueError):
        PersonRecord(**_kw(search_embedding=v * np.float32(1.002)))


def test_top_present_orders_by_probability():
    r = PersonRecord(**_kw(attributes={"personalMale": 0.6, "accessoryHat": 0.1,
                                       "carryingBackpack": 0.9, "upperBodyBlack": 0.7},
                           present=["personalMale", "carryingBackpack", "upperBodyBlack"]))
    assert r.top_present() == ["carryingBackpack", "upperBodyBlack", "personalMale"]
    assert r.top_present(1) == ["carryingBackpack"]
