"""``evaluate_reid``: learned head and baselines on tiny VIPeR / CUHK03-subset roots."""
from __future__ import annotations

import json

import numpy as np
import pytest
from heads_testlib import fake_cuhk03, fake_peta, random_head

from personlens.eval.reid import evaluate_trials, reid_trials, run_reid_eval

HEADLINE = ("R1", "R5", "R10", "mAP", "mINP", "cmc")


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    d = tmp_path_factory.mktemp("reid")
    return fake_peta(d / "peta", n=12, viper_ids=5), fake_cuhk03(d / "cuhk")


def test_viper_report_has_learned_and_baselines(roots, par_model_dir, tmp_path, monkeypatch):
    import personlens.inference.pooled as pooled

    head = random_head("reid", tmp_path / "head")
    encoded = []
    real = pooled._encode
    monkeypatch.setattr(pooled, "_encode", lambda *a, **k: (encoded.append(len(a[2])), real(*a, **k))[1])
    out, png = run_reid_eval(tmp_path / "viper.json", dataset="viper", root=roots[0], trials=3,
                             par_dir=par_model_dir, reid_head=head, cache_root=tmp_path / "c",
                             progress=False, log=lambda *_: None)
    data = json.loads((tmp_path / "viper.json").read_text())
    assert data == out and png.exists() and png.stat().st_size > 1000
    base = {"learned", "imagenet_baseline", "par_encoder_baseline"}
    assert set(data["methods"]) == base | {m + "+camera" for m in base}
    assert "camera" in data["camera_centring"]
    for m in data["methods"].values():
        assert all(k in m for k in HEADLINE) and m["trials"] == 3 and "R1_std" in m
        assert m["num_queries"] == 2 and m["num_gallery"] == 2  # half of 5 ids, other camera
    n = len({it.path for t in reid_trials("viper", roots[0], 3) for it in t.query + t.gallery})
    assert data["trials"] == 3 and data["num_images"] == n and data["reid_head"] == str(head)
    assert encoded == [n, n]  # every image once per encoder (PAR, ImageNet), for all trials
    # the fixture PAR model's encoder is the ImageNet one: both baselines agree exactly
    a, b = data["methods"]["imagenet_baseline"], data["methods"]["par_encoder_baseline"]
    assert a["mAP"] == b["mAP"] and a["cmc"] == b["cmc"]


def test_cuhk03_subset_without_head(roots, par_model_dir, tmp_path):
    out, _ = run_reid_eval(tmp_path / "cuhk.json", dataset="cuhk03-subset", root=roots[1],
                           par_dir=par_model_dir, reid_head=None, cache_root=tmp_path / "c",
                           progress=False, imagenet_baseline=False, log=lambda *_: None)
    assert out["methods"]["learned"] is None and out["methods"]["learned+camera"] is None
    m = out["methods"]["par_encoder_baseline"]
    assert m["num_queries"] == 6 and m["num_gallery"] == 6 and "trials" not in m


def test_trials_reuse_one_feature_matrix():
    """Each trial indexes rows of one matrix; a perfect feature gives 100%."""
    from personlens.data.reid import ReidItem, ReidTrial

    items = [ReidItem(f"p{i}_{c}", i, c) for i in range(4) for c in (1, 2)]
    index = {it.path: n for n, it in enumerate(items)}
    feats = np.zeros((8, 4))
    feats[np.arange(8), [it.pid for it in items]] = 1
    t = ReidTrial(0, [items[0], items[2]], [items[1], items[3], items[5]], [])
    res = evaluate_trials({"perfect": feats}, [t, t], index)
    assert len(res["perfect"]) == 2 and res["perfect"][0].mAP == 100.0


def test_unknown_dataset():
    with pytest.raises(ValueError, match="viper"):
        reid_trials("market", "/nonexistent")


def test_camera_centring_is_scored_beside_raw_features():
    """A per-camera offset that hides identity: raw features fail, centred ones find everyone."""
    from personlens.data.reid import ReidItem, ReidTrial

    n, rng = 12, np.random.default_rng(1)
    items = [ReidItem(f"p{i}_{c}", i, c) for c in (1, 2) for i in range(n)]
    index = {it.path: k for k, it in enumerate(items)}
    offset = {1: rng.normal(size=16) * 10, 2: rng.normal(size=16) * 10}
    ident = rng.normal(size=(n, 16))
    feats = np.stack([ident[it.pid] + offset[it.camid] for it in items])
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    t = ReidTrial(0, items[:n], items[n:], [])
    res = evaluate_trials({"f": feats}, [t], index, camera_centring=True)
    assert set(res) == {"f", "f+camera"}
    assert res["f+camera"][0].mAP == 100.0 and res["f"][0].mAP < 50.0
    masked = evaluate_trials({"f": feats}, [t], index, [np.arange(n) < 3], camera_centring=True)
    assert masked["f+camera"][0].num_queries == 3


def test_a_head_with_a_colour_part_is_scored_whole_and_by_part(roots, par_model_dir, tmp_path):
    import torch

    from personlens.models.lomo import LomoConfig
    from personlens.models.embedding import load_embedding_head, save_embedding_head, with_lomo

    cfg = LomoConfig(height=40, width=40, bins=2, scales=2, retinex_sigmas=(3.0,))
    g = torch.Generator().manual_seed(0)
    head = with_lomo(load_embedding_head(random_head("reid", tmp_path / "h")),
                       torch.rand(cfg.dim, generator=g), torch.randn(cfg.dim, 4, generator=g),
                       0.5, cfg)
    d = save_embedding_head(head, tmp_path / "hc")
    out, _ = run_reid_eval(tmp_path / "viper.json", dataset="viper", root=roots[0], trials=2,
                           par_dir=par_model_dir, reid_head=d, cache_root=tmp_path / "c",
                           progress=False, imagenet_baseline=False, log=lambda *_: None)
    parts = {"learned", "learned_without_colour", "colour_only", "par_encoder_baseline"}
    assert set(out["methods"]) == parts | {m + "+camera" for m in parts}
    assert "colour weight 0.5" in out["methods"]["learned"]["description"]
    assert list((tmp_path / "c" / "colour").rglob("reid-viper-*.npy"))   # cached for re-runs
