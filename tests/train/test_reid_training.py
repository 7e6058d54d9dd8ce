"""Re-ID head training: batch-hard triplet, PK sampling, data assembly, a toy problem."""
from __future__ import annotations

import csv
import math
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from personlens.eval.retrieval import evaluate_ranking
from personlens.inference.pooled import head_embeddings, mean_pooled_embeddings
from personlens.train.reid import (PKSampler, ReidTrainConfig, batch_hard_triplet,
                                   domain_query_gallery, reid_training_items, train_reid_head)


def test_batch_hard_triplet_by_hand():
    # 1-D points: a0=0, a1=1 (label 0); b0=3, b1=7 (label 1)
    x = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    y = torch.tensor([0, 0, 1, 1])
    # hardest positive / negative: a0 (1, 3), a1 (1, 2), b0 (4, 2), b1 (4, 6)
    want = np.mean([max(0, 1 - 3 + 0.5), max(0, 1 - 2 + 0.5), max(0, 4 - 2 + 0.5), max(0, 4 - 6 + 0.5)])
    assert float(batch_hard_triplet(x, y, margin=0.5)) == pytest.approx(want)
    soft = np.mean([math.log1p(math.exp(g)) for g in (1 - 3, 1 - 2, 4 - 2, 4 - 6)])
    assert float(batch_hard_triplet(x, y, soft=True)) == pytest.approx(soft, rel=1e-5)
    # no negatives in the batch: zero loss (and a gradient path)
    assert float(batch_hard_triplet(x, torch.zeros(4, dtype=torch.long))) == 0.0


def test_triplet_gradient_is_finite_with_duplicates():
    x = torch.randn(3, 4, requires_grad=True)
    f = F.normalize(torch.cat([x, x[:1]]), dim=-1)  # a sample drawn twice (same view)
    batch_hard_triplet(f, torch.tensor([0, 0, 1, 0])).backward()
    assert torch.isfinite(x.grad).all()


def test_pk_sampler_yields_p_identities_times_k():
    labels = np.array([0] * 6 + [1] * 2 + [2] * 5 + [3] * 1 + [4] * 4 + [5] * 3)
    s = PKSampler(labels, p=2, k=4, seed=0)
    batches = list(s)
    assert len(batches) == len(s) == 3
    seen = set()
    for b in batches:
        assert b.shape == (8,)
        c = Counter(labels[b].tolist())
        assert len(c) == 2 and set(c.values()) == {4}
        seen |= set(c)
        for pid, n in c.items():  # identities with >= k images: no repeats
            if (labels == pid).sum() >= 4:
                assert len(set(b[labels[b] == pid].tolist())) == 4
    assert seen == set(range(6))  # an epoch visits every identity
    assert [b.tolist() for b in PKSampler(labels, 2, 4, seed=0)] == [b.tolist() for b in batches]
    assert len(list(PKSampler(labels, p=100, k=2))) == 1  # fewer identities than p


def _toy(n_ids, per, seed, dim=16):
    """Identities = prototypes in a subspace hidden among nuisance dimensions with large
    variance (which the untrained mean-pooled baseline cannot ignore)."""
    rng = np.random.default_rng(seed)
    proto = rng.normal(size=(n_ids, 4))
    world = np.random.default_rng(7)
    mix = world.normal(size=(4, 2 * dim))
    pids = np.repeat(np.arange(n_ids), per)
    signal = (proto[pids] @ mix)[:, None]
    nuisance = 3.0 * rng.normal(size=(len(pids), 2, 2 * dim)) * (world.random(2 * dim) < 0.7)
    pooled = signal + nuisance + 0.2 * rng.normal(size=(len(pids), 2, 2 * dim))
    cams = np.tile(np.arange(per) % 2 + 1, n_ids)
    return pooled.astype(np.float16), pids, cams


def test_learns_a_toy_reid_problem():
    x, y, _ = _toy(30, 4, seed=0)
    vx, vy, vc = _toy(12, 4, seed=1)
    q = np.flatnonzero(np.arange(len(vy)) % 4 == 0)
    g = np.setdiff1d(np.arange(len(vy)), q)
    val = {"pooled": vx, "pids": vy, "camids": vc, "query": q, "gallery": g}
    cfg = ReidTrainConfig(out_dim=8, hidden=32, epochs=20, p=6, k=4, lr=3e-3, input_dropout=0.0)
    head, summary = train_reid_head(x, y, cfg, in_dim=16, val=val, log=lambda *_: None)
    h = summary["history"]
    assert h[-1]["loss_id"] < h[0]["loss_id"]
    assert summary["feature"] in ("pre_bn", "bnneck") and summary["num_ids"] == 30

    def m(feats):
        return evaluate_ranking(feats[q] @ feats[g].T, vy[q], vy[g], vc[q], vc[g]).to_dict()

    learned, base = m(head_embeddings(head, vx, False)), m(mean_pooled_embeddings(vx, False))
    assert learned["mAP"] > base["mAP"] + 15
    # the saved (folded) head gives exactly the validation numbers of the chosen epoch/feature
    assert learned["mAP"] == pytest.approx(summary["val"]["mAP"], abs=1e-4)


def test_reid_training_items_offsets_sources(tmp_path):
    from cli_testlib import noise_image

    cuhk = tmp_path / "cuhk"
    (cuhk / "train").mkdir(parents=True)
    for pid in (1000, 1001):
        for k in (0, 5):
            noise_image(pid + k, (12, 30)).save(cuhk / "train" / f"{pid}_{k:02d}.jpg")
    peta = tmp_path / "peta"
    peta.mkdir()
    rows = [("TownCentre", 5), ("TownCentre", 5), ("3DPeS", 5), ("CAVIAR4REID", 9),
            ("i-LID", 2), ("VIPeR", 5)]
    with open(peta / "identities.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "file", "subset", "person_id", "camera", "original_name", "width", "height"])
        for i, (sub, pid) in enumerate(rows, 1):
            w.writerow([i, f"{i:05d}.png", sub, pid, "", "x", 10, 20])
    paths, labels, sources = reid_training_items(peta, cuhk)
    assert len(paths) == 4 + 5  # VIPeR left out
    assert labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 4, 5]
    assert sources["CUHK03-subset train"] == {"images": 4, "identities": 2}
    assert sources["PETA TownCentre"] == {"images": 2, "identities": 1}
    assert not any("VIPeR" in k for k in sources)
    with pytest.raises(ValueError):
        reid_training_items(None, None)


def test_domain_query_gallery_one_query_per_identity_with_a_match():
    pids = ["a", "a", "b", "c", "c", "c"]
    q, g = domain_query_gallery(pids, seed=3)
    assert sorted(pids[i] for i in q) == ["a", "c"]           # "b" has no second image
    assert sorted(q + g) == list(range(6)) and not set(q) & set(g)
    assert [i for i in g if pids[i] == "b"] == [2]            # kept as a distractor
    assert domain_query_gallery(pids, seed=3) == (q, g)


def test_fused_output_is_chosen_when_the_untrained_feature_helps():
    # identity signal in the raw features that the few training identities do not cover well
    x, y, _ = _toy(6, 4, seed=0)
    vx, vy, vc = _toy(12, 4, seed=1)
    rng = np.random.default_rng(0)
    vx = vx.astype(np.float32)
    vx[..., :16] = np.repeat(rng.normal(size=(12, 1, 16)) * 5, 4, axis=0) + vx[..., :16] * 0.1
    q = np.flatnonzero(np.arange(len(vy)) % 4 == 0)
    g = np.setdiff1d(np.arange(len(vy)), q)
    val = {"pooled": vx.astype(np.float16), "pids": vy, "camids": vc, "query": q, "gallery": g}
    cfg = ReidTrainConfig(out_dim=8, hidden=32, epochs=3, p=6, k=4, input_dropout=0.0)
    head, summary = train_reid_head(x, y, cfg, in_dim=16, val=val, log=lambda *_: None)
    assert summary["base_weight"] > 0 and head.config.base_weight == summary["base_weight"]
    assert head_embeddings(head, val["pooled"], False).shape == (len(vy), 8 + 16)


def _toy_colour(pids, informative: str, seed: int) -> np.ndarray:
    """Descriptors as ``colour_descriptor_config`` makes them (colour half, then texture half
    at weight 0.5) for identities ``pids``: the ``informative`` half ("colour", "texture" or
    neither) holds each identity in a shared 6-d subspace, the rest is noise."""
    from personlens.models.lomo import LomoConfig

    cfg = LomoConfig(texture_weight=0.5)
    rng = np.random.default_rng(seed)
    world = np.random.default_rng(11)
    proto = rng.normal(size=(int(pids.max()) + 1, 6)).astype(np.float32)
    halves = []
    for name, dim in (("colour", cfg.lomo_dim), ("texture", cfg.texture_dim)):
        noise = rng.normal(size=(len(pids), dim)).astype(np.float32)
        if informative == name:
            noise = proto[pids] @ world.normal(size=(6, dim)).astype(np.float32) + 0.3 * noise
        halves.append(noise / np.linalg.norm(noise, axis=1, keepdims=True))
    return np.concatenate([np.sqrt(0.5) * halves[0], np.sqrt(0.5) * halves[1]], 1)


@pytest.mark.parametrize("informative", ["colour", "texture", "neither"])
def test_colour_and_texture_weights_are_chosen_on_validation(informative):
    from personlens.train.reid import add_lomo_part

    x, y, _ = _toy(20, 4, seed=0)
    vx, vy, vc = _toy(12, 4, seed=1)
    q = np.flatnonzero(np.arange(len(vy)) % 4 == 0)
    g = np.setdiff1d(np.arange(len(vy)), q)
    cfg = ReidTrainConfig(out_dim=8, hidden=32, epochs=2, p=6, k=4, input_dropout=0.0,
                          lomo_dim=8, colour_pca_dim=40, colour_texture_weights=(0.0, 0.5))
    head, _ = train_reid_head(x, y, cfg, in_dim=16, log=lambda *_: None)
    val = {"pooled": vx, "pids": vy, "camids": vc, "query": q, "gallery": g,
           "colour": _toy_colour(vy, informative, seed=2)}
    out, summary = add_lomo_part(head, _toy_colour(y, informative, seed=3), y, cfg, val,
                                   log=lambda *_: None)
    # colour weight 0 is scored once; every other pair of weights once
    assert len(summary["val"]) == 1 + 2 * 3
    if informative == "neither":   # noise only lowers the ranking: the head is unchanged
        assert summary["weight"] == 0 and out is head and not out.needs_lomo
        return
    assert summary["weight"] > 0 and out.needs_lomo and out.config.lomo_dim == 8
    # the texture half is kept exactly when it carries the identities
    assert (summary["texture_weight"] > 0) == (informative == "texture")
    assert out.lomo_config.texture_weight == summary["texture_weight"]
    # the head's descriptors are those of its own config: re-weight the validation ones
    from personlens.models.lomo import LomoConfig, reweight_texture

    desc = reweight_texture(val["colour"], LomoConfig(texture_weight=0.5), summary["texture_weight"])
    emb = head_embeddings(out, vx, False, colour=desc)
    assert emb.shape == (len(vy), 8 + 8)
    r1 = evaluate_ranking(emb[q] @ emb[g].T, vy[q], vy[g], vc[q], vc[g]).cmc[1]
    key = f"texture {summary['texture_weight']} colour {summary['weight']}"
    assert r1 == pytest.approx(summary["val"][key]["R1"])
    with pytest.raises(ValueError, match="colour"):
        head_embeddings(out, vx, False)


def test_colour_part_is_skipped_with_a_single_training_identity():
    from personlens.train.reid import add_lomo_part

    x, y, _ = _toy(2, 4, seed=0)
    cfg = ReidTrainConfig(out_dim=8, hidden=32, epochs=1, p=2, k=4, lomo_dim=8)
    head, _ = train_reid_head(x, y, cfg, in_dim=16, log=lambda *_: None)
    one = np.zeros(len(y), int)
    out, summary = add_lomo_part(head, _toy_colour(one, "colour", seed=3), one, cfg,
                                   log=lambda *_: None)
    assert out is head and summary["weight"] == 0.0 and summary["dim"] == 0
