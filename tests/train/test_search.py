"""Search-head training: the losses, chunk targets, folding, and learning on a toy problem."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from personlens.models.embedding import EmbeddingHead, EmbeddingHeadConfig
from personlens.train.heads import (Standardize, fold_batchnorm, fold_input_standardization)
from personlens.train.search import (SearchData, SearchTrainConfig, attribute_chunk_loss,
                                     chunk_targets, retrieval_scores, sdm_loss,
                                     train_search_head)


def _unit(x):
    return F.normalize(torch.as_tensor(x, dtype=torch.float32), dim=-1)


def test_sdm_loss_by_hand():
    img = _unit([[1.0, 0.0], [0.0, 1.0]])
    txt = _unit([[1.0, 0.0], [0.0, 1.0]])
    eye = torch.eye(2, dtype=torch.bool)
    # softmax rows [e^s, 1] / (e^s + 1); KL to one-hot = -log p_ii + p_ij * (log p_ij - log eps)
    s = 5.0
    p_ii = math.exp(s) / (math.exp(s) + 1)
    p_ij = 1 - p_ii
    want = 2 * (p_ii * math.log(p_ii) + p_ij * (math.log(p_ij) - math.log(1e-8)))
    assert float(sdm_loss(img, txt, eye, s)) == pytest.approx(want, rel=1e-4)
    # with both pairs marked positive the target is uniform: identical rows give zero loss
    same = _unit([[1.0, 0.0], [1.0, 0.0]])
    assert float(sdm_loss(same, same, torch.ones(2, 2, dtype=torch.bool), s)) == pytest.approx(0, abs=1e-6)
    # ... while marking them negatives (the usual InfoNCE) punishes the identical pair
    assert float(sdm_loss(same, same, eye, s)) > 1.0


def test_sdm_does_not_punish_true_matches():
    torch.manual_seed(0)
    img = _unit(torch.randn(6, 8))
    txt = img.clone()
    txt[1] = img[0]                      # caption 1 is exactly image 0's description too
    pos = torch.eye(6, dtype=torch.bool)
    both = pos.clone()
    both[0, 1] = both[1, 0] = both[0, 0] = both[1, 1] = True
    assert float(sdm_loss(img, txt, both, 20.0)) < float(sdm_loss(img, txt, pos, 20.0))


def test_attribute_chunk_loss_ignores_unknown():
    img = _unit([[1.0, 0.0]])
    chunks = _unit([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    t = torch.tensor([[1, 0, -1]], dtype=torch.int8)
    got = float(attribute_chunk_loss(img, chunks, t, 10.0, 0.0))
    want = float(F.softplus(torch.tensor(-10.0)) + F.softplus(torch.tensor(0.0)))
    assert got == pytest.approx(want, rel=1e-5)
    t2 = torch.tensor([[1, 0, 1]], dtype=torch.int8)  # chunk 3 now counts (and is wrong)
    assert float(attribute_chunk_loss(img, chunks, t2, 10.0, 0.0)) > got


def test_chunk_targets_positives_and_safe_negatives():
    names = ["personalMale", "carryingMessengerBag", "carryingOther", "upperBodyBlack",
             "upperBodyJacket", "upperBodyRed", "personalFemale"]
    labels = np.array([[1, 1, 0, 1, 1, 0, 0],    # a man, black jacket, messenger bag
                       [0, 0, 1, 0, 0, 1, 1]])   # a woman, red top, a bag
    vocab, t = chunk_targets(labels, names)
    col = {c: i for i, c in enumerate(vocab)}
    assert t.dtype == np.int8 and t.shape == (2, len(vocab))
    assert t[0, col["man"]] == 1 and t[0, col["black jacket"]] == 1 and t[0, col["messenger bag"]] == 1
    assert t[0, col["woman"]] == 0 and t[0, col["red top"]] == 0
    assert t[0, col["bag"]] == -1          # "bag" is part of "messenger bag": not a negative
    assert t[1, col["woman"]] == 1 and t[1, col["bag"]] == 1 and t[1, col["man"]] == 0
    assert t[1, col["messenger bag"]] == 0 and t[1, col["black top"]] == 0
    assert "person" not in vocab or (t[:, col["person"]] != 0).all()


def test_fold_input_standardization_and_batchnorm_are_exact():
    torch.manual_seed(0)
    x = torch.randn(7, 2, 20) * 3 + 1
    head = EmbeddingHead(EmbeddingHeadConfig(kind="reid", in_dim=10, out_dim=5, hidden=8, pool="meanmax"))
    std = Standardize.fit(x.numpy())
    bn = torch.nn.BatchNorm1d(5).eval()
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.5, 2)
    bn.weight.data.uniform_(0.5, 1.5)
    with torch.no_grad():
        want = F.normalize(bn(head.proj(std(x[:, 0]))), dim=-1)
    fold_batchnorm(head, bn)
    fold_input_standardization(head, std)
    torch.testing.assert_close(head.forward_pooled(x[:, 0]), want, atol=1e-5, rtol=1e-4)


def _toy(n_people: int, per: int, seed: int, in_dim=16, text_dim=24, n_attr=10):
    """People with binary attributes; images = a random map of the attributes (+ noise),
    captions = another random map of the attributes (a text encoder's view)."""
    rng = np.random.default_rng(seed)
    world = np.random.default_rng(123)  # the same "encoders" for every split
    a_img = world.normal(size=(n_attr, 2 * in_dim))
    a_txt = world.normal(size=(n_attr, text_dim))
    attrs = rng.integers(0, 2, size=(n_people, n_attr)).astype(np.float32)
    pids = np.repeat(np.arange(n_people), per)
    z = attrs[pids]
    pooled = (z @ a_img)[:, None] + 0.3 * rng.normal(size=(len(pids), 2, 2 * in_dim))
    caps = z[:, None, :] * (rng.random((len(pids), 3, n_attr)) < 0.8)      # partial captions
    cap = caps @ a_txt + 0.05 * rng.normal(size=(len(pids), 3, text_dim))
    cap = cap / np.linalg.norm(cap, axis=-1, keepdims=True).clip(1e-6)
    ids = np.unique(np.round(cap, 4).reshape(len(pids) * 3, -1), axis=0, return_inverse=True)[1]
    return SearchData(pooled=pooled.astype(np.float16), pids=pids.astype(np.int64),
                      captions=cap.astype(np.float32), caption_ids=ids.reshape(len(pids), 3))


def test_learns_a_toy_text_to_image_problem():
    train, val = _toy(40, 3, seed=0), _toy(20, 2, seed=1)
    cfg = SearchTrainConfig(out_dim=24, hidden=32, epochs=25, batch_size=30, lr=3e-3,
                            attr_weight=0.0, input_dropout=0.0)
    torch.manual_seed(0)
    untrained = EmbeddingHead(EmbeddingHeadConfig(kind="search", in_dim=16, out_dim=24, hidden=32,
                                                  pool="meanmax", text_encoder="minilm",
                                                  query_proj=True, query_dim=24))
    before = retrieval_scores(untrained, val.pooled, val.captions[:, 0], val.pids, val.pids, False)
    head, summary = train_search_head(train, val, cfg, in_dim=16, log=lambda *_: None)
    hist = summary["history"]
    assert hist[-1]["loss_sdm"] < 0.5 * hist[0]["loss_sdm"]
    after = retrieval_scores(head, val.pooled, val.captions[:, 0], val.pids, val.pids, False)
    assert after["mAP"] > before["mAP"] + 20 and after["R1"] > 40
    assert summary["val"]["mAP"] == pytest.approx(after["mAP"], abs=1e-6)  # folding is exact
    assert head.config.notes["best_epoch"] == summary["best_epoch"]


def test_attribute_loss_runs_and_decreases():
    train = _toy(30, 2, seed=2)
    rng = np.random.default_rng(0)
    k = 10
    chunk_emb = F.normalize(torch.randn(k, 24), dim=-1).numpy()
    targets = rng.choice(np.array([-1, 0, 1], np.int8), size=(len(train.pids), k))
    train = SearchData(train.pooled, train.pids, train.captions, train.caption_ids, targets, chunk_emb)
    cfg = SearchTrainConfig(out_dim=24, hidden=0, epochs=15, batch_size=20, lr=3e-3, input_dropout=0)
    _, summary = train_search_head(train, None, cfg, in_dim=16, log=lambda *_: None)
    h = summary["history"]
    assert "loss_chunks" in h[0] and h[-1]["loss_chunks"] < h[0]["loss_chunks"]
    assert summary["best_epoch"] == cfg.epochs  # no validation: the last epoch


def test_search_data_checks_shapes():
    d = _toy(3, 2, seed=0)
    with pytest.raises(ValueError):
        SearchData(d.pooled, d.pids[:-1], d.captions, d.caption_ids)
    with pytest.raises(ValueError):
        SearchData(d.pooled, d.pids, d.captions, d.caption_ids, chunk_targets=np.zeros((6, 2), np.int8))
