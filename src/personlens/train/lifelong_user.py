"""``personlens train reid --lifelong``: continue a lifelong re-ID head on a user's new cameras.

Each ``--domain NAME=PATH`` (a folder with one sub-folder per person, or a CSV of path, person,
camera; ``data.reid_domains.user_domain``) is learned in the order given, with a strategy of
:data:`personlens.train.lifelong.STRATEGIES` that stores no images (VLADR by default). The head,
its text splitter and its attribute prototype memory are written to ``--out``; ``--from``
is never changed. Bad input is refused before anything is written: a domain with fewer than
2 persons or no cross-camera pair, a name already learned, persons already learned in an
earlier domain, a ``--from`` that is not a lifelong head (no prototype memory).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..data.cache import key
from ..data.reid_domains import user_domain
from ..models.lifelong import LifelongReid, LifelongReidConfig, load_lifelong, save_lifelong
from .lifelong import Learner, LifelongConfig, StepData, strategy

__all__ = ["train_lifelong", "evaluate_head"]


def _check_domains(domains, learned: list[dict]) -> list:
    """Load every domain first, so that nothing trains when one of them is bad."""
    names = {d["name"] for d in learned}
    loaded = []
    for name, path in domains:
        if name in names:
            raise ValueError(f"domain {name!r} was learned already; give the new cameras another name")
        items, persons = user_domain(name, path)
        for d in learned:
            clash = sorted(set(d.get("person_names", ())) & set(persons.values()))
            if clash:
                raise ValueError(f"domain {name}: persons {', '.join(clash[:5])} were learned in "
                                 f"domain {d['name']!r}; lifelong domains hold new people (rename them "
                                 "if they are other people)")
        names.add(name)
        loaded.append((name, items, persons))
    return loaded


def train_lifelong(out_dir, domains: list[tuple[str, str]], from_dir=None, strategy_name="vladr",
                   cfg: LifelongConfig | None = None, cache_root="cache", progress=True,
                   log=print) -> dict:
    from ..models.factory import create_image_encoder
    from .lifelong_data import LowerFeatures, TextStates, describe_crops

    cfg = cfg or LifelongConfig()
    strat = strategy(strategy_name)
    if strat.stores_images:
        raise ValueError(f"strategy {strategy_name} stores images of earlier cameras; lifelong "
                         "training of a deployment offers the ones that do not "
                         "(finetune, lwf, weight_average, vladr...)")
    out_dir = Path(out_dir)
    if from_dir is not None and Path(from_dir).resolve() == out_dir.resolve():
        raise ValueError("--out must differ from --from: the head you continue is never overwritten")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty; choose a new --out")
    if not domains:
        raise ValueError("give at least one --domain NAME=PATH")
    encoder = create_image_encoder("efficientnet_lite0", pretrained=True).freeze()
    if from_dir is not None:
        loaded_head = load_lifelong(from_dir, encoder)
        model = loaded_head.model
        old_strategy = loaded_head.config.get("strategy")
        if old_strategy not in (None, strategy_name):
            log(f"note: {from_dir} was trained with {old_strategy}; going on with {strategy_name}")
    else:
        model = LifelongReid(encoder, LifelongReidConfig(text_split=strat.text_split))
        loaded_head = None
    loaded = _check_domains(domains, list(model.config.domains))
    paths = [it.path for _, items, _ in loaded for it in items]
    features = LowerFeatures(encoder, paths, model.config.stage, Path(cache_root) / "features",
                             tag=key([str(p) for p in paths], digest_size=4))
    texts = None
    if strat.uses_text:
        texts = TextStates(describe_crops(paths, Path(cache_root) / "lifelong", progress),
                           Path(cache_root) / "lifelong")
    learner = Learner(model, strat, cfg, features, texts, log)
    if loaded_head is not None:
        learner.splitter.load_state_dict(loaded_head.splitter.state_dict())
        learner.memory, learner.global_memory = loaded_head.memory, loaded_head.global_memory
        learner.attribute_memory = loaded_head.attribute_memory
        learner.style_memory = loaded_head.style_memory
    records, start = [], 0
    for name, items, persons in loaded:
        rows = features.rows([it.path for it in items])
        data = StepData(name, rows, np.array([it.pid for it in items], np.int64),
                        np.arange(start, start + len(items)), [persons[i] for i in range(len(persons))])
        start += len(items)
        records.append(learner.learn(data))
        log(f"learned {name}: {data.num_ids} persons, {len(items)} images "
            f"({records[-1]['seconds']:.0f}s)")
    save_lifelong(out_dir, model, learner.splitter, learner.memory, learner.global_memory,
                  {"strategy": strategy_name, "training": cfg.to_dict()}, learner.attribute_memory,
                  learner.style_memory)
    (out_dir / "training.json").write_text(json.dumps({"from": str(from_dir) if from_dir else None,
                                                       "steps": records}, indent=2))
    return {"out": str(out_dir), "domains": [d["name"] for d in model.config.domains],
            "steps": records}


def evaluate_head(head_dir, peta_root=None, cuhk03_root=None, trials: int = 10,
                  cache_root="cache", log=print) -> dict:
    """Score a lifelong head on the protocol's domains that the data roots allow: the seen
    domains it learned (by name) and the unseen ones. Returns the row and the head's history."""
    from ..data.reid_domains import SEEN_DOMAINS, UNSEEN_DOMAINS, load_domain
    from ..eval.lifelong import score_domain
    from ..models.factory import create_image_encoder
    from .lifelong_data import LowerFeatures

    encoder = create_image_encoder("efficientnet_lite0", pretrained=True).freeze()
    head = load_lifelong(head_dir, encoder)
    model, cfg = head.model, head.config
    learned = [d["name"] for d in cfg.get("domains", [])]
    names = [n for n in SEEN_DOMAINS if n in learned] + list(UNSEEN_DOMAINS)
    names = [n for n in names if (cuhk03_root if n == "cuhk03" else peta_root) is not None]
    if not names:
        raise ValueError("give --root (PETA) and/or --cuhk03-root to score the head on")
    domains = {n: load_domain(n, peta_root, cuhk03_root, n_trials=trials) for n in names}
    paths = list(dict.fromkeys(it.path for d in domains.values() for t in d.trials
                               for it in (*t.query, *t.gallery)))
    feats = LowerFeatures(encoder, paths, model.config.stage, Path(cache_root) / "features",
                          tag="eval-" + key([str(p) for p in paths], digest_size=4))

    def embed(ps):
        return feats.embed(model.embed, ps)

    row = {}
    for n, d in domains.items():
        row[n] = score_domain(d, embed)
        log(f"{n:>11}: mAP {row[n]['mAP']:.2f}  R1 {row[n]['R1']:.2f}  ({row[n]['trials']} trial(s))")
    return {"head": str(head_dir), "learned": learned, "scores": row,
            "strategy": cfg.get("strategy")}
