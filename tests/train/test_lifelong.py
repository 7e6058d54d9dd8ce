"""Lifelong re-ID: the losses on tiny inputs, the prototype memory, the text split, and every
strategy's step on a tiny random encoder top (no data needed)."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from personlens.eval.lifelong import gap_closure, summarize
from personlens.models.lifelong import (ATTRIBUTE_NAMES, STYLE_KEYS, LifelongReid,
                                        LifelongReidConfig, PrototypeMemory, TextAttributeSplit,
                                        channel_style, load_lifelong, restyle, save_lifelong)
from personlens.train.lifelong import (STRATEGIES, STYLE_DISTILL, STYLE_GATE, Learner, LifelongConfig,
                                       StepData, distill_balance, strategy)
from personlens.train.lifelong_losses import (attribute_pull, cross_modal_alignment, logit_distillation,
                                              old_model_right, prototype_alignment, relation_distillation)


# ---------------------------------------------------------------- losses

def test_logit_distillation_is_zero_only_when_logits_agree():
    a = torch.randn(4, 7)
    assert logit_distillation(a, a).item() == pytest.approx(0.0, abs=1e-6)
    assert logit_distillation(a, a.flip(-1)).item() > 0.01


def test_relation_distillation_ignores_scale_but_not_structure():
    a = torch.randn(6, 16)
    assert relation_distillation(3 * a, a).item() == pytest.approx(0.0, abs=1e-5)
    assert relation_distillation(torch.randn(6, 16), a).item() > 0.01


def test_cross_modal_alignment_rewards_matching_pairs():
    torch.manual_seed(0)
    img = torch.randn(8, 3, 32)
    pids = torch.arange(8)
    matched = cross_modal_alignment(img, img, pids)
    shuffled = cross_modal_alignment(img, img[torch.randperm(8)], pids)
    assert matched < shuffled
    # images of one person are all positives: two views of each person cost about log(2),
    # the cost of splitting the target between them; treated as negatives they cost more
    pair = img[[0, 0, 2, 2, 4, 4, 6, 6]]
    pids2 = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    assert cross_modal_alignment(pair, pair, pids2).item() == pytest.approx(np.log(2), abs=0.05)
    assert cross_modal_alignment(pair, pair, torch.arange(8)) > 0.6


def test_prototype_alignment():
    torch.manual_seed(0)
    protos = F.normalize(torch.randn(2, 3, 16), dim=-1)
    x = torch.randn(5, 3, 16)
    assert prototype_alignment(x, x, protos).item() == pytest.approx(0.0, abs=1e-6)
    assert prototype_alignment(torch.randn(5, 3, 16), x, protos).item() > 0.01
    # no earlier domain: nothing to align to, and still differentiable
    x.requires_grad_(True)
    empty = prototype_alignment(x, x, torch.zeros(0, 3, 16))
    empty.backward()
    assert empty.item() == 0.0


def test_attribute_pull_moves_a_batch_towards_earlier_attribute_prototypes():
    protos = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])      # attribute 0 and attribute 2
    proto_attr = torch.tensor([0, 2])
    attrs = torch.tensor([[True, False, False], [True, False, False]])
    at = torch.tensor([[2.0, 0, 0], [1.0, 0, 0]])          # the crops with attribute 0 sit on it
    assert attribute_pull(at, attrs, protos, proto_attr).item() == pytest.approx(0.0, abs=1e-6)
    off = torch.tensor([[0.0, 0, 1.0], [0.0, 0, 1.0]], requires_grad=True)
    loss = attribute_pull(off, attrs, protos, proto_attr)
    assert loss.item() == pytest.approx(1.0)
    loss.backward()
    assert off.grad[:, 0].lt(0).all()                        # the gradient points at the prototype
    # attributes the memory lacks (1) or the batch lacks (2) do not count; none shared: 0
    only_new = torch.tensor([[False, True, False]])
    assert attribute_pull(torch.randn(1, 3), only_new, protos, proto_attr).item() == 0.0
    assert attribute_pull(torch.randn(2, 3), attrs, torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)).item() == 0.0


# ---------------------------------------------------------------- memory and text split

def test_the_attributes_a_description_states():
    from personlens.train.lifelong_data import stated_attributes

    t = stated_attributes(["a woman in a red coat carrying a backpack", "a man in shorts", ""])
    on = [{ATTRIBUTE_NAMES[j] for j in np.flatnonzero(row)} for row in t]
    assert {"personalFemale", "upperBodyRed", "upperBodyJacket", "carryingBackpack"} <= on[0]
    assert "personalMale" not in on[0] and "lowerBodyShorts" in on[1] and on[2] == set()


def test_prototype_memory_ema_and_domains():
    mem = PrototypeMemory(k=2, dim=4, momentum=0.5)
    mem.start("a")
    f = torch.tensor([[[1.0, 0, 0, 0], [0, 1.0, 0, 0]]])
    mem.update("a", f)
    assert torch.allclose(mem.prototypes[0], f[0])            # the first batch sets it
    mem.update("a", torch.tensor([[[0, 0, 1.0, 0], [0, 1.0, 0, 0]]]))
    assert torch.allclose(mem.prototypes[0, 0], torch.tensor([0.5, 0, 0.5, 0]))
    mem.start("b")
    assert mem.old("b").shape == (1, 2, 4)                    # b has no update yet
    with pytest.raises(ValueError, match="already"):
        mem.start("a")


def test_attribute_memory_updates_only_the_attributes_a_batch_shows():
    mem = PrototypeMemory(k=3, dim=2, momentum=0.5)
    mem.start("a")
    f = torch.tensor([[1.0, 0], [0, 1.0]])[:, None].expand(-1, 3, -1)
    mem.update("a", f, torch.tensor([[True, False, False], [True, True, False]]))
    torch.testing.assert_close(mem.prototypes[0, 0], torch.tensor([0.5, 0.5]))   # both crops
    torch.testing.assert_close(mem.prototypes[0, 1], torch.tensor([0.0, 1.0]))   # the second
    assert mem.counts[0].tolist() == [1, 1, 0]                                   # 2: never shown
    mem.update("a", f, torch.tensor([[False, True, False], [False, False, False]]))
    torch.testing.assert_close(mem.prototypes[0, 1], torch.tensor([0.5, 0.5]))   # EMA, m = 0.5
    torch.testing.assert_close(mem.prototypes[0, 0], torch.tensor([0.5, 0.5]))   # untouched
    mem.start("b")
    mem.update("b", f, torch.tensor([[False, False, True], [False, False, False]]))
    rows, which = mem.valid("b")
    assert which.tolist() == [0, 1] and torch.allclose(rows.norm(dim=-1), torch.ones(2))
    assert mem.valid()[1].tolist() == [0, 1, 2]
    # a memory saved before per-attribute counts (one count per domain) still loads
    old = PrototypeMemory(k=3, dim=2)
    old.load(["a"], torch.ones(1, 3, 2), torch.tensor([4.0]))
    assert old.counts.tolist() == [[4, 4, 4]]
    with pytest.raises(ValueError, match="does not match"):
        old.load(["a", "b"], torch.ones(1, 3, 2), torch.tensor([4.0]))


def test_restyle_gives_the_style_and_keeps_the_content():
    torch.manual_seed(0)
    x = torch.randn(3, 4, 5, 6) * 2 + 1
    target = torch.cat([torch.randn(3, 4), torch.rand(3, 4) + 0.5], 1)     # means, stds
    y = restyle(x, target)
    torch.testing.assert_close(channel_style(y), target, atol=1e-4, rtol=1e-4)
    # what the map shows is kept: the same normalised pattern, channel by channel
    norm = lambda t: (t - t.mean((2, 3), keepdim=True)) / t.std((2, 3), keepdim=True)
    torch.testing.assert_close(norm(y), norm(x), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(restyle(x, channel_style(x)), x, atol=1e-4, rtol=1e-4)


def test_a_raw_memory_keeps_the_statistics_as_they_are():
    mem = PrototypeMemory(k=2, dim=2, unit=False)
    mem.start("a")
    mem.update("a", torch.tensor([[[3.0, 4.0]], [[1.0, 0.0]]]), torch.tensor([[True, True], [True, False]]))
    table, ok = mem.table()
    torch.testing.assert_close(table[0], torch.tensor([[2.0, 2.0], [3.0, 4.0]]))   # no unit rows
    assert ok.tolist() == [[True, True]]
    mem.start("b")
    assert mem.table(exclude="b")[0].shape == (1, 2, 2) and mem.table()[1].tolist()[1] == [False, False]


@pytest.mark.parametrize("split", ["learned", "random"])
def test_text_split_uses_real_tokens_only(split):
    torch.manual_seed(0)
    s = TextAttributeSplit(text_dim=8, k=3, dim=5, split=split)
    states = torch.randn(2, 6, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]])
    out = s(states, mask)
    assert out.shape == (2, 3, 5) and torch.isfinite(out).all()
    changed = states.clone()
    changed[0, 3:] = 100.0                                    # padding must not matter
    assert torch.allclose(s(changed, mask)[0], out[0], atol=1e-5)
    assert s.prompts.requires_grad == (split == "learned")   # the random split learns no prompts


# ---------------------------------------------------------------- the learner

class _Features:
    """Random lower-stage features (the input of block 14: 192 channels), fixed per row."""

    def __init__(self, n):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 2, 192, 2, 2, generator=g)

    def batch(self, rows, views):
        return self.x[torch.as_tensor(rows), torch.as_tensor(views)]


class _Texts:
    def __init__(self, n):
        g = torch.Generator().manual_seed(1)
        self.s = torch.randn(n, 5, 384, generator=g)
        self.a = torch.rand(n, len(ATTRIBUTE_NAMES), generator=g) < 0.3

    def batch(self, rows):
        return self.s[torch.as_tensor(rows)], torch.ones(len(rows), 5, dtype=torch.long)

    def attributes(self, rows):
        return self.a[torch.as_tensor(rows)]


@pytest.fixture(scope="module")
def encoder():
    from personlens.models.image_encoders import EfficientNetLite0

    return EfficientNetLite0(pretrained=False).freeze()


def _tiny_model(encoder):
    return LifelongReid(encoder, LifelongReidConfig(stage=14, embed_dim=16, part_dim=16))


def _domain(name, start, ids=4, per=4):
    rows = np.arange(start, start + ids * per)
    return StepData(name, rows, np.repeat(np.arange(ids), per), rows)


@pytest.mark.parametrize("name", [n for n in STRATEGIES if n != "joint"])
def test_every_strategy_learns_two_domains(encoder, name):
    torch.manual_seed(0)
    model = _tiny_model(encoder)
    cfg = LifelongConfig(iterations=2, p=2, k=2, warmup=1, rehearsal_ids=2, rehearsal_batch=2)
    learner = Learner(model, strategy(name), cfg, _Features(40), _Texts(40), log=lambda *a: None)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r1 = learner.learn(_domain("a", 0))
    r2 = learner.learn(_domain("b", 16))
    assert list(model.classifiers) == ["a", "b"]
    assert all(np.isfinite(v) for v in {**r1["losses"], **r2["losses"]}.values())
    changed = {k for k, v in model.state_dict().items() if k in before and not torch.equal(before[k], v)}
    # the encoder's top learns (the encoder handed in is frozen), not only the neck
    assert any(k.startswith("top_blocks.") and k.endswith("weight") for k in changed), sorted(changed)[:5]
    assert any(k.startswith("top_head.") for k in changed)
    s = STRATEGIES[name]
    assert ("lwf" in r2["losses"]) == s.lwf
    assert ("align" in r2["losses"]) == s.text_align
    assert ("xdomain" in r2["losses"]) == (s.xdomain is not None)
    assert ("replay_id" in r2["losses"]) == s.rehearsal
    assert ("attr_pull" in r2["losses"]) == (s.xdomain == "attributes")
    assert bool(learner.attribute_memory.counts.any()) == (s.xdomain == "attributes")
    assert (len(learner.buffer_rows) > 0) == s.rehearsal
    assert ("style_feat" in r2["losses"]) == (s.style_replay is not None)
    # the new-domain expert teaches from the second domain on (nothing to keep on the first)
    assert ("expert" in r2["losses"]) == s.expert and "expert" not in r1["losses"]
    assert (learner.style_memory is not None) == (s.style_replay is not None)
    assert learner.memory.names == ["a", "b"]
    emb = model.embed(_Features(40).batch(np.arange(3), np.zeros(3, int)))
    assert emb.shape == (3, 16) and torch.allclose(emb.norm(dim=-1), torch.ones(3), atol=1e-5)


def test_learner_state_round_trip(encoder):
    torch.manual_seed(0)
    cfg = LifelongConfig(iterations=1, p=2, k=2, warmup=1, rehearsal_ids=2)
    mk = lambda: Learner(_tiny_model(encoder),
                         strategy("rehearsal_distill"), cfg, _Features(40), None, log=lambda *a: None)
    a = mk()
    a.learn(_domain("a", 0))
    b = mk()
    b.load_state(a.state())
    x = _Features(40).batch(np.arange(4), np.zeros(4, int))
    assert torch.allclose(a.model.embed(x), b.model.embed(x))
    assert np.array_equal(a.buffer_rows, b.buffer_rows) and b.memory.names == ["a"]


def test_the_attribute_memory_survives_a_checkpoint_and_the_saved_head(encoder, tmp_path):
    torch.manual_seed(0)
    cfg = LifelongConfig(iterations=2, p=2, k=2, warmup=1)
    mk = lambda: Learner(_tiny_model(encoder),
                         strategy("vladr_attributes"), cfg, _Features(40), _Texts(40), log=lambda *a: None)
    a = mk()
    a.learn(_domain("a", 0))
    assert a.attribute_memory.counts.sum() > 0
    b = mk()
    b.load_state(a.state())
    torch.testing.assert_close(b.attribute_memory.prototypes, a.attribute_memory.prototypes)
    assert torch.equal(b.attribute_memory.counts, a.attribute_memory.counts)
    save_lifelong(tmp_path / "head", a.model, a.splitter, a.memory, a.global_memory,
                  {"strategy": "vladr_attributes"}, a.attribute_memory)
    head = load_lifelong(tmp_path / "head", encoder)
    assert head.attribute_memory.names == ["a"] and head.config["strategy"] == "vladr_attributes"
    torch.testing.assert_close(head.attribute_memory.prototypes, a.attribute_memory.prototypes)
    # a head whose strategy kept no attribute prototypes saves none, and loads an empty memory
    save_lifelong(tmp_path / "plain", a.model, a.splitter, a.memory, a.global_memory, {},
                  PrototypeMemory(len(ATTRIBUTE_NAMES), 16))
    assert len(load_lifelong(tmp_path / "plain", encoder).attribute_memory) == 0


def test_global_style_ablation_reads_no_text(encoder):
    """vladr_styles_global drops every attribute-level part, so it runs without descriptions
    (the protocol script then builds none) and still replays the earlier domain's look."""
    torch.manual_seed(0)
    s = strategy("vladr_styles_global")
    assert not s.uses_text and s.style_replay == "domain"
    cfg = LifelongConfig(iterations=2, p=2, k=2, warmup=1)
    learner = Learner(_tiny_model(encoder), s, cfg, _Features(40), None, log=lambda *a: None)
    learner.learn(_domain("a", 0))
    r2 = learner.learn(_domain("b", 16))
    assert "style_feat" in r2["losses"] and "align" not in r2["losses"]
    assert learner.style_memory.names == ["a", "b"]


@pytest.mark.parametrize("name", ["vladr_styles", "vladr_styles_domain", "vladr_styles_global"])
def test_style_memory_holds_each_domains_exact_statistics(encoder, tmp_path, name):
    torch.manual_seed(0)
    cfg = LifelongConfig(iterations=2, p=2, k=2, warmup=1)
    feats, texts = _Features(40), _Texts(40)
    mk = lambda: Learner(_tiny_model(encoder), strategy(name), cfg, feats, texts, log=lambda *a: None)
    a = mk()
    a.learn(_domain("a", 0))
    table, ok = a.style_memory.table()
    rows = np.arange(16)
    both = torch.cat([channel_style(feats.batch(rows, np.zeros(16, int))),
                      channel_style(feats.batch(rows, np.ones(16, int)))])
    torch.testing.assert_close(table[0, -1], both.mean(0))            # the domain: all crops, both views
    assert STYLE_KEYS[-1] == "domain"
    stated = texts.attributes(rows)
    if name == "vladr_styles":
        j = int(stated.sum(0).argmax())                               # an attribute several crops state
        torch.testing.assert_close(table[0, j], both[torch.cat([stated[:, j], stated[:, j]])].mean(0))
        assert ok[0, :-1].tolist() == stated.any(0).tolist()          # unstated attributes: no style
    else:
        assert not ok[0, :-1].any()
    # the styles given to a new domain's crops come from the earlier domain's rows
    styles = a._earlier_styles(_domain("b", 16), np.arange(8), np.random.default_rng(0))
    new_stated = texts.attributes(16 + np.arange(8))
    for s, says in zip(styles, new_stated):
        # an attribute the crop states and the earlier domain showed; else the domain's style
        usable = [int(j) for j in np.flatnonzero((says & ok[0, :-1]).numpy())] if name == "vladr_styles" else []
        assert any(torch.equal(s, table[0, j]) for j in usable or [-1])
    # a checkpoint and a saved head keep the memory
    b = mk()
    b.load_state(a.state())
    torch.testing.assert_close(b.style_memory.prototypes, a.style_memory.prototypes)
    save_lifelong(tmp_path / "head", a.model, a.splitter, a.memory, a.global_memory, {"strategy": name},
                  a.attribute_memory, a.style_memory)
    head = load_lifelong(tmp_path / "head", encoder)
    assert head.style_memory.names == ["a"] and not head.style_memory.unit
    torch.testing.assert_close(head.style_memory.prototypes, a.style_memory.prototypes)
    assert load_lifelong(tmp_path / "head", encoder).config["style_memory_names"] == ["a"]


def test_settings_added_later_enter_a_runs_record_only_when_set():
    assert "attr_pull_weight" not in LifelongConfig().to_dict()      # records of earlier runs match
    assert LifelongConfig(attr_pull_weight=0.0).to_dict()["attr_pull_weight"] == 0.0


def test_the_relation_style_distillation_lets_the_embedding_turn_as_a_whole():
    torch.manual_seed(0)
    old = torch.randn(8, 16)
    turned = old @ torch.linalg.qr(torch.randn(16, 16))[0]        # same similarities, new places
    assert STYLE_DISTILL["relation"](turned, old).item() == pytest.approx(0.0, abs=1e-6)
    assert STYLE_DISTILL["cosine"](turned, old).item() > 0.5
    shuffled = old[torch.randperm(8)]                               # the structure itself changed
    assert STYLE_DISTILL["relation"](shuffled, old).item() > 0.1
    with pytest.raises(ValueError, match="unknown style_distill 'l2'; available: cosine, relation"):
        LifelongConfig(style_distill="l2")
    assert LifelongConfig(style_distill="relation").to_dict()["style_distill"] == "relation"
    assert "style_distill" not in LifelongConfig().to_dict()


def test_old_model_right_marks_the_crops_placed_next_to_their_own_person():
    old = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.8, 0.2]])
    pids = torch.tensor([0, 0, 1, 1, 1])     # the last is person 1 but sits among person 0's
    assert old_model_right(old, pids).tolist() == [True, True, True, True, False]


def test_rectified_style_distillation_counts_only_what_the_old_model_got_right():
    torch.manual_seed(0)
    new, old = torch.randn(6, 8), torch.randn(6, 8)
    w = torch.tensor([1.0, 0, 1, 0, 0, 0])
    for name, f in STYLE_DISTILL.items():
        assert f(new, old, weight=torch.ones(6)).item() == pytest.approx(f(new, old).item(), rel=1e-5), name
        assert f(new, old, weight=torch.zeros(6)).item() == 0.0, name
        # a wrong crop's embedding can move anywhere without cost
        moved = new.clone()
        moved[1] = torch.randn(8)
        if name == "cosine":
            assert f(moved, old, weight=w).item() == pytest.approx(f(new, old, weight=w).item(), rel=1e-6)
    assert LifelongConfig(style_rectify=True).to_dict()["style_rectify"] is True
    assert "style_rectify" not in LifelongConfig().to_dict()


def test_a_rectified_run_reports_how_often_the_old_model_was_right(encoder):
    torch.manual_seed(0)
    model = _tiny_model(encoder)
    cfg = LifelongConfig(iterations=2, p=2, k=2, warmup=1, style_rectify=True)
    learner = Learner(model, strategy("vladr_styles"), cfg, _Features(40), _Texts(40), log=lambda *a: None)
    assert "stats" not in learner.learn(_domain("a", 0))            # nothing old to distil from
    r = learner.learn(_domain("b", 16))
    assert 0.0 <= r["stats"]["old_model_right"] <= 1.0 and "style_feat" in r["losses"]


def test_the_style_gate_skips_the_earlier_looks_only_on_a_step_larger_than_all_before(encoder):
    assert STYLE_GATE["not_larger"](4, 4) and not STYLE_GATE["not_larger"](4, 5)
    assert STYLE_GATE["always"](4, 500)
    model = _tiny_model(encoder)
    cfg = LifelongConfig(iterations=1, p=2, k=2, warmup=1, style_gate="not_larger")
    learner = Learner(model, strategy("vladr_styles"), cfg, _Features(60), _Texts(60), log=lambda *a: None)
    learner.learn(_domain("a", 0, ids=2))
    larger = learner.learn(_domain("b", 8, ids=3))                   # 3 new persons > 2 learned
    smaller = learner.learn(_domain("c", 20, ids=4))                 # 4 new persons <= 5 learned
    assert "style_feat" not in larger["losses"] and "lwf" in larger["losses"]
    assert "style_feat" in smaller["losses"]
    assert learner.style_memory.names == ["a", "b", "c"]             # styles recorded on every step
    assert LifelongConfig(style_gate="not_larger").to_dict()["style_gate"] == "not_larger"
    assert "style_gate" not in LifelongConfig().to_dict()
    with pytest.raises(ValueError, match="unknown style_gate 'never'; available: always, not_larger"):
        LifelongConfig(style_gate="never")


def test_the_new_domain_expert_is_the_fine_tuned_copy_and_leaves_the_model_alone(encoder):
    torch.manual_seed(0)
    model = _tiny_model(encoder)
    cfg = LifelongConfig(iterations=2, p=2, k=2, warmup=1)
    learner = Learner(model, strategy("vladr_styles_expert"), cfg, _Features(40), _Texts(40),
                      log=lambda *a: None)
    learner.learn(_domain("a", 0))
    before = copy.deepcopy(model.state_dict())
    expert = learner._expert(_domain("b", 16))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())   # untouched
    assert list(model.classifiers) == ["a"] and list(expert.classifiers) == ["a", "b"]
    assert not expert.training and not any(p.requires_grad for p in expert.parameters())
    # the same fine-tuning the finetune strategy does from the same start
    torch.manual_seed(0)
    ref = _tiny_model(encoder)
    ref.add_domain("a", 4)
    ref.load_state_dict(before)
    Learner(ref, strategy("finetune"), cfg, _Features(40), log=lambda *a: None).learn(_domain("b", 16))
    x = _Features(40).batch(np.arange(16, 20), np.zeros(4, int))
    torch.testing.assert_close(expert.embed(x), ref.embed(x))
    assert LifelongConfig(expert_weight=0.5).to_dict()["expert_weight"] == 0.5
    assert "expert_weight" not in LifelongConfig().to_dict()


def test_distillation_is_balanced_by_how_many_persons_were_learned_before():
    assert distill_balance(0, 700, 0.5) == 1.0                       # the first domain: nothing to keep
    assert distill_balance(743, 100, 0.0) == 1.0                     # off by default
    assert distill_balance(400, 100, 0.5) == pytest.approx(2.0)      # LUCIR's sqrt(old / new)
    assert distill_balance(100, 400, 0.5) == pytest.approx(0.5)


@pytest.mark.parametrize("name", ["vladr_styles", "rehearsal_distill"])
def test_the_balance_scales_every_distillation_of_the_old_model(encoder, name):
    got = {}
    for power in (0.0, 1.0):
        torch.manual_seed(0)
        model = _tiny_model(encoder)
        cfg = LifelongConfig(iterations=1, p=2, k=2, warmup=1, rehearsal_ids=2, rehearsal_batch=2,
                             kd_balance_power=power)
        learner = Learner(model, strategy(name), cfg, _Features(40), _Texts(40), log=lambda *a: None)
        learner.learn(_domain("a", 0, ids=4))
        got[power] = learner.learn(_domain("b", 16, ids=2))["losses"]    # 4 persons before, 2 new
    scaled = {"lwf", "style_feat", "relation"} & set(got[0.0])
    assert scaled == ({"lwf", "style_feat"} if name == "vladr_styles" else {"lwf", "relation"})
    for k in scaled:                                     # one batch, before any update: exactly x2
        assert got[1.0][k] == pytest.approx(2 * got[0.0][k], rel=1e-4), k
    assert got[1.0]["id"] == pytest.approx(got[0.0]["id"], rel=1e-5)


def test_a_domain_twice_or_with_one_person_is_refused(encoder):
    model = _tiny_model(encoder)
    model.add_domain("a", 3)
    with pytest.raises(ValueError, match="learned already"):
        model.add_domain("a", 3)
    with pytest.raises(ValueError, match="at least 2"):
        StepData("x", np.arange(3), np.zeros(3, int))
    with pytest.raises(KeyError, match="available: finetune"):
        strategy("ewc")


def test_vladr_needs_texts(encoder):
    model = _tiny_model(encoder)
    learner = Learner(model, strategy("vladr"), LifelongConfig(iterations=1), _Features(20), None)
    with pytest.raises(ValueError, match="descriptions"):
        learner.learn(StepData("a", np.arange(4), np.array([0, 0, 1, 1])))


# ---------------------------------------------------------------- summaries

def test_summary_forgetting_and_gap_closure():
    m = lambda a, b, u: {"a": {"mAP": a, "R1": a}, "b": {"mAP": b, "R1": b}, "u": {"mAP": u, "R1": u}}
    matrix = [m(50, 10, 20), m(30, 60, 22)]
    s = summarize(matrix, ["a", "b"], ["u"])
    assert s["seen_avg_mAP"] == 45 and s["unseen_avg_mAP"] == 22
    assert s["forgetting_mAP"] == 20                  # a: best 50, last 30
    assert gap_closure(45, 40, 50) == 0.5
    assert gap_closure(45, 40, 40) is None


# ---------------------------------------------------------------- the protocol, resumed

class _Protocol:
    """What ``run_strategy`` needs of ``Protocol``, on random features of fake domains."""

    def __init__(self, encoder):
        from personlens.data.reid import ReidItem, ReidTrial
        from personlens.data.reid_domains import Domain, SEEN_DOMAINS, UNSEEN_DOMAINS

        self.encoder, self.stage, self.seed = encoder, 14, 0
        self.split, self.unseen = "test", UNSEEN_DOMAINS
        self.features, self.texts = _Features(200), _Texts(200)
        self.domains, row = {}, 0
        for name in (*SEEN_DOMAINS, *UNSEEN_DOMAINS):
            items = [ReidItem(f"{name}/{p}_{c}_{j}", p, c) for p in range(4) for c in (1, 2) for j in range(2)]
            row += len(items)
            train = items if name in SEEN_DOMAINS else []
            trial = ReidTrial(0, [it for it in items if it.camid == 1][::2],
                              [it for it in items if it.camid == 2], [])
            self.domains[name] = Domain(name, train, [trial])
        paths = [p for d in self.domains.values() for p in d.images()]
        self.row = {p: i for i, p in enumerate(paths)}

    def step_data(self, names):
        items = [(n, it) for n in names for it in self.domains[n].train]
        ids = {k: i for i, k in enumerate(sorted({(n, it.pid) for n, it in items}))}
        rows = np.array([self.row[it.path] for _, it in items])
        return StepData("+".join(names), rows, np.array([ids[(n, it.pid)] for n, it in items]), rows)

    def score(self, fn, names=None):
        from personlens.eval.lifelong import score_domain

        def embed(paths):
            x = self.features.batch(np.array([self.row[p] for p in paths]), np.zeros(len(paths), int))
            return fn(x).numpy()
        return {n: score_domain(self.domains[n], embed) for n in (names or self.domains)}

    def new_model(self, split):
        torch.manual_seed(0)
        return LifelongReid(self.encoder, LifelongReidConfig(stage=14, embed_dim=16, part_dim=16,
                                                             text_split=split))


def test_protocol_run_resumes_after_a_killed_step(encoder, tmp_path, monkeypatch):
    from personlens.train import lifelong_protocol as lp

    proto = _Protocol(encoder)
    cfg = LifelongConfig(iterations=2, p=2, k=2, warmup=1)
    calls = {"n": 0}
    real_learn = Learner.learn

    def dies_at_step_3(self, data):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_learn(self, data)

    monkeypatch.setattr(Learner, "learn", dies_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        lp.run_strategy(proto, "vladr", "large-to-small", cfg, tmp_path, log=lambda *a: None)
    monkeypatch.setattr(Learner, "learn", real_learn)
    logs = []
    r = lp.run_strategy(proto, "vladr", "large-to-small", cfg, tmp_path, log=logs.append)
    assert logs[0] == "vladr: resuming after step 2"
    assert r["steps"] == ["cuhk03", "towncentre", "3dpes", "caviar"] and len(r["matrix"]) == 4
    assert set(r["matrix"][0]) == {"cuhk03", "towncentre", "3dpes", "caviar"}   # seen only
    assert "viper" in r["matrix"][-1] and "unseen_avg_mAP" in r["summary"]
    assert "forgetting_mAP" in r["summary"]
    assert (tmp_path / "large-to-small-s0" / "vladr" / "model.safetensors").exists()
    assert not (tmp_path / "large-to-small-s0" / "vladr" / "checkpoint.pt").exists()
    # a finished run is read back, not trained again
    monkeypatch.setattr(Learner, "learn", dies_at_step_3)
    assert lp.run_strategy(proto, "vladr", "large-to-small", cfg, tmp_path)["matrix"] == r["matrix"]


def test_the_validation_protocol_scores_seen_domains_only_in_its_own_runs(encoder, tmp_path):
    from personlens.train import lifelong_protocol as lp

    proto = _Protocol(encoder)
    cfg = LifelongConfig(iterations=1, p=2, k=2, warmup=1)
    test = lp.run_strategy(proto, "finetune", "small-to-large", cfg, tmp_path, log=lambda *a: None)
    proto.split, proto.unseen = "val", ()
    val = lp.run_strategy(proto, "finetune", "small-to-large", cfg, tmp_path, log=lambda *a: None)
    assert val["split"] == "val" and test["split"] == "test"
    assert val["domains"] == ["caviar", "3dpes", "towncentre", "cuhk03"]
    assert "viper" not in val["matrix"][-1] and "unseen_avg_mAP" not in val["summary"]
    assert (tmp_path / "small-to-large-s0-val" / "finetune.json").exists()
    assert (tmp_path / "small-to-large-s0" / "finetune.json").exists()   # not overwritten


def test_joint_is_one_step_on_every_seen_domain(encoder, tmp_path):
    from personlens.train import lifelong_protocol as lp

    r = lp.run_strategy(_Protocol(encoder), "joint", "small-to-large",
                        LifelongConfig(iterations=1, p=2, k=2, warmup=1), tmp_path, log=lambda *a: None)
    assert r["steps"] == ["caviar+3dpes+towncentre+cuhk03"]
    assert r["train"][0]["iterations"] == 4 and r["train"][0]["ids"] == 16


def test_a_finished_run_with_other_settings_is_not_read_back(encoder, tmp_path):
    from personlens.train import lifelong_protocol as lp

    proto = _Protocol(encoder)
    lp.run_strategy(proto, "finetune", "small-to-large", LifelongConfig(iterations=1, p=2, k=2, warmup=1),
                    tmp_path, log=lambda *a: None)
    with pytest.raises(ValueError, match="other settings"):
        lp.run_strategy(proto, "finetune", "small-to-large", LifelongConfig(iterations=2, p=2, k=2, warmup=1),
                        tmp_path, log=lambda *a: None)
    proto.stage = 12      # the same training settings on another encoder top: not the same run
    with pytest.raises(ValueError, match="other settings"):
        lp.run_strategy(proto, "finetune", "small-to-large", LifelongConfig(iterations=1, p=2, k=2, warmup=1),
                        tmp_path, log=lambda *a: None)


def test_a_run_finished_in_an_earlier_session_is_taken_only_with_the_same_settings(encoder, tmp_path, monkeypatch):
    """The committed summary carries finished runs across sessions (runs/ does not survive)."""
    from personlens.train import lifelong_protocol as lp

    proto = _Protocol(encoder)
    cfg = LifelongConfig(iterations=1, p=2, k=2, warmup=1)
    done = lp.run_strategy(proto, "joint", "small-to-large", cfg, tmp_path / "a", log=lambda *a: None)
    assert done["config"]["iterations"] == 4 and lp.record_matches(
        done, lp.run_config("joint", "small-to-large", cfg), 14, "test")

    def no_training(*a):
        raise AssertionError("a known run was trained again")
    monkeypatch.setattr(Learner, "learn", no_training)
    assert lp.run_strategy(proto, "joint", "small-to-large", cfg, tmp_path / "b", known=done) is done
    assert not (tmp_path / "b").exists()
    # another seed, order, strategy or split is another run: trained, not taken
    for other in (LifelongConfig(iterations=1, p=2, k=2, warmup=1, seed=1), LifelongConfig(iterations=2, p=2, k=2, warmup=1)):
        with pytest.raises(AssertionError, match="trained again"):
            lp.run_strategy(proto, "joint", "small-to-large", other, tmp_path / "c", known=done)
    with pytest.raises(AssertionError, match="trained again"):
        lp.run_strategy(proto, "joint", "large-to-small", cfg, tmp_path / "c", known=done)
    with pytest.raises(AssertionError, match="trained again"):
        lp.run_strategy(proto, "finetune", "small-to-large", cfg, tmp_path / "c", known=done)
    proto.split, proto.unseen = "val", ()
    with pytest.raises(AssertionError, match="trained again"):
        lp.run_strategy(proto, "joint", "small-to-large", cfg, tmp_path / "c", known=done)


def test_the_attribute_alignment_reaches_the_encoder_top(encoder):
    """VLADR's text alignment must shape the shared encoder top, not only its own part
    queries: with the same seed and batches, the global embedding differs from fine-tuning."""
    embs = {}
    for name in ("finetune", "vladr_no_xdomain"):
        torch.manual_seed(0)
        model = _tiny_model(encoder)
        Learner(model, strategy(name), LifelongConfig(iterations=3, p=2, k=2, warmup=1),
                _Features(40), _Texts(40), log=lambda *a: None).learn(_domain("a", 0))
        embs[name] = model.embed(_Features(40).batch(np.arange(4), np.zeros(4, int)))
    assert not torch.allclose(embs["finetune"], embs["vladr_no_xdomain"], atol=1e-4)


def test_retrieval_views_embed_what_they_name(encoder):
    torch.manual_seed(0)
    model = LifelongReid(encoder, LifelongReidConfig(stage=14, embed_dim=8, part_dim=4)).eval()
    lower = torch.randn(3, 192, 8, 6)   # Lite0 block 14 takes 192 channels at 8x6
    out = {}
    for view in ("global", "parts", "global+parts"):
        model.config.retrieval = view
        out[view] = model.embed(lower)
        assert out[view].shape == (3, model.config.embedding_dim)
        torch.testing.assert_close(out[view].norm(dim=-1), torch.ones(3))
    k = len(model.config.parts)
    assert model.config.embedding_dim == 8 + 4 * k
    with torch.inference_mode():
        f = model(lower)
    torch.testing.assert_close(out["global"], F.normalize(f["bn"], dim=-1))
    parts = F.normalize(f["parts"], dim=-1).flatten(1) / k ** 0.5
    torch.testing.assert_close(out["parts"], parts)
    # both: the two unit halves with equal weight
    torch.testing.assert_close(out["global+parts"], torch.cat([out["global"], out["parts"]], -1) / 2 ** 0.5)
    with pytest.raises(ValueError, match="retrieval"):
        LifelongReidConfig(retrieval="tokens")


def test_the_re_styled_crops_learn_the_new_identities_only_when_asked(encoder):
    model = _tiny_model(encoder)
    cfg = LifelongConfig(iterations=1, p=2, k=2, warmup=1, style_id_weight=0.5)
    learner = Learner(model, strategy("vladr_styles"), cfg, _Features(40), _Texts(40), log=lambda *a: None)
    first = learner.learn(_domain("a", 0))
    assert "style_id" not in first["losses"]                         # no earlier looks yet
    second = learner.learn(_domain("b", 16))
    assert second["losses"]["style_id"] > 0 and "style_feat" in second["losses"]
    plain = Learner(_tiny_model(encoder),
                    strategy("vladr_styles"), LifelongConfig(iterations=1, p=2, k=2, warmup=1, style_id_weight=0),
                    _Features(40), _Texts(40), log=lambda *a: None)
    plain.learn(_domain("a", 0))
    assert "style_id" not in plain.learn(_domain("b", 16))["losses"]
    assert LifelongConfig(style_id_weight=0.5).to_dict()["style_id_weight"] == 0.5
    # on by default since session 25; a record without it was made at 0, before it existed
    assert LifelongConfig().to_dict()["style_id_weight"] == 1.0
    assert "style_id_weight" not in LifelongConfig(style_id_weight=0.0).to_dict()


def test_every_later_setting_says_which_strategies_read_it():
    from personlens.train.lifelong import READS_LATER
    assert set(READS_LATER) == set(LifelongConfig._LATER)
    assert LifelongConfig(expert_weight=2.0).for_strategy(strategy("vladr_styles")).expert_weight == 1.0
    assert LifelongConfig(expert_weight=2.0).for_strategy(strategy("vladr_styles_expert")).expert_weight == 2.0
