"""PersonPipeline: one encoder pass -> attributes, search and re-ID embeddings; pluggable heads."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from crops_testlib import crop_image, write_crops
from encoder_testlib import encoder_runs

from personlens.data.schema import PETA_SCHEMA
from personlens.models.embedding import (EmbeddingHead, EmbeddingHeadConfig, load_embedding_head,
                                         save_embedding_head)
from personlens.inference.pipeline import PersonPipeline, render_attributes
from personlens.inference.predict import PredictionError
from personlens.inference.records import PersonRecord


@pytest.fixture(scope="module")
def images():
    return [crop_image(i) for i in range(6)]


def test_render_attributes_uses_schema_phrases():
    schema = PETA_SCHEMA.subset(["personalMale", "accessoryHat", "carryingBackpack", "upperBodyBlack"])
    text = render_attributes(["carryingBackpack", "accessoryHat", "personalMale"], schema)
    assert text == "a person, a man, wearing a hat, carrying a backpack"
    assert render_attributes([], schema) == "a person"


def test_one_encoder_pass_per_batch(pipeline, images):
    with encoder_runs(pipeline.model) as calls:
        recs = pipeline.process(images, [f"img{i}" for i in range(len(images))])
    views = 2 if pipeline.predictor.encoder.flip_tta else 1
    assert calls == [views * len(images)] and len(recs) == len(images)


def test_records_are_valid_and_consistent(pipeline, images):
    recs = pipeline.process(images, [f"img{i}" for i in range(len(images))], camera="cam3",
                            timestamps=[float(i) for i in range(len(images))])
    probs = pipeline.predictor.probabilities(images)  # the `personlens attributes` path
    for i, r in enumerate(recs):
        assert isinstance(r, PersonRecord) and r.model_version == pipeline.model_version
        assert r.camera == "cam3" and r.timestamp == float(i) and r.path == f"img{i}"
        assert list(r.attributes) == pipeline.names
        np.testing.assert_allclose(list(r.attributes.values()), probs[i], atol=1e-3)
        assert r.search_embedding.shape == (pipeline.search_dim,) == (384,)
        assert r.reid_embedding.shape == (pipeline.reid_dim,) == (1280,)
        # the search baseline: the rendered attributes, embedded by the text encoder
        assert r.description == render_attributes(r.present, pipeline.schema, r.attributes)
        np.testing.assert_allclose(r.search_embedding, pipeline.encode_query(r.description), atol=1e-5)
    # ids default to a hash of the pixels when the source is not a file
    assert len({r.id for r in recs}) == len(images)


def test_reid_baseline_is_normalised_mean_token(pipeline, images):
    flip = pipeline.model.config.flip_tta
    x = torch.stack([pipeline.preprocess(im) for im in images[:2]]).contiguous(memory_format=torch.channels_last)
    if flip:  # the fixture model averages the crop and its mirror image
        x = torch.cat([x, x.flip(-1)])
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16,
                                               enabled=pipeline.predictor.precision == "bf16"):
        feats = pipeline.model.encoder(x).float().mean(1)
    if flip:
        feats = (feats[:2] + feats[2:]) / 2
    want = torch.nn.functional.normalize(feats, dim=-1).numpy()
    got = np.stack([r.reid_embedding for r in pipeline.process(images[:2], ["a", "b"])])
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_encode_query(pipeline):
    q = pipeline.encode_query("a man with a backpack")
    assert q.dtype == np.float32 and q.shape == (384,) and abs(np.linalg.norm(q) - 1) < 1e-4
    with pytest.raises(ValueError):
        pipeline.encode_query("  ")


def test_records_from_paths_order_errors_and_ids(pipeline, tmp_path):
    paths = write_crops(tmp_path, 3)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    order = [paths[0], bad, paths[1], tmp_path / "missing.png", paths[2]]
    out = list(pipeline.records_from_paths(order, batch_size=2))
    assert [type(o).__name__ for o in out] == ["PersonRecord", "PredictionError", "PersonRecord",
                                               "PredictionError", "PersonRecord"]
    assert isinstance(out[1], PredictionError) and out[1].image == str(bad)
    for o, p in zip(out, order):
        if isinstance(o, PersonRecord):
            assert o.id == hashlib.sha256(p.read_bytes()).hexdigest() and o.path == str(p)
    # process() given a real file path hashes the file's bytes too
    from PIL import Image

    r = pipeline.process([Image.open(paths[0]).convert("RGB")], [str(paths[0])])[0]
    assert r.id == out[0].id


def test_model_version_is_stable_and_tracks_heads(pipeline, par_model_dir, tmp_path):
    same = PersonPipeline(par_model_dir, text_encoder=pipeline.text_encoder)
    assert same.model_version == pipeline.model_version
    torch.manual_seed(0)
    reid = EmbeddingHead(EmbeddingHeadConfig(kind="reid", in_dim=1280, out_dim=64, hidden=32))
    d = save_embedding_head(reid, tmp_path / "reid")
    with_reid = PersonPipeline(par_model_dir, reid_head=d, text_encoder=pipeline.text_encoder)
    assert with_reid.model_version != pipeline.model_version
    assert with_reid.versions["attributes"] == pipeline.versions["attributes"]
    torch.nn.init.zeros_(reid.proj[0].bias)
    reid.proj[0].bias.data[0] = 1.0
    d2 = save_embedding_head(reid, tmp_path / "reid2")
    changed = PersonPipeline(par_model_dir, reid_head=d2, text_encoder=pipeline.text_encoder)
    assert changed.model_version not in (with_reid.model_version, pipeline.model_version)


def test_trained_heads_are_pluggable(pipeline, par_model_dir, tmp_path, images):
    torch.manual_seed(1)
    search = EmbeddingHead(EmbeddingHeadConfig(kind="search", in_dim=1280, out_dim=384,
                                               text_encoder="minilm", query_proj=True, query_dim=384))
    reid = EmbeddingHead(EmbeddingHeadConfig(kind="reid", in_dim=1280, out_dim=96, pool="meanmax"))
    sd, rd = save_embedding_head(search, tmp_path / "s"), save_embedding_head(reid, tmp_path / "r")
    loaded = load_embedding_head(sd, kind="search")
    for a, b in zip(loaded.state_dict().values(), search.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="reid head"):
        load_embedding_head(rd, kind="search")
    p = PersonPipeline(par_model_dir, search_head=sd, reid_head=rd, text_encoder=pipeline.text_encoder)
    assert p.search_dim == 384 and p.reid_dim == 96
    recs = p.process(images[:3], ["a", "b", "c"])
    assert all(r.description is None and r.reid_embedding.shape == (96,) for r in recs)
    # the search embedding comes from the head, the query through the head's projection
    assert not np.allclose(recs[0].search_embedding, pipeline.encode_query("a person"))
    q = p.encode_query("a person")
    with torch.inference_mode():
        want = search.encode_query(pipeline.text_encoder.encode(["a person"]).float())[0].numpy()
    np.testing.assert_allclose(q, want, atol=1e-5)
    # a head for another encoder width is refused
    bad = save_embedding_head(EmbeddingHead(EmbeddingHeadConfig(kind="reid", in_dim=512, out_dim=8)),
                              tmp_path / "bad")
    with pytest.raises(ValueError, match="1280"):
        PersonPipeline(par_model_dir, reid_head=bad, text_encoder=pipeline.text_encoder)


def test_description_model_runs_on_the_same_encoder_pass(pipeline, par_model_dir, tmp_path, images):
    from personlens.models.describer import DescriberConfig, build_describer, save_describer
    from personlens.text.vocab import Vocab

    torch.manual_seed(0)
    sents = ["The image shows a male adult wearing a black jacket, carrying a backpack.",
             "The image shows a female adult with long hair wearing a red top."]
    cfg = DescriberConfig(decoder_args={"d_model": 32, "layers": 1, "heads": 2, "ff": 64,
                                        "dropout": 0.0, "max_len": 40},
                          image_dim=1280, attributes=list(pipeline.names), max_words=12)
    d = save_describer(build_describer(cfg, Vocab.build(sents)).eval(), tmp_path / "desc")
    with_text = PersonPipeline(par_model_dir, search_head=None, reid_head=None, describer=d,
                               text_encoder=pipeline.text_encoder)
    assert with_text.model_version != pipeline.model_version      # descriptions are in the record
    assert str(d) in with_text.describe()["describer"] and pipeline.describe()["describer"] == "none"
    with encoder_runs(with_text.model) as calls:
        recs = with_text.process(images[:3], ["a", "b", "c"])
    assert len(calls) == 1 and "direct" not in calls
    texts = [r.description for r in recs]
    assert all(isinstance(t, str) and t for t in texts)
    assert [r.description for r in with_text.process(images[:3], ["a", "b", "c"])] == texts
    # the embeddings do not depend on the description model
    base = pipeline.process(images[:3], ["a", "b", "c"])
    for r, b in zip(recs, base):
        np.testing.assert_allclose(r.reid_embedding, b.reid_embedding, atol=1e-6)
    # ``similar`` on a new image asks for the re-ID embedding only: no text is written
    written = []
    real = with_text.describer_head.texts
    with_text.describer_head.texts = lambda *a, **k: written.append(1) or real(*a, **k)
    try:
        reid = with_text.reid_embeddings(images[:3])
    finally:
        with_text.describer_head.texts = real
    assert written == []
    np.testing.assert_allclose(reid, np.stack([r.reid_embedding for r in recs]), atol=1e-6)


def test_reid_head_with_colour_part_appends_the_crops_colour(pipeline, par_model_dir, tmp_path,
                                                             images):
    from personlens.models.lomo import LomoConfig, lomo_descriptors
    from personlens.models.embedding import with_lomo

    cfg = LomoConfig(height=40, width=40, bins=2, scales=2, retinex_sigmas=(3.0,))
    torch.manual_seed(2)
    token_head = EmbeddingHead(EmbeddingHeadConfig(kind="reid", in_dim=1280, out_dim=8, pool="meanmax"))
    mean, proj = torch.rand(cfg.dim), torch.randn(cfg.dim, 4)
    d = save_embedding_head(with_lomo(token_head, mean, proj, 0.25, cfg), tmp_path / "r")
    p = PersonPipeline(par_model_dir, reid_head=d, text_encoder=pipeline.text_encoder)
    assert p.reid_dim == 12
    recs = p.process(images[:3], ["a", "b", "c"])
    emb = np.stack([r.reid_embedding for r in recs])
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    colour = torch.nn.functional.normalize(
        (torch.from_numpy(lomo_descriptors(images[:3], cfg)) - mean) @ proj, dim=-1)
    np.testing.assert_allclose(emb[:, 8:], 0.5 * colour.numpy(), atol=1e-5)
    # different crops, different colour parts: it is not a constant
    assert not np.allclose(emb[0, 8:], emb[1, 8:], atol=1e-2)
