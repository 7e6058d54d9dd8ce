"""Fusing several crops of one person: attribute probabilities (weighted mean, uncertain where
the crops split), embeddings (normalised weighted mean), the description chosen, errors."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from personlens.inference.fusion import (
    DISAGREEMENT,
    fuse_attributes,
    fuse_probabilities,
    mean_unit,
)
from personlens.inference.records import PersonRecord

NAMES = ["personalMale", "accessoryHat", "carryingBackpack"]
THR = [0.5, 0.5, 0.3]


def rid(i) -> str:
    return hashlib.sha256(f"crop-{i}".encode()).hexdigest()


def unit(v) -> np.ndarray:
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


def record(i: int, probs, search=None, reid=None, description=None, version="v1", camera="cam1"):
    attrs = dict(zip(NAMES, probs))
    return PersonRecord(id=rid(i), path=f"/crops/{i}.jpg", attributes=attrs,
                        present=[n for n, p, t in zip(NAMES, probs, THR) if p >= t],
                        search_embedding=unit(search if search is not None else [1, 0, 0]),
                        reid_embedding=unit(reid if reid is not None else [0, 1, 0, 0]),
                        model_version=version, camera=camera, timestamp=100.0 + i,
                        description=description or f"crop {i}")


# -- attributes ------------------------------------------------------------------------------

def test_fused_probabilities_are_the_weighted_mean():
    p = np.array([[0.2, 0.8, 0.0], [0.6, 0.4, 1.0]])
    np.testing.assert_allclose(fuse_probabilities(p), [0.4, 0.6, 0.5])
    np.testing.assert_allclose(fuse_probabilities(p, [3, 1]), [0.3, 0.7, 0.25])
    np.testing.assert_allclose(fuse_probabilities(p, np.array([0.0, 2.0])), p[1])   # normalised
    np.testing.assert_allclose(fuse_probabilities(p[:1]), p[0])


def test_fused_attributes_present_by_the_fused_probability():
    p = np.array([[0.9, 0.1, 0.2], [0.7, 0.3, 0.35]])
    fa = fuse_attributes(p, NAMES, THR)
    assert fa.attributes == pytest.approx({"personalMale": 0.8, "accessoryHat": 0.2, "carryingBackpack": 0.275})
    assert fa.present == ["personalMale"]             # 0.275 < 0.3 although one crop says yes
    assert fa.uncertain == ["carryingBackpack"]       # 1 of 2 crops on each side


def test_uncertain_when_the_crops_split_not_when_they_agree():
    agree = np.array([[0.9, 0.1, 0.9], [0.8, 0.2, 0.7], [0.6, 0.05, 0.95]])
    assert fuse_attributes(agree, NAMES, THR).uncertain == []
    split = np.array([[0.9, 0.9, 0.9], [0.1, 0.1, 0.8], [0.9, 0.2, 0.9], [0.2, 0.8, 0.1]])
    fa = fuse_attributes(split, NAMES, THR)
    # male 2:2 and hat 2:2 split; backpack 3:1 (a quarter < DISAGREEMENT) is not
    assert fa.uncertain == ["personalMale", "accessoryHat"]
    assert 0.25 < DISAGREEMENT
    # weights move the vote: the same 2:2 split with one side 9 times as heavy is not uncertain
    fa = fuse_attributes(split[:2], NAMES, THR, weights=[9, 1])
    assert fa.uncertain == []
    assert fuse_attributes(split[:2], NAMES, THR, weights=[1, 1]).uncertain == ["personalMale", "accessoryHat"]


def test_a_single_crop_is_never_uncertain():
    one = np.array([[0.5, 0.49, 0.3]])          # right at the thresholds
    fa = fuse_attributes(one, NAMES, THR)
    assert fa.uncertain == []
    assert fa.present == ["personalMale", "carryingBackpack"]
    assert fuse_attributes(one, NAMES, THR, disagreement=0.0).uncertain == []


def test_attribute_errors():
    p = np.array([[0.5, 0.5, 0.5]])
    with pytest.raises(ValueError, match="at least one crop"):
        fuse_probabilities(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="at least one crop"):
        fuse_probabilities(np.zeros(3))
    with pytest.raises(ValueError, match="disagree in length"):
        fuse_attributes(p, NAMES[:2], THR)
    with pytest.raises(ValueError, match="disagree in length"):
        fuse_attributes(p, NAMES, THR[:2])
    two = np.vstack([p, p])
    for bad in ([1.0], [1.0, -1.0], [0.0, 0.0], [np.nan, 1.0], [np.inf, 1.0]):
        with pytest.raises(ValueError, match="weights"):
            fuse_probabilities(two, bad)


# -- embeddings ------------------------------------------------------------------------------

def test_mean_unit():
    v = np.array([unit([1, 0]), unit([0, 1])])
    m = mean_unit(v)
    assert m.dtype == np.float32
    np.testing.assert_allclose(m, unit([1, 1]), atol=1e-6)
    np.testing.assert_allclose(mean_unit(v, [3, 1]), unit([0.75, 0.25]), atol=1e-6)
    # opposite vectors cancel: the most weighted one stands for the track
    opposite = np.array([unit([1, 0]), unit([-1, 0])])
    np.testing.assert_allclose(mean_unit(opposite, [1, 2]), [-1, 0], atol=1e-6)
    assert np.isfinite(mean_unit(opposite)).all()
    assert np.linalg.norm(mean_unit(opposite)) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        mean_unit(np.zeros((0, 4)))


# -- records ---------------------------------------------------------------------------------
