"""Lifelong re-ID training (issue 16): domains learned one after the other, by strategy.

A *strategy* is a row of :data:`STRATEGIES` (a registry: flags, no if-chain of names):

========================  ===================================================================
``finetune``              each new domain with ID cross-entropy + batch-hard triplet only
                          (the lower bound)
``joint``                 every seen domain at once (the upper bound; one step)
``lwf``                   + distillation of the old model's logits on the old classifiers
``rehearsal_distill``     + 2 stored images of at most 250 persons per earlier domain, trained
                          on again, + logit and relation distillation (PTKP / KRKC manner)
``weight_average``        fine-tune, then average the weights with the model before the step
``vladr``                 + cross-modal attribute alignment (image part k <-> text attribute k,
                          text split by learned prompts) + cross-domain attribute alignment
                          against the attribute prototype memory; no stored images
``vladr_no_xdomain``      ablation: without the cross-domain alignment
``vladr_global``          ablation: one global prototype per domain instead of the attribute ones
``vladr_random_split``    ablation: a fixed random split of the description instead of prompts
``vladr_lwf``             ``vladr`` + LwF's logit distillation: the attribute losses shape the
                          part features, the distillation holds the global embedding retrieval uses
``vladr_attributes``      VLADR with its prototype memory in the space retrieval searches
                          (session 17): one prototype per PETA attribute per domain (the EMA of
                          the embeddings of the crops whose description states it); a new
                          domain's crops keep the old model's distribution over the earlier
                          domains' attribute prototypes (KL), and its crops with attribute a
                          are pulled to the earlier prototype of a. The attribute prototypes are
                          shared meaning across cameras; identity classifiers are not
``vladr_attributes_lwf``  ``vladr_attributes`` on LwF's logit distillation (session 18)
``lwf_average``           LwF during the step, weight averaging after it: the two no-image
                          baselines that forget least, together (LSTKC's short- and long-term
                          consolidation in their simplest form); the base VLADR must beat
``vladr_styles``          VLADR's attribute memory where it can reach what learns (session 21):
                          per earlier domain and PETA attribute, the channel statistics of the
                          learnable top's input (``STYLE_KEYS``); each new crop is also shown
                          re-styled as an earlier domain's crop with one of its own stated
                          attributes, and the old model's logits and embedding on it are
                          distilled. LwF distils on the new camera's look only; this distils
                          on the earlier cameras' looks, from statistics, not images
``vladr_styles_domain``   ablation: one style per earlier domain instead of per attribute
``vladr_styles_global``   ablation of every attribute-level part at once (session 26): one style
                          per earlier domain and no cross-modal attribute alignment, so LwF +
                          the replay of the earlier cameras' global looks
``vladr_styles_expert``   ``vladr_styles`` with a second teacher (session 24): a copy of the
                          model is first fine-tuned on the new domain alone (the new-domain
                          expert, as KRKC's and LSTKC's short-term model), and the step also
                          distils the expert's embedding of the new crops. The old model holds
                          the earlier cameras' looks, the expert brings what fine-tuning
                          learns: meant for a new domain larger than all before it (not
                          better on validation: docs/results.md, session 24)
========================  ===================================================================

Each step trains for ``iterations`` PK batches (P persons x K images, each image or its
mirror) of the new domain's cached lower-stage features, so small and large domains get the
same number of updates.
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from ..models.lifelong import (ATTRIBUTE_NAMES, STYLE_KEYS, LifelongReid, PrototypeMemory,
                               TextAttributeSplit, channel_style, restyle)
from .lifelong_losses import (attribute_pull, cross_modal_alignment, logit_distillation,
                              old_model_right, prototype_alignment, relation_distillation)
from .par import warmup_cosine
from .reid import PKSampler, batch_hard_triplet

__all__ = ["Strategy", "STRATEGIES", "STYLE_DISTILL", "LifelongConfig", "StepData", "Learner",
           "distill_balance", "strategy"]


@dataclass(frozen=True)
class Strategy:
    name: str
    lwf: bool = False              # distil the old model's logits on the old classifiers
    relation: bool = False         # distil the old model's batch similarity structure
    rehearsal: bool = False        # keep 2 images of <= 250 persons per domain and replay them
    text_align: bool = False       # cross-modal attribute alignment
    # cross-domain alignment: "parts" (attribute groups x part features), "global" (one
    # prototype per domain) or "attributes" (PETA attributes x the retrieval embedding)
    xdomain: str | None = None
    text_split: str = "learned"    # how the description is split: "learned" or "random"
    average: bool = False          # average the weights with the model before the step
    # replay the new crops in earlier domains' channel styles: "attributes" (the style of an
    # attribute the crop states, in that domain) or "domain" (the domain's overall style)
    style_replay: str | None = None
    joint: bool = False            # all seen domains in one step (upper bound)
    expert: bool = False           # distil a copy fine-tuned on the new domain alone, too
    stores_images: bool = False

    @property
    def needs_old(self) -> bool:
        return self.lwf or self.relation or self.xdomain is not None or self.style_replay is not None

    @property
    def uses_text(self) -> bool:   # the attribute memories read what each crop's text states
        return self.text_align or self.xdomain == "attributes" or self.style_replay == "attributes"


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Strategy("finetune"),
    Strategy("joint", joint=True, stores_images=True),
    Strategy("lwf", lwf=True),
    Strategy("rehearsal_distill", rehearsal=True, lwf=True, relation=True, stores_images=True),
    Strategy("weight_average", average=True),
    Strategy("vladr", text_align=True, xdomain="parts"),
    Strategy("vladr_no_xdomain", text_align=True),
    Strategy("vladr_global", text_align=True, xdomain="global"),
    Strategy("vladr_random_split", text_align=True, xdomain="parts", text_split="random"),
    Strategy("vladr_lwf", text_align=True, xdomain="parts", lwf=True),
    Strategy("vladr_attributes", text_align=True, xdomain="attributes"),
    Strategy("vladr_attributes_lwf", text_align=True, xdomain="attributes", lwf=True),
    Strategy("lwf_average", lwf=True, average=True),
    Strategy("vladr_styles", text_align=True, lwf=True, style_replay="attributes"),
    # its ablations, as VLADR's: one style per domain instead of one per attribute; no
    # cross-domain part at all (LwF + the text alignment); a random instead of a learned split
    Strategy("vladr_styles_domain", text_align=True, lwf=True, style_replay="domain"),
    Strategy("vladr_styles_no_xdomain", text_align=True, lwf=True),
    Strategy("vladr_styles_global", lwf=True, style_replay="domain"),
    Strategy("vladr_styles_random_split", text_align=True, lwf=True, style_replay="attributes",
             text_split="random"),
    Strategy("vladr_styles_expert", text_align=True, lwf=True, style_replay="attributes", expert=True),
)}


def strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise KeyError(f"unknown lifelong strategy {name!r}; available: {', '.join(STRATEGIES)}")
    return STRATEGIES[name]


def _cosine_distance(new: torch.Tensor, old: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    d = 1 - F.cosine_similarity(new, old, dim=-1)
    return (d if weight is None else d * weight).mean()


# LifelongConfig.style_distill -> the loss between the new and old model's re-styled crops
STYLE_DISTILL = {"cosine": _cosine_distance, "relation": relation_distillation}

# LifelongConfig.style_gate -> whether a step shows its crops in the earlier cameras' looks,
# given (persons learned in earlier domains, the new domain's persons)
STYLE_GATE = {
    "always": lambda learned, new: True,
    # a new domain with more persons than everything learned before needs room to learn; the
    # earlier looks then hold the embedding where too few persons fixed it (small to large,
    # session 23: the style term cost CUHK03 learned last the most and bought nothing there;
    # not better on validation either: docs/results.md, session 24)
    "not_larger": lambda learned, new: new <= learned,
}


def _styles(s: Strategy) -> bool:
    return s.style_replay is not None


# which strategies read each later setting of LifelongConfig (the kd balance scales LwF, the
# relation and the style distillation)
READS_LATER = {
    "attr_pull_weight": lambda s: s.xdomain == "attributes",
    "kd_balance_power": lambda s: s.lwf or s.relation or _styles(s),
    "style_feat_weight": _styles, "style_distill": _styles, "style_rectify": _styles,
    "style_gate": _styles, "style_id_weight": _styles,
    "expert_weight": lambda s: s.expert,
}


def _frozen(model: LifelongReid) -> LifelongReid:
    """A teacher: in eval mode, nothing of it learns."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def distill_balance(learned: int, new: int, power: float) -> float:
    """The weight of the old model's distillation on a step: (persons learned in earlier
    domains / the new domain's persons) ** ``power``; 1 on the first step or at power 0."""
    if power == 0 or learned == 0:
        return 1.0
    return float((learned / new) ** power)


@dataclass
class LifelongConfig:
    iterations: int = 300
    p: int = 16
    k: int = 4
    lr: float = 1e-3            # the shipped re-ID head's recipe (train.reid)
    weight_decay: float = 5e-4
    warmup: int = 30
    margin: float = 0.3
    label_smoothing: float = 0.1
    kd_temperature: float = 2.0
    kd_weight: float = 1.0
    relation_weight: float = 1.0
    align_weight: float = 0.5
    align_tau: float = 0.07
    xdomain_weight: float = 1.0
    proto_tau: float = 0.1
    rehearsal_ids: int = 250
    rehearsal_images: int = 2
    rehearsal_batch: int = 32
    average_weight: float = 0.5    # share of the old model in weight averaging
    seed: int = 0
    attr_pull_weight: float = 0.5  # vladr_attributes: the pull towards earlier attribute prototypes
    style_feat_weight: float = 1.0  # vladr_styles: cosine distillation of the re-styled crops' embedding
    # distillation scaled by (persons learned before / new persons) ** this (LUCIR's adaptive
    # weight at 0.5): keep harder when the new domain is small beside what was learned, learn
    # more freely from a large one
    kd_balance_power: float = 0.0
    # how the re-styled crops are held to the old model: "cosine" holds each embedding where
    # it was; "relation" only their similarity structure, meant to free a large late domain's
    # persons (on validation it held them together instead: docs/results.md, session 23)
    style_distill: str = "cosine"
    # distil only the re-styled crops the old model already places next to the same person
    # (LSTKC's rectification), so that its mistakes about new persons are not taught
    # (not better on validation either: docs/results.md, session 23)
    style_rectify: bool = False
    # on which steps the style replay runs (STYLE_GATE); the earlier domains' styles are still
    # recorded on every step
    style_gate: str = "always"
    expert_weight: float = 1.0     # the cosine distillation of the new-domain expert's embedding
    # the re-styled crops also learn the new persons' identities (ID cross-entropy at this
    # weight): the earlier cameras' looks become a style augmentation of the new domain, so
    # that the half of each batch that is held to the old model also carries the new labels.
    # 1 since session 25 (better on validation in both orders, then on the test protocol:
    # docs/results.md); runs recorded before it ran at 0, which _LATER keeps meaning
    style_id_weight: float = 1.0

    # fields added after the first runs appear in a run's record only when not at the value
    # they had before they existed, so that runs recorded before them still match
    _LATER = {"attr_pull_weight": 0.5, "style_feat_weight": 1.0, "kd_balance_power": 0.0,
              "style_distill": "cosine", "style_rectify": False, "style_gate": "always",
              "expert_weight": 1.0, "style_id_weight": 0.0}

    def __post_init__(self):
        if self.style_distill not in STYLE_DISTILL:
            raise ValueError(f"unknown style_distill {self.style_distill!r}; available: "
                             + ", ".join(STYLE_DISTILL))
        if self.style_gate not in STYLE_GATE:
            raise ValueError(f"unknown style_gate {self.style_gate!r}; available: "
                             + ", ".join(STYLE_GATE))

    def for_strategy(self, strat: Strategy) -> "LifelongConfig":
        """These settings with the later ones ``strat`` never reads at the value they had before
        they existed (``_LATER``), so that a bound (finetune, joint) run beside a ``--set``
        variant, or after a default changed, records the same settings as before and is read
        back instead of trained again."""
        return replace(self, **{k: d for k, d in self._LATER.items() if not READS_LATER[k](strat)})

    def to_dict(self) -> dict:
        d = asdict(self)
        for k, default in self._LATER.items():
            if d[k] == default:
                del d[k]
        return d


@dataclass
class StepData:
    """One domain's training crops: feature-cache rows, identity labels 0..n-1, and (for the
    text side) each crop's row in the ``TextStates``."""
    name: str
    rows: np.ndarray
    labels: np.ndarray
    text_rows: np.ndarray | None = None
    persons: list[str] | None = None       # person names by label (kept in the config)

    def __post_init__(self):
        if len(self.rows) != len(self.labels):
            raise ValueError("rows and labels differ in length")
        uniq = np.unique(self.labels)
        if len(uniq) < 2:
            raise ValueError(f"domain {self.name!r} has {len(uniq)} identity: need at least 2")
        if not np.array_equal(uniq, np.arange(len(uniq))):
            raise ValueError("labels must be 0..n-1")

    @property
    def num_ids(self) -> int:
        return int(self.labels.max()) + 1


class Learner:
    """The model being learned, with what a strategy keeps between steps: the text splitter,
    the prototype memories, the rehearsal buffer."""

    def __init__(self, model: LifelongReid, strat: Strategy, cfg: LifelongConfig,
                 features, texts=None, log=print):
        self.model, self.strategy, self.cfg = model, strat, cfg
        self.features, self.texts, self.log = features, texts, log
        c = model.config
        self.splitter = TextAttributeSplit(c.text_dim, len(c.parts), c.part_dim, strat.text_split,
                                           seed=cfg.seed)
        self.memory = PrototypeMemory(len(c.parts), c.part_dim)
        self.global_memory = PrototypeMemory(1, c.embed_dim)
        self.attribute_memory = PrototypeMemory(len(ATTRIBUTE_NAMES), c.embed_dim)
        self.style_memory = None      # (STYLE_KEYS, 2 x lower-stage channels), made on first use
        self.buffer_rows = np.zeros(0, np.int64)
        self.buffer_labels = np.zeros(0, np.int64)     # in the concatenated old classifiers

    # ------------------------------------------------------------------ one step
    def learn(self, data: StepData) -> dict:
        cfg, strat, model = self.cfg, self.strategy, self.model
        t0 = time.time()                 # the step's time includes training its expert
        if strat.uses_text and (self.texts is None or data.text_rows is None):
            raise ValueError(f"strategy {strat.name} needs the descriptions of the training crops")
        torch.manual_seed(cfg.seed + len(model.classifiers))
        rng = np.random.default_rng([cfg.seed, len(model.classifiers)])
        old = None
        if strat.needs_old or strat.average:
            old = _frozen(copy.deepcopy(model))
        expert = self._expert(data) if strat.expert and model.classifiers else None
        for clf in model.classifiers.values():        # earlier domains' classifiers stay fixed
            clf.requires_grad_(False)
        learned = sum(c.out_features for c in model.classifiers.values())
        keep = distill_balance(learned, data.num_ids, cfg.kd_balance_power)
        style_on = STYLE_GATE[cfg.style_gate](learned, data.num_ids)
        clf = model.add_domain(data.name, data.num_ids)
        self.memory.start(data.name)
        self.global_memory.start(data.name)
        self.attribute_memory.start(data.name)
        params = [p for p in (*model.parameters(), *self.splitter.parameters()) if p.requires_grad]
        decay = [p for p in params if p.ndim > 1]
        rest = [p for p in params if p.ndim <= 1]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                 {"params": rest, "weight_decay": 0.0}], lr=cfg.lr)
        sched = warmup_cosine(opt, cfg.warmup, cfg.iterations)
        sampler = PKSampler(data.labels, cfg.p, cfg.k, seed=int(rng.integers(1 << 31)))
        batches = iter(())
        y_all = torch.from_numpy(data.labels.astype(np.int64))
        sums: dict[str, float] = {}
        stats: dict[str, float] = {}    # means over the step that are not losses
        model.train()
        self.splitter.train()
        from tqdm import tqdm

        for it in tqdm(range(cfg.iterations), desc=f"{strat.name}: {data.name}", unit="it",
                       mininterval=5):
            b = next(batches, None)
            if b is None:
                batches = iter(sampler)
                b = next(batches)
            views = rng.integers(0, 2, len(b))
            x = self.features.batch(data.rows[b], views)
            y = y_all[b]
            n_new = len(b)
            replay = strat.rehearsal and len(self.buffer_rows) > 0
            if replay:
                rb = rng.choice(len(self.buffer_rows), min(cfg.rehearsal_batch, len(self.buffer_rows)),
                                replace=False)
                x = torch.cat([x, self.features.batch(self.buffer_rows[rb], rng.integers(0, 2, len(rb)))])
            n_styled = 0
            if (strat.style_replay and style_on and self.style_memory is not None
                    and len(self.style_memory) > 0):
                styles = self._earlier_styles(data, b, rng)
                x = torch.cat([x, restyle(x[:n_new], styles)])
                n_styled = n_new
            out = model(x)
            losses = {
                "id": F.cross_entropy(clf(out["bn"][:n_new]), y, label_smoothing=cfg.label_smoothing),
                "triplet": batch_hard_triplet(F.normalize(out["emb"][:n_new], dim=-1), y, cfg.margin),
            }
            if replay:
                yb = torch.from_numpy(self.buffer_labels[rb])
                replayed = out["bn"][n_new:n_new + len(rb)]
                losses["replay_id"] = F.cross_entropy(model.old_logits(replayed, data.name), yb,
                                                      label_smoothing=cfg.label_smoothing)
            attrs = None
            if strat.xdomain == "attributes":
                attrs = self.texts.attributes(data.text_rows[b])
            if old is not None and strat.needs_old:
                with torch.no_grad():
                    ref = old(x)
                if strat.lwf:
                    new_l, old_l = model.old_logits(out["bn"], data.name), old.old_logits(ref["bn"], data.name)
                    if new_l is not None:
                        losses["lwf"] = keep * cfg.kd_weight * logit_distillation(new_l, old_l, cfg.kd_temperature)
                if n_styled:
                    # the earlier cameras' looks: the embedding retrieval compares stays the old one
                    s_new, s_old = out["bn"][-n_styled:], ref["bn"][-n_styled:]
                    right = old_model_right(s_old, y).float() if cfg.style_rectify else None
                    if right is not None:   # how well the old model knows the new persons
                        stats["old_model_right"] = stats.get("old_model_right", 0.0) + right.mean().item()
                    losses["style_feat"] = keep * cfg.style_feat_weight * STYLE_DISTILL[cfg.style_distill](
                        s_new, s_old, weight=right)
                if strat.relation:
                    losses["relation"] = keep * cfg.relation_weight * relation_distillation(out["emb"], ref["emb"])
                if strat.xdomain == "parts" and len(self.memory) > 1:
                    losses["xdomain"] = cfg.xdomain_weight * prototype_alignment(
                        out["parts"][:n_new], ref["parts"][:n_new], self.memory.old(data.name), cfg.proto_tau)
                if strat.xdomain == "global" and len(self.global_memory) > 1:
                    losses["xdomain"] = cfg.xdomain_weight * prototype_alignment(
                        out["emb"][:n_new, None], ref["emb"][:n_new, None],
                        self.global_memory.old(data.name), cfg.proto_tau)
                if strat.xdomain == "attributes" and len(self.attribute_memory) > 1:
                    protos, proto_attr = self.attribute_memory.valid(data.name)
                    # in the BNNeck output's space: what retrieval compares (by cosine)
                    losses["xdomain"] = cfg.xdomain_weight * prototype_alignment(
                        out["bn"][:n_new, None], ref["bn"][:n_new, None], protos[:, None], cfg.proto_tau)
                    if cfg.attr_pull_weight > 0:
                        losses["attr_pull"] = cfg.attr_pull_weight * attribute_pull(
                            out["bn"][:n_new], attrs, protos, proto_attr)
            if n_styled and cfg.style_id_weight > 0:
                losses["style_id"] = cfg.style_id_weight * F.cross_entropy(
                    clf(out["bn"][-n_styled:]), y, label_smoothing=cfg.label_smoothing)
            if expert is not None:
                with torch.no_grad():
                    taught = expert(x[:n_new])["bn"]
                losses["expert"] = cfg.expert_weight * _cosine_distance(out["bn"][:n_new], taught)
            if strat.text_align:
                states, mask = self.texts.batch(data.text_rows[b])
                text = self.splitter(states, mask)
                losses["align"] = cfg.align_weight * cross_modal_alignment(
                    out["parts"][:n_new], text, y, cfg.align_tau)
            self.memory.update(data.name, out["parts"][:n_new])
            self.global_memory.update(data.name, out["emb"][:n_new, None])
            if attrs is not None:
                self.attribute_memory.update(data.name, out["bn"][:n_new, None], attrs)
            loss = sum(losses.values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v.item()
        model.eval()
        model.config.domains.append({"name": data.name, "persons": data.num_ids,
                                     "images": int(len(data.rows)), "strategy": strat.name,
                                     "iterations": cfg.iterations,
                                     **({"person_names": list(data.persons)} if data.persons else {})})
        if strat.average and old is not None:
            self._average_with(old)
        if strat.rehearsal:
            self._store(data, rng)
        if strat.style_replay:
            self._store_styles(data)
        return {"domain": data.name, "ids": data.num_ids, "images": int(len(data.rows)),
                "iterations": cfg.iterations, "seconds": round(time.time() - t0, 1),
                "losses": {k: v / cfg.iterations for k, v in sums.items()},
                **({"stats": {k: v / cfg.iterations for k, v in stats.items()}} if stats else {})}

    def _expert(self, data: StepData) -> LifelongReid:
        """A copy of the model fine-tuned on the new domain alone (ID + triplet, the same
        iterations and seed), frozen: the second teacher of ``expert`` strategies."""
        expert = Learner(copy.deepcopy(self.model), STRATEGIES["finetune"], self.cfg, self.features,
                         log=self.log)
        expert.learn(data)
        return _frozen(expert.model)

    def _average_with(self, old: LifelongReid) -> None:
        w = self.cfg.average_weight
        old_state = old.state_dict()
        with torch.no_grad():
            for name, t in self.model.state_dict().items():
                if name in old_state and t.is_floating_point() and not name.startswith("classifiers."):
                    t.mul_(1 - w).add_(old_state[name], alpha=w)

    def _store(self, data: StepData, rng) -> None:
        """2 images of at most 250 persons of the domain just learned, labelled in the
        concatenated classifiers of every domain but the next one."""
        offset = sum(c.out_features for n, c in self.model.classifiers.items() if n != data.name)
        ids = rng.permutation(data.num_ids)[:self.cfg.rehearsal_ids]
        rows, labels = [], []
        for pid in ids:
            idx = np.flatnonzero(data.labels == pid)
            pick = rng.choice(idx, min(self.cfg.rehearsal_images, len(idx)), replace=False)
            rows += list(data.rows[pick])
            labels += [offset + int(pid)] * len(pick)
        self.buffer_rows = np.r_[self.buffer_rows, np.array(rows, np.int64)]
        self.buffer_labels = np.r_[self.buffer_labels, np.array(labels, np.int64)]

    def _store_styles(self, data: StepData, chunk: int = 512) -> None:
        """The domain's style prototypes: the mean channel statistics of all its crops (both
        views), per attribute its descriptions state and over all of them. The lower stages do
        not learn, so these are exact means, not an EMA over batches."""
        styles = torch.cat([channel_style(self.features.batch(data.rows[i:i + chunk],
                                                              np.full(len(data.rows[i:i + chunk]), view)))
                            for view in (0, 1) for i in range(0, len(data.rows), chunk)])
        if self.style_memory is None:
            self.style_memory = PrototypeMemory(len(STYLE_KEYS), styles.shape[1], unit=False)
        mask = torch.ones(len(styles), len(STYLE_KEYS), dtype=torch.bool)
        if self.strategy.style_replay == "attributes":
            stated = self.texts.attributes(data.text_rows)
            mask[:, :len(ATTRIBUTE_NAMES)] = torch.cat([stated, stated])
        else:
            mask[:, :len(ATTRIBUTE_NAMES)] = False
        self.style_memory.start(data.name)
        self.style_memory.update(data.name, styles[:, None], mask)

    def _earlier_styles(self, data: StepData, b: np.ndarray, rng) -> torch.Tensor:
        """(B, 2C) one earlier style per crop of the batch: a random earlier domain, and there
        the style of a random attribute the crop's description states (the domain's overall
        style where it states none the domain showed, or for ``style_replay="domain"``)."""
        table, ok = self.style_memory.table(exclude=data.name)          # (D, K, 2C), (D, K)
        d = torch.from_numpy(rng.integers(0, len(table), len(b)))
        k = torch.full((len(b),), len(STYLE_KEYS) - 1)
        if self.strategy.style_replay == "attributes":
            stated = self.texts.attributes(data.text_rows[b])
            usable = stated & ok[d, :len(ATTRIBUTE_NAMES)]
            pick = torch.from_numpy(rng.random(usable.shape)).float() * usable     # random among usable
            has = usable.any(1)
            k[has] = pick[has].argmax(1)
        return table[d, k]

    # ------------------------------------------------------------------ state
    def state(self) -> dict:
        """Everything needed to go on (tensors, numbers, strings, lists: checkpoint-safe)."""
        return {"model": self.model.state_dict(), "splitter": self.splitter.state_dict(),
                "memory": self.memory.state_dict(), "memory_names": list(self.memory.names),
                "global_memory": self.global_memory.state_dict(),
                "attribute_memory": self.attribute_memory.state_dict(),
                **({"style_memory": self.style_memory.state_dict(),
                    "style_memory_names": list(self.style_memory.names)}
                   if self.style_memory is not None else {}),
                "domains": [[n, c.out_features] for n, c in self.model.classifiers.items()],
                "buffer_rows": torch.from_numpy(self.buffer_rows),
                "buffer_labels": torch.from_numpy(self.buffer_labels)}

    def load_state(self, state: dict) -> None:
        for name, n in state["domains"]:
            self.model.add_domain(name, int(n))
        self.model.load_state_dict(state["model"])
        self.splitter.load_state_dict(state["splitter"])
        for name in ("memory", "global_memory", "attribute_memory"):
            if name in state:          # checkpoints before session 17 have no attribute memory
                getattr(self, name).load(state["memory_names"], state[name]["prototypes"],
                                         state[name]["counts"])
        if "style_memory" in state:
            saved = state["style_memory"]
            self.style_memory = PrototypeMemory.restored(state["style_memory_names"], saved["prototypes"],
                                                         saved["counts"], unit=False)
        self.buffer_rows = state["buffer_rows"].numpy()
        self.buffer_labels = state["buffer_labels"].numpy()
        self.model.eval()
