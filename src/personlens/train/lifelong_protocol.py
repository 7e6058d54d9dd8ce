"""The lifelong re-ID protocol (issue 16): seen domains learned in an order, every domain
scored after every step (the unseen ones after the last step), for each strategy; resumable
per step.

Starting point: the ImageNet EfficientNet-Lite0 (it never saw any of these people or cameras,
seen or unseen). Its lower stages are frozen and cached; its top (``LifelongReidConfig.stage``
on) learns. Row 0 of every matrix ("encoder") is the starting encoder's own mean-pooled tokens.

``split="val"`` runs the validation protocol instead (``data.reid_domains.validation_domain``):
each seen domain trains without a quarter of its training persons and is scored on them; no
test person and no unseen domain is used, so settings are chosen there. The feature and
description caches are the test protocol's (the same images).

Outputs per run (``out/<order>-s<seed>[-val]/<strategy>.json``): the domains, the steps, the matrix
(mAP / R1 per domain after each step), the training records and the summary
(``eval.lifelong.summarize``). A killed run re-run goes on from its last finished step.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.reid_domains import (SEEN_DOMAINS, SPLITS, UNSEEN_DOMAINS, domain_order, load_domain,
                                 validation_domain)
from ..eval.lifelong import score_domain, summarize
from ..models.lifelong import LifelongReid, LifelongReidConfig
from .checkpoint import load_checkpoint, remove_checkpoint, save_checkpoint, settings_key
from .lifelong import Learner, LifelongConfig, StepData, strategy

__all__ = ["Protocol", "record_matches", "run_config", "run_strategy"]


class Protocol:
    """Domains, cached features and texts shared by every strategy of one seed."""

    def __init__(self, peta_root, cuhk03_root, cache_root="cache", seed: int = 0,
                 stage: int | None = None, trials: int = 10, need_text: bool = True, progress: bool = True,
                 split: str = "test"):
        from ..models.factory import create_image_encoder
        from .lifelong_data import LowerFeatures, TextStates, describe_crops

        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        self.seed, self.split = seed, split
        # the test protocol's domains fix the caches' image lists in both splits
        full = {n: load_domain(n, peta_root, cuhk03_root, seed=0, n_trials=trials)
                for n in (*SEEN_DOMAINS, *UNSEEN_DOMAINS)}
        self.encoder = create_image_encoder("efficientnet_lite0", pretrained=True).freeze()
        self.stage = LifelongReidConfig.stage if stage is None else int(stage)
        paths = list(dict.fromkeys(p for d in full.values() for p in d.images()))
        cache_root = Path(cache_root)
        self.features = LowerFeatures(self.encoder, paths, self.stage, cache_root / "features")
        self.train_paths = [it.path for n in SEEN_DOMAINS for it in full[n].train]
        # what is trained and scored: the test protocol, or the validation one (seen domains only)
        self.domains = full if split == "test" else {n: validation_domain(full[n]) for n in SEEN_DOMAINS}
        self.unseen = UNSEEN_DOMAINS if split == "test" else ()
        self.text_row = {p: i for i, p in enumerate(self.train_paths)}
        self.texts = None
        if need_text:
            descriptions = describe_crops(self.train_paths, cache_root / "lifelong", progress)
            self.texts = TextStates(descriptions, cache_root / "lifelong")

    def step_data(self, names) -> StepData:
        rows, labels, text_rows, offset = [], [], [], 0
        for n in names:
            train = self.domains[n].train
            ids = {p: i for i, p in enumerate(sorted({it.pid for it in train}))}
            rows.append(self.features.rows([it.path for it in train]))
            labels.append(np.array([offset + ids[it.pid] for it in train], np.int64))
            text_rows.append(np.array([self.text_row[it.path] for it in train], np.int64))
            offset += len(ids)
        return StepData("+".join(names), np.concatenate(rows), np.concatenate(labels),
                        np.concatenate(text_rows))

    def score(self, fn, names=None) -> dict:
        embed = lambda paths: self.features.embed(fn, paths)
        return {n: score_domain(self.domains[n], embed) for n in (names or self.domains)}

    def encoder_row(self) -> dict:
        """The starting encoder: its frozen top, mean-pooled tokens."""
        return self.score(lambda x: F.normalize(
            self.encoder.forward_upper(x, self.stage).mean(1), dim=-1))

    def new_model(self, split: str) -> LifelongReid:
        torch.manual_seed(self.seed)
        cfg = LifelongReidConfig(stage=self.stage, text_split=split)
        return LifelongReid(self.encoder, cfg)


def run_config(name: str, order: str, cfg: LifelongConfig) -> LifelongConfig:
    """The settings a strategy actually runs with: joint training sees every seen domain in one
    step, with as many batches as the sequential strategies take over all their steps. Later
    settings the strategy never reads keep the value they had before they existed
    (``LifelongConfig.for_strategy``)."""
    strat = strategy(name)
    cfg = cfg.for_strategy(strat)
    if not strat.joint:
        return cfg
    return replace(cfg, iterations=cfg.iterations * len(domain_order(order)))


def record_matches(record: dict, cfg: LifelongConfig, stage: int, split: str) -> bool:
    """Whether a finished run's record was made with these settings (``cfg`` as run_config
    gives it); records from before a setting existed match while it keeps its default."""
    return (record.get("config") == cfg.to_dict() and record.get("stage", 12) == stage
            and record.get("split", "test") == split)


def run_strategy(protocol: Protocol, name: str, order: str, cfg: LifelongConfig, out_dir,
                 encoder_row: dict | None = None, log=print, known: dict | None = None) -> dict:
    """One strategy over one order; writes and returns the run's JSON record. ``known``: a
    record of this run finished elsewhere (a committed summary): taken when its settings match
    and ``out_dir`` holds no other, so that runs finished in earlier sessions are not re-run."""
    strat = strategy(name)
    seen = list(domain_order(order))
    steps = [seen] if strat.joint else [[d] for d in seen]
    cfg = run_config(name, order, cfg)
    split = protocol.split
    run_dir = Path(out_dir) / f"{order}-s{cfg.seed}{'' if split == 'test' else '-' + split}" / name
    result_path = run_dir.with_suffix(".json")
    if result_path.exists():
        done = json.loads(result_path.read_text())
        if not record_matches(done, cfg, protocol.stage, split):
            raise ValueError(f"{result_path} was made with other settings; use another --out")
        return done
    if (known is not None and known.get("strategy") == name and known.get("order") == order
            and record_matches(known, cfg, protocol.stage, split)):
        return known
    model = protocol.new_model(strat.text_split)
    learner = Learner(model, strat, cfg, protocol.features, protocol.texts, log)
    key = settings_key({"strategy": name, "order": order, "cfg": cfg.to_dict(),
                        "stage": protocol.stage, **({} if split == "test" else {"split": split})})
    state = load_checkpoint(run_dir, key)
    matrix, train, done = [], [], 0
    if state is not None:
        learner.load_state(state["learner"])
        matrix, train, done = json.loads(state["matrix"]), json.loads(state["train"]), int(state["step"])
        log(f"{name}: resuming after step {done}")
    for i, names in enumerate(steps[done:], start=done):
        rec = learner.learn(protocol.step_data(names))
        # the unseen domains after the last step only (and in the encoder row): cheaper
        last = i == len(steps) - 1
        row = protocol.score(model.embed, [*seen, *protocol.unseen] if last else seen)
        matrix.append(row)
        train.append(rec)
        log(f"{name} step {i + 1} ({'+'.join(names)}): mAP " + ", ".join(
            f"{d} {m['mAP']:.1f}" for d, m in row.items()))
        save_checkpoint(run_dir, {"settings_key": key, "step": i + 1, "learner": learner.state(),
                                  "matrix": json.dumps(matrix), "train": json.dumps(train)})
    unseen = list(protocol.unseen)
    domains = [*seen, *unseen]
    result = {"strategy": name, "order": order, "seed": cfg.seed, "split": split, "domains": domains,
              "steps": ["+".join(s) for s in steps], "matrix": matrix, "train": train,
              "config": cfg.to_dict(), "stage": protocol.stage, "stores_images": strat.stores_images,
              "summary": summarize(matrix, seen, unseen)}
    if encoder_row is not None:
        result["encoder"] = encoder_row
    result_path.parent.mkdir(parents=True, exist_ok=True)
    result_path.write_text(json.dumps(result, indent=1))
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(run_dir / "model.safetensors"))
    remove_checkpoint(run_dir)
    return result
