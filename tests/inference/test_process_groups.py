"""``PersonPipeline.process_groups``: one record per group of crops of one person (a video
track), fused from the same crops' single-crop outputs, in one encoder pass.

Mostly on the shipped models (trained search and re-ID heads, description model); one test
on the fixture model (``pipeline``: text-search baseline, no describer) for the other branch.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
from crops_testlib import crop_image
from encoder_testlib import encoder_runs

from personlens.inference.fusion import DISAGREEMENT
from personlens.inference.pipeline import PersonPipeline, render_attributes


def rid(i) -> str:
    return hashlib.sha256(f"group-{i}".encode()).hexdigest()


@pytest.fixture(scope="module")
def shipped() -> PersonPipeline:
    """The shipped models (attributes, search and re-ID heads, description model)."""
    return PersonPipeline()


@pytest.fixture(scope="module")
def crops():
    # noise, solid colours and smooth colour fields: crops the models read differently
    return [crop_image(i) for i in range(7)]


# groups of indices into ``crops``, with their weights (None: equal)
GROUPS = [([0, 1, 2], [1.0, 2.0, 3.0]),     # three different crops, unequal weights
          ([3, 4], None),                   # two different crops, equal weights
          ([5], None),                      # one crop
          ([6, 6, 6], [0.2, 1.0, 3.0])]     # the same crop three times


def _norm(v):
    return v / np.linalg.norm(v)


@pytest.fixture(scope="module")
def made(shipped, crops):
    """process_groups over GROUPS (one call), and the single-crop outputs of the same crops:
    ``forward`` (unrounded probabilities) and ``process`` (records), both in one batch."""
    images = [crops[i] for idx, _ in GROUPS for i in idx]
    with encoder_runs(shipped.model) as calls:
        out = shipped.process_groups(
            [[crops[i] for i in idx] for idx, _ in GROUPS], [f"best-{g}.jpg" for g in range(len(GROUPS))],
            ids=[rid(g) for g in range(len(GROUPS))], weights=[w for _, w in GROUPS], camera="cam-7",
            timestamps=[100.0 + g for g in range(len(GROUPS))],
            track_ids=[f"video/{g}" for g in range(len(GROUPS))])
    probs, reid, search = shipped.forward(images)
    singles = shipped.process(images, [f"crop-{k}" for k in range(len(images))],
                              ids=[rid(f"crop-{k}") for k in range(len(images))])
    return out, calls, np.asarray(probs, np.float64), reid, search, singles


def _slices():
    at = 0
    for idx, w in GROUPS:
        yield slice(at, at + len(idx)), np.ones(len(idx)) if w is None else np.asarray(w, np.float64)
        at += len(idx)


def test_one_record_per_group_in_one_encoder_pass(shipped, made):
    out, calls, *_ = made
    assert len(calls) == 1 and "direct" not in calls, \
        "every crop of every group goes through the encoder together"
    assert len(out) == len(GROUPS)
    for g, (rec, uncertain) in enumerate(out):
        assert rec.id == rid(g) and rec.path == f"best-{g}.jpg"
        assert rec.camera == "cam-7" and rec.timestamp == 100.0 + g and rec.track_id == f"video/{g}"
        assert rec.model_version == shipped.model_version
        assert list(rec.attributes) == list(shipped.names)
        assert isinstance(uncertain, list) and set(uncertain) <= set(shipped.names)


def test_embeddings_are_unit_weighted_means_of_the_crops(shipped, made):
    out, _, _, reid, search, _ = made
    assert search is not None, "the shipped search head gives image-side search embeddings"
    for (rec, _), (sl, w) in zip(out, _slices()):
        assert rec.reid_embedding.shape == (shipped.reid_dim,)
        assert rec.search_embedding.shape == (shipped.search_dim,)
        assert abs(np.linalg.norm(rec.reid_embedding) - 1) < 1e-5
        assert abs(np.linalg.norm(rec.search_embedding) - 1) < 1e-5
        np.testing.assert_allclose(rec.reid_embedding, _norm(w @ np.asarray(reid[sl], np.float64)), atol=1e-5)
        np.testing.assert_allclose(rec.search_embedding, _norm(w @ np.asarray(search[sl], np.float64)),
                                   atol=1e-5)
    # groups of different people do not collapse onto one vector
    assert float(out[0][0].reid_embedding @ out[1][0].reid_embedding) < 0.9999


def test_attributes_are_the_weighted_mean_of_single_crop_probabilities(shipped, made):
    out, _, probs, _, _, singles = made
    names = list(shipped.names)
    single = np.array([[r.attributes[n] for n in names] for r in singles])   # rounded to 4 places
    for (rec, _), (sl, w) in zip(out, _slices()):
        got = np.array([rec.attributes[n] for n in names])
        np.testing.assert_allclose(got, (w / w.sum()) @ probs[sl], atol=1e-5)
        np.testing.assert_allclose(got, (w / w.sum()) @ single[sl], atol=1e-4)


def test_present_follows_the_thresholds(shipped, made):
    out = made[0]
    thr = shipped.predictor.threshold_map
    for rec, _ in out:
        assert rec.present == [n for n in shipped.names if rec.attributes[n] >= thr[n]]


def test_uncertain_where_the_crops_disagree(shipped, made):
    out, _, probs, *_ = made
    names = list(shipped.names)
    thr = np.array([shipped.predictor.threshold_map[n] for n in names])
    for (rec, uncertain), (sl, w), (idx, _) in zip(out, _slices(), GROUPS):
        votes = (w / w.sum()) @ (probs[sl] >= thr)
        split = (votes >= DISAGREEMENT) & (votes <= 1 - DISAGREEMENT)
        want = [n for n, s in zip(names, split) if s] if len(set(idx)) > 1 else []
        assert uncertain == want
    # one crop, or the same crop again and again, cannot disagree with itself
    assert out[2][1] == [] and out[3][1] == []
    # and the test crops are different enough that some group does disagree
    assert any(u for _, u in out[:2])


def test_one_description_per_group_from_the_describer(shipped, made):
    assert shipped.describer_head is not None, "the shipped models include the description model"
    out, *_, singles = made
    for rec, _ in out:
        assert isinstance(rec.description, str) and rec.description.strip()
    # a group of one crop (or of one crop repeated) is described as that crop alone
    n_before = sum(len(idx) for idx, _ in GROUPS[:2])
    assert out[2][0].description == singles[n_before].description
    assert out[3][0].description == singles[n_before + 1].description
    assert out[0][0].description != out[3][0].description


def test_text_baseline_describes_the_fused_attributes(pipeline, crops):
    """Without a search head, the description is the fused attributes as a sentence and the
    search embedding that sentence's text embedding (as for a single crop)."""
    assert pipeline.search_head is None and pipeline.describer_head is None
    out = pipeline.process_groups([crops[:3], [crops[3]]], ["a", "b"], ids=[rid("a"), rid("b")],
                                  weights=[[3.0, 1.0, 1.0], None])
    for rec, _ in out:
        assert rec.description == render_attributes(rec.present, pipeline.schema, rec.attributes)
        np.testing.assert_allclose(rec.search_embedding, pipeline.encode_query(rec.description), atol=1e-5)
    probs = np.asarray(pipeline.forward(crops[:3])[0], np.float64)
    np.testing.assert_allclose([out[0][0].attributes[n] for n in pipeline.names],
                               np.array([0.6, 0.2, 0.2]) @ probs, atol=1e-5)


@pytest.mark.parametrize("case", ["empty group", "no groups but a source", "sources", "ids",
                                  "weights of a group", "weights per group", "timestamps",
                                  "track_ids", "negative weights"])
def test_malformed_groups_are_refused(shipped, crops, case):
    groups, sources, ids = [[crops[0]], [crops[1], crops[2]]], ["a", "b"], [rid(0), rid(1)]
    kw: dict = {}
    if case == "empty group":
        groups = [[crops[0]], []]
    elif case == "no groups but a source":
        groups = []
    elif case == "sources":
        sources = ["a"]
    elif case == "ids":
        ids = [rid(0), rid(1), rid(2)]
    elif case == "weights of a group":
        kw["weights"] = [[1.0], [1.0, 2.0, 3.0]]
    elif case == "weights per group":
        kw["weights"] = [[1.0]]
    elif case == "timestamps":
        kw["timestamps"] = [1.0]
    elif case == "track_ids":
        kw["track_ids"] = ["t0", "t1", "t2"]
    elif case == "negative weights":
        kw["weights"] = [[1.0], [-1.0, -1.0]]
    with pytest.raises(ValueError):
        shipped.process_groups(groups, sources, ids=ids, **kw)


def test_no_groups_no_records(shipped):
    assert shipped.process_groups([], [], ids=[]) == []
