"""Validation sets of re-ID training, and ranking a feature matrix on one.

A validation set is a dict: ``pooled`` features (``personlens.inference.pooled``), ``pids``
and ``camids`` per image, ``query`` and ``gallery`` row indices, and the images' ``paths``.
"""
from __future__ import annotations

import numpy as np

__all__ = ["VAL_DOMAINS", "rank_features", "domain_query_gallery", "domain_val_set",
           "cuhk03_val_set"]

VAL_DOMAINS = ("3DPeS", "i-LIDS")   # PETA sub-datasets held out of training for validation


def domain_query_gallery(pids, seed: int = 0) -> tuple[list, list]:
    """Validation ranking on a dataset without camera labels, given each image's identity:
    one random query per identity with at least two images, every other image in the gallery
    (single-image identities are distractors). Returns (query rows, gallery rows)."""
    rng = np.random.default_rng(seed)
    by_id: dict = {}
    for i, pid in enumerate(pids):
        by_id.setdefault(pid, []).append(i)
    q = sorted(int(rng.choice(idx)) for idx in by_id.values() if len(idx) > 1)
    qs = set(q)
    return q, [i for i in range(len(pids)) if i not in qs]


def domain_val_set(model, peta_root, domains, flip_tta, cache_root, progress, batch_size, seed):
    """The validation set of held-out PETA sub-datasets ``domains``: ``pooled`` features,
    ``pids``, ``camids``, ``query``/``gallery`` rows and ``paths`` (``domain_query_gallery``)."""
    from ..data.reid import peta_reid_subset
    from ..inference.pooled import pooled_features

    # person ids restart in every sub-dataset: key them by it
    items = [(f"{d}/{it.pid}", it.path) for d in domains for it in peta_reid_subset(peta_root, d).items]
    q, g = domain_query_gallery([pid for pid, _ in items], seed)
    items = [items[i] for i in q + g]
    pooled = pooled_features(model, [path for _, path in items], flip=flip_tta,
                             cache_root=cache_root, name="reid-val-" + "-".join(domains),
                             progress=progress, batch_size=batch_size)
    # no camera labels: query camera 0, gallery camera 1, so the same-camera rule drops nothing
    camids = np.r_[np.zeros(len(q), int), np.ones(len(g), int)]
    return {"pooled": pooled, "pids": np.array([pid for pid, _ in items]), "camids": camids,
            "query": np.arange(len(q)), "gallery": np.arange(len(q), len(items)),
            "paths": [path for _, path in items]}


def cuhk03_val_set(model, cuhk03_root, flip_tta, cache_root, progress, batch_size, limit):
    """The CUHK03-subset ``val`` split as a validation set (keys as ``domain_val_set``);
    ``limit``: only the first identities (quick runs)."""
    from ..data.reid import cuhk03_subset_query_gallery
    from ..inference.pooled import pooled_features

    trial = cuhk03_subset_query_gallery(cuhk03_root, split="val")
    items = trial.query + trial.gallery
    if limit:
        keep_ids = sorted({it.pid for it in items})[:max(2, limit // 40)]
        items = [it for it in items if it.pid in keep_ids]
    vp = pooled_features(model, [it.path for it in items], flip=flip_tta,
                         cache_root=cache_root, name="cuhk03-subset-val",
                         progress=progress, batch_size=batch_size)
    nq = sum(1 for it in items if it in set(trial.query))
    return {"pooled": vp, "pids": np.array([it.pid for it in items]),
            "camids": np.array([it.camid for it in items]),
            "query": np.arange(nq), "gallery": np.arange(nq, len(items)),
            "paths": [it.path for it in items]}


def rank_features(feats, q_idx, g_idx, pids, camids) -> dict:
    """Ranking metrics (``evaluate_ranking(...).to_dict()``: R1, mAP, ...) of ``feats`` (unit
    rows) with ``q_idx`` as queries against ``g_idx`` as the gallery, by cosine similarity."""
    from ..eval.retrieval import evaluate_ranking

    sim = feats[q_idx] @ feats[g_idx].T
    return evaluate_ranking(sim, pids[q_idx], pids[g_idx], camids[q_idx], camids[g_idx]).to_dict()
