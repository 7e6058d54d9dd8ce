"""``evaluate_search``: learned head and attributes-as-text baseline on a tiny PETA root."""
from __future__ import annotations

import json

import numpy as np
import pytest
from crops_testlib import crop_image
from heads_testlib import fake_peta, random_head

from personlens.data.peta import PETA
from personlens.eval.search import baseline_gallery, eval_queries, run_search_eval

HEADLINE = ("R1", "R5", "R10", "mAP", "mINP", "cmc")


@pytest.fixture(scope="module")
def peta_root(tmp_path_factory):
    return fake_peta(tmp_path_factory.mktemp("peta"))


def test_learned_and_baseline_in_one_report(peta_root, par_model_dir, pipeline, tmp_path):
    head = random_head("search", tmp_path / "head")
    out, png = run_search_eval(tmp_path / "r" / "search.json", root=peta_root, split="test",
                               par_dir=par_model_dir, search_head=head, cache_root=tmp_path / "c",
                               progress=False, text_encoder=pipeline.text_encoder, log=lambda *_: None)
    data = json.loads((tmp_path / "r" / "search.json").read_text())
    assert png.exists() and png.suffix == ".png" and png.stat().st_size > 1000
    assert set(data["methods"]) == {"learned", "baseline"}
    for m in data["methods"].values():
        assert all(k in m for k in HEADLINE) and len(m["cmc"]) == len(data["cmc_ranks"]) == 20
        assert m["num_queries"] == m["num_gallery"] == data["num_images"] == 5
        assert 0 <= m["R1"] <= m["R5"] <= m["R10"] <= 100
    assert data["split"] == "test" and data["search_head"] == str(head)
    assert "eval" in data["queries"] and data["examples"]
    assert data == json.loads(json.dumps(out))


def test_without_a_head_only_the_baseline(peta_root, par_model_dir, pipeline, tmp_path):
    out, _ = run_search_eval(tmp_path / "s.json", root=peta_root, split="val", par_dir=par_model_dir,
                             search_head=None, cache_root=tmp_path / "c", progress=False,
                             text_encoder=pipeline.text_encoder, log=lambda *_: None)
    assert out["methods"]["learned"] is None and out["methods"]["baseline"]["num_queries"] == 3


def test_queries_use_eval_style_and_are_fixed(peta_root):
    from personlens.text.captions import EVAL_TEMPLATES, CaptionGenerator

    ds = PETA(peta_root, "test", attributes="all")
    q = eval_queries(ds, seed=0)
    assert len(q) == len(ds) and q == eval_queries(ds, seed=0)
    gen = CaptionGenerator("eval", seed=0)
    names = ds.schema.names
    assert q[2] == gen.generate(dict(zip(names, ds.labels[2])), n=1, key=2)[0]
    assert EVAL_TEMPLATES  # the eval style has its own templates


def test_baseline_gallery_is_the_pipelines_search_embedding(pipeline):
    images = [crop_image(i) for i in range(4)]
    probs, _, _ = pipeline.forward(images)
    recs = pipeline.process(images, [f"i{i}" for i in range(4)])
    emb, sentences = baseline_gallery(pipeline, [f"i{i}" for i in range(4)], probs)
    assert sentences == [r.description for r in recs]
    np.testing.assert_allclose(emb, np.stack([r.search_embedding for r in recs]), atol=1e-5)
