"""Retrieval metrics: hand-computed cases and a brute-force reference."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from personlens.eval.retrieval import RetrievalMetrics, evaluate_ranking

# 2 queries x 4 gallery, worked out on paper.
# query 0: pid 1, cam 1; query 1: pid 2, cam 1
# gallery: g0 pid 1 cam 2 | g1 pid 2 cam 2 | g2 pid 1 cam 1 | g3 pid 3 cam 1
SIM = np.array([[0.2, 0.9, 0.5, 0.1],
                [0.3, 0.4, 0.8, 0.6]])
Q_PIDS, G_PIDS = [1, 2], [1, 2, 1, 3]
Q_CAMS, G_CAMS = [1, 1], [2, 2, 1, 1]


def test_hand_computed_with_cameras():
    # q0 ranking g1 g2 g0 g3; g2 is pid 1 in cam 1 = same view, removed -> g1(x) g0(v) g3(x):
    #   first hit rank 2, AP = 1/2, INP = 1/2
    # q1 ranking g2 g3 g1 g0 -> hit at rank 3: AP = 1/3, INP = 1/3
    m = evaluate_ranking(SIM, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, ranks=(1, 2, 3))
    assert m.cmc == {1: 0.0, 2: 50.0, 3: 100.0}
    assert m.mAP == pytest.approx(100 * (1 / 2 + 1 / 3) / 2)
    assert m.mINP == pytest.approx(100 * (1 / 2 + 1 / 3) / 2)
    assert (m.num_queries, m.num_skipped, m.num_gallery) == (2, 0, 4)
    assert m.per_query_ap == pytest.approx((1 / 2, 1 / 3))


def test_hand_computed_text_to_image_keeps_same_camera():
    # without cameras q0 keeps g2: hits at ranks 2 and 3 -> AP = (1/2 + 2/3)/2, INP = 2/3
    m = evaluate_ranking(SIM, Q_PIDS, G_PIDS, ranks=(1, 2, 3))
    assert m.cmc == {1: 0.0, 2: 50.0, 3: 100.0}
    assert m.mAP == pytest.approx(100 * ((1 / 2 + 2 / 3) / 2 + 1 / 3) / 2)  # 45.83
    assert m.mINP == pytest.approx(100 * (2 / 3 + 1 / 3) / 2)  # 50
    assert m.to_dict() == {"R1": 0.0, "R2": 50.0, "R3": 100.0, "mAP": m.mAP, "mINP": m.mINP,
                           "num_queries": 2, "num_skipped": 0, "num_gallery": 4}


def test_query_without_valid_match_is_skipped_and_counted():
    # query pid 3 cam 1: its only gallery image g3 is in cam 1 too -> no valid match
    sim = np.vstack([SIM, [0.0, 0.0, 0.0, 1.0]])
    m = evaluate_ranking(sim, [1, 2, 3], G_PIDS, [1, 1, 1], G_CAMS, ranks=(1, 2, 3))
    assert (m.num_queries, m.num_skipped) == (2, 1)
    assert m.cmc == {1: 0.0, 2: 50.0, 3: 100.0}
    # text -> image: the same query counts, and is a rank-1 hit
    m = evaluate_ranking(sim, [1, 2, 3], G_PIDS, ranks=(1,))
    assert (m.num_queries, m.num_skipped) == (3, 0)
    assert m.rank(1) == pytest.approx(100 / 3)


def test_perfect_ranking_and_worst_ranking():
    pids = np.array([0, 1, 2, 3])
    m = evaluate_ranking(np.eye(4), pids, pids)
    assert m.to_dict()["R1"] == 100.0 and m.mAP == 100.0 and m.mINP == 100.0
    m = evaluate_ranking(-np.eye(4), pids, pids, ranks=(1, 3, 4))
    assert m.cmc == {1: 0.0, 3: 0.0, 4: 100.0}
    assert m.mAP == pytest.approx(25.0) and m.mINP == pytest.approx(25.0)


def test_ties_keep_gallery_order():
    m = evaluate_ranking(np.zeros((1, 3)), [7], [5, 7, 7], ranks=(1, 2))
    assert m.cmc == {1: 0.0, 2: 100.0}
    assert m.mAP == pytest.approx(100 * (1 / 2 + 2 / 3) / 2)
    assert m.mINP == pytest.approx(100 * 2 / 3)


def test_rank_beyond_gallery_size():
    m = evaluate_ranking([[0.1, 0.9]], [1], [1, 2], ranks=(1, 5, 10))
    assert m.cmc == {1: 0.0, 5: 100.0, 10: 100.0}


def _reference(sim, qp, gp, qc=None, gc=None, ranks=(1, 5, 10)):
    """Definitions written out plainly, one query at a time."""
    hits_at, aps, inps = [], [], []
    for i in range(len(qp)):
        order = sorted(range(len(gp)), key=lambda j: (-sim[i][j], j))
        if qc is not None:
            order = [j for j in order if not (gp[j] == qp[i] and gc[j] == qc[i])]
        rel = [gp[j] == qp[i] for j in order]
        if not any(rel):
            continue
        pos = [r + 1 for r, x in enumerate(rel) if x]
        hits_at.append(pos[0])
        aps.append(sum((n + 1) / p for n, p in enumerate(pos)) / len(pos))
        inps.append(len(pos) / pos[-1])
    cmc = {k: 100 * sum(h <= k for h in hits_at) / len(hits_at) for k in ranks}
    return cmc, 100 * sum(aps) / len(aps), 100 * sum(inps) / len(inps), len(aps)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("cams", [False, True])
def test_matches_brute_force_reference(seed, cams):
    rng = np.random.default_rng(seed)
    nq, ng = 13, 40
    sim = rng.integers(0, 6, size=(nq, ng)).astype(float)  # many ties
    qp, gp = rng.integers(0, 8, nq), rng.integers(0, 8, ng)
    qc, gc = (rng.integers(0, 3, nq), rng.integers(0, 3, ng)) if cams else (None, None)
    ranks = (1, 3, 5, 10)
    m = evaluate_ranking(sim, qp, gp, qc, gc, ranks=ranks, chunk=4)
    cmc, ap, inp, n = _reference(sim.tolist(), qp.tolist(), gp.tolist(),
                                 None if qc is None else qc.tolist(),
                                 None if gc is None else gc.tolist(), ranks)
    assert m.cmc == pytest.approx(cmc)
    assert m.mAP == pytest.approx(ap) and m.mINP == pytest.approx(inp)
    assert m.num_queries == n and m.num_queries + m.num_skipped == nq


def test_input_validation():
    with pytest.raises(ValueError, match="both"):
        evaluate_ranking(SIM, Q_PIDS, G_PIDS, q_camids=Q_CAMS)
    with pytest.raises(ValueError, match="q_pids"):
        evaluate_ranking(SIM, [1], G_PIDS)
    with pytest.raises(ValueError, match="g_camids"):
        evaluate_ranking(SIM, Q_PIDS, G_PIDS, Q_CAMS, [1, 2])
    with pytest.raises(ValueError, match="NaN"):
        evaluate_ranking([[np.nan, 1.0]], [1], [1, 2])
    with pytest.raises(ValueError, match="no.*match|none of"):
        evaluate_ranking(SIM, [8, 9], G_PIDS)
    with pytest.raises(ValueError, match="ranks"):
        evaluate_ranking(SIM, Q_PIDS, G_PIDS, ranks=(0, 1))
    with pytest.raises(ValueError, match=r"\(Q, G\)"):
        evaluate_ranking([1.0, 2.0], [1], [1, 2])


def test_metrics_dataclass_is_validated_and_frozen():
    m = RetrievalMetrics(cmc={5: 80.0, 1: 50.0}, mAP=40.0, mINP=20.0, num_queries=3)
    assert list(m.cmc) == [1, 5]
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.mAP = 1.0
    with pytest.raises(KeyError, match="rank 10"):
        m.rank(10)
    for bad in (dict(cmc={1: 101.0}), dict(cmc={1: 60.0, 5: 50.0}), dict(mAP=-1.0),
                dict(mINP=float("nan")), dict(cmc={0: 10.0}), dict(cmc={}),
                dict(num_queries=0)):
        kwargs = dict(cmc={1: 50.0}, mAP=40.0, mINP=20.0, num_queries=3) | bad
        with pytest.raises(ValueError):
            RetrievalMetrics(**kwargs)
