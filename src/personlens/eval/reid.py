"""Evaluate re-identification: the learned re-ID head against untrained baselines.

Protocols (``personlens.data.reid``): VIPeR, PRID 2011 and GRID (from PETA's images,
``viper_trials``/``prid_trials``/``grid_trials``, metrics averaged over the trials) and the
CUHK03 subset (``cuhk03_subset_query_gallery`` on its ``val`` split). Queries and their
matches come from different cameras (same-pid-same-camera gallery items are excluded, the
Market-1501 rule). Metrics: CMC Rank-1/5/10 (+ curve to rank 20), mAP, mINP.

Methods, all from one encoder pass per image (every trial reuses the features):

* ``learned``: the re-ID head on the PAR model's pooled tokens, as the pipeline runs it
  (with its LOMO part when it has one, plus ``learned_without_colour`` and ``colour_only``:
  each part alone);
* ``imagenet_baseline``: the pretrained ImageNet EfficientNet-Lite0 (not the PAR-fine-tuned
  encoder), mean-pooled tokens, L2-normalised;
* ``par_encoder_baseline``: the same on the PAR model's encoder, i.e. what the pipeline
  uses when no re-ID head is available;
* ``<method>+camera``: each of these after per-camera centring
  (``personlens.models.camera_norm``): each camera's mean embedding, fitted on the trial's
  own query and gallery images without identities, is subtracted before ranking.

The PAR encoder was fine-tuned for attributes on PETA's training split, which holds some
VIPeR/PRID/GRID images (with attribute labels, never identities); the re-ID head was not
trained on these three sub-datasets. The JSON says so.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..models.camera_norm import unit_rows
from .report import EVAL_RANKS, metrics_entry, write_retrieval_report
from .retrieval import evaluate_ranking

DATASETS = ("viper", "prid", "grid", "cuhk03-subset")


def reid_trials(dataset: str, root, trials: int = 10, seed: int = 0, n_test: int | None = None):
    """The protocol's list of ``ReidTrial``s (``n_test``: test identities per trial, for quick
    runs; default: the protocol's)."""
    from ..data import reid

    key = dataset.lower().replace("_", "-")
    if key == "viper":
        return reid.viper_trials(root, n_trials=trials, seed=seed, n_test=n_test)
    if key == "prid":
        return reid.prid_trials(root, n_trials=trials, seed=seed, n_test=n_test)
    if key == "grid":
        return reid.grid_trials(root, n_trials=trials, seed=seed, n_test=n_test)
    if key in ("cuhk03-subset", "cuhk03"):
        return [reid.cuhk03_subset_query_gallery(root, seed=seed, split="val")]
    raise ValueError(f"unknown re-ID dataset {dataset!r}; choose from {', '.join(DATASETS)}")


CAMERA_SUFFIX = "+camera"


def trial_images(trials) -> tuple[list[str], dict[str, int], np.ndarray]:
    """The distinct images of all ``trials`` (queries and galleries) in first-seen order, their
    row per path, and each row's camera: one feature matrix serves every trial."""
    seen: dict[str, int] = {}
    for t in trials:
        for it in t.query + t.gallery:
            seen.setdefault(str(it.path), it.camid)
    items = list(seen)
    return items, {p: i for i, p in enumerate(items)}, np.array(list(seen.values()))


def load_reid_models(par_dir=None, reid_head="default"):
    """``(PAR model, re-ID head or None, where the head came from)``: ``par_dir`` None is the
    shipped PAR model; ``reid_head`` as ``personlens.inference.pipeline.resolve_head`` takes it."""
    from ..inference.pipeline import resolve_head
    from ..inference.pooled import load_encoder_model

    model = load_encoder_model(par_dir)
    head, head_src = resolve_head(reid_head, "reid", model, par_dir is None)
    return model, head, head_src


def evaluate_trials(features: dict[str, np.ndarray], trials, index: dict,
                    query_masks: list[np.ndarray] | None = None,
                    camera_centring: bool = False) -> dict[str, list]:
    """Per method, the ``RetrievalMetrics`` of every trial (features: (N, d) unit vectors
    over the images of ``index``: path -> row). With ``query_masks`` (one boolean array per
    trial), only the selected queries are scored (against the whole gallery).

    With ``camera_centring``, every method is scored a second time (named ``name+camera``)
    after ``CameraCentring`` fitted on that trial's own query and gallery images, cameras
    only: what a deployment can compute from each camera's unlabeled footage."""
    from ..models.camera_norm import CameraCentring

    names = list(features) + ([n + CAMERA_SUFFIX for n in features] if camera_centring else [])
    out: dict[str, list] = {k: [] for k in names}
    for n, t in enumerate(trials):
        qi = np.array([index[str(it.path)] for it in t.query])
        gi = np.array([index[str(it.path)] for it in t.gallery])
        a = t.arrays()
        keep = np.ones(len(qi), bool) if query_masks is None else query_masks[n]
        for name, f in features.items():
            views = [(name, f[qi], f[gi])]
            if camera_centring:
                cc = CameraCentring.fit(np.concatenate([f[qi], f[gi]]),
                                        np.concatenate([a["q_camids"], a["g_camids"]]))
                views.append((name + CAMERA_SUFFIX, cc.transform(f[qi], a["q_camids"]),
                              cc.transform(f[gi], a["g_camids"])))
            for key, q, g in views:
                out[key].append(evaluate_ranking(q[keep] @ g.T, a["q_pids"][keep], a["g_pids"],
                                                 a["q_camids"][keep], a["g_camids"],
                                                 ranks=EVAL_RANKS))
    return out


def rank1_by_method(features: dict[str, np.ndarray], trials, index: dict) -> dict[str, float]:
    """Rank-1 over ``trials`` (mean, 2 decimals) of every method, raw and ``+camera``: the
    summary the re-ID check scripts print and write."""
    res = evaluate_trials(features, trials, index, camera_centring=True)
    return {k: round(metrics_entry(v)["R1"], 2) for k, v in res.items()}


def par_training_images(peta_root, partition: int = 0, exclude_subsets=()) -> set[str]:
    """Resolved paths of the PETA images the attribute model was trained on."""
    from ..data.peta import PETA

    return {str(Path(p).resolve()) for split in ("train", "val")
            for p in PETA(peta_root, split=split, partition=partition,
                          exclude_subsets=exclude_subsets).paths}


def unseen_query_mask(trial, seen: set[str]) -> np.ndarray:
    """Queries that, like all their true matches in the gallery, no model has trained on.

    PETA labels attributes per identity, so an encoder fine-tuned on an image's attributes
    has, in effect, seen its identity; these queries are the clean cross-domain test."""
    def unseen(it):
        return str(Path(it.path).resolve()) not in seen

    matches: dict = {}
    for it in trial.gallery:
        matches.setdefault(it.pid, []).append(it)
    return np.array([unseen(q) and all(unseen(g) for g in matches.get(q.pid, [])
                                       if g.camid != q.camid)
                     for q in trial.query], bool)


def evaluate_reid(dataset: str, root, trials: int = 10, par_dir=None, reid_head="default",
                  seed: int = 0, cache_root: str | Path = "cache", batch_size: int = 64,
                  progress: bool = True, imagenet_baseline: bool = True,
                  n_test: int | None = None, camera_centring: bool = True,
                  log=print) -> tuple[dict, dict]:
    """``(meta, methods)`` for ``write_retrieval_report``; with ``camera_centring`` every
    method also appears as ``name+camera`` (``evaluate_trials``)."""
    from ..models.factory import create_image_encoder
    from ..inference.pooled import (lomo_features, head_embeddings, mean_pooled_embeddings,
                                pooled_features)

    t0 = time.time()
    key = dataset.lower()
    ts = reid_trials(key, root, trials, seed, n_test)
    items, index, _ = trial_images(ts)
    log(f"{dataset}: {len(ts)} trial(s), {len(ts[0].query)} queries, {len(ts[0].gallery)} gallery "
        f"images per trial; {len(items)} distinct images")
    model, head, head_src = load_reid_models(par_dir, reid_head)
    flip_tta = bool(getattr(model.config, "flip_tta", False))
    cache = Path(cache_root) / "pooled"
    pooled = pooled_features(model, items, flip=flip_tta, cache_root=cache, name=f"reid-{key}",
                             progress=progress, batch_size=batch_size)
    feats: dict[str, np.ndarray] = {}
    descr = {}
    if head is not None and getattr(head, "needs_lomo", False):
        colour = lomo_features(items, head.lomo_config, cache_root=Path(cache_root) / "colour",
                                 name=f"reid-{key}", progress=progress)
        full = head_embeddings(head, pooled, flip_tta, colour=colour)
        k = head.config.lomo_dim
        feats["learned"] = full
        descr["learned"] = (f"re-ID head ({head_src}): its learned part on the PAR encoder's "
                            f"pooled tokens and its projected colour descriptor, as the pipeline "
                            f"runs it (colour weight {head.config.lomo_weight})")
        # the two parts are stacked, each a scaled unit vector: split and re-normalise
        feats["learned_without_colour"] = unit_rows(full[:, :-k])
        descr["learned_without_colour"] = "the same head without its colour part (ablation)"
        feats["colour_only"] = unit_rows(full[:, -k:])
        descr["colour_only"] = ("the head's projected LOMO descriptor alone (colour, and SILTP "
                                "texture at the head's texture weight; projection fitted on the "
                                "re-ID training identities)")
    elif head is not None:
        feats["learned"] = head_embeddings(head, pooled, flip_tta)
        descr["learned"] = f"re-ID head ({head_src}) on the PAR encoder's pooled tokens"
    if imagenet_baseline:
        from ..data.images import Preprocess

        enc = create_image_encoder(model.config.encoder, pretrained=True,
                                   preprocess=Preprocess.from_dict(model.config.preprocess)).freeze()
        base = pooled_features(enc, items, flip=flip_tta, cache_root=cache, name=f"reid-{key}",
                               progress=progress, batch_size=batch_size)
        feats["imagenet_baseline"] = mean_pooled_embeddings(base, flip_tta)
        descr["imagenet_baseline"] = (f"pretrained ImageNet {model.config.encoder}, mean-pooled "
                                      "tokens, L2-normalised (no re-ID training)")
    feats["par_encoder_baseline"] = mean_pooled_embeddings(pooled, flip_tta)
    descr["par_encoder_baseline"] = ("the PAR model's encoder, mean-pooled tokens (the pipeline "
                                     "without a re-ID head)")
    results = evaluate_trials(feats, ts, index, camera_centring=camera_centring)
    for k in list(descr):
        descr[k + CAMERA_SUFFIX] = (descr[k] + "; then per-camera centring fitted on the trial's "
                                    "query and gallery images (camera ids only, no identities)")
    methods = {k: metrics_entry(v, description=descr[k]) for k, v in results.items()}
    unseen_note = None
    par_notes = model.config.notes
    data = par_notes.get("training_data") or {}
    excluded = tuple(data.get("exclude_subsets", ()))
    if key in ("viper", "prid", "grid"):
        partition = int(data.get("partition", par_notes.get("calibration", {}).get("partition", 0)))
        seen = par_training_images(root, partition, excluded)
        masks = [unseen_query_mask(t, seen) for t in ts]
        if all(m.any() for m in masks):
            clean = evaluate_trials(feats, ts, index, masks, camera_centring=camera_centring)
            for k, v in clean.items():
                entry = metrics_entry(v)
                entry.pop("cmc")
                methods[k]["unseen"] = entry
        unseen_note = (f"'unseen' scores only the queries whose image and true matches are not "
                       f"among the images the attribute model (and so the shared encoder) was "
                       f"trained on: PETA partition {partition} train/val"
                       + (f" without {', '.join(data['exclude_subsets'])}"
                          if data.get("exclude_subsets") else ""))
    if head is None:
        methods = {"learned": None, **methods}
        if camera_centring:
            methods = {"learned" + CAMERA_SUFFIX: None, **methods}
    notes = head.config.notes if head is not None else {}
    meta = {"task": "person re-identification", "dataset": key, "trials": len(ts),
            "seed": seed, "num_images": len(items),
            "queries_per_trial": len(ts[0].query), "gallery_per_trial": len(ts[0].gallery),
            "protocol": ("query and gallery from different cameras; same-pid-same-camera gallery "
                         "items excluded; metrics averaged over trials"),
            "par": str(par_dir) if par_dir is not None else "shipped:par-peta",
            "reid_head": head_src if head is not None else None,
            "reid_head_trained_on": notes.get("trained_on"),
            "flip_tta": flip_tta,
            "camera_centring": (("'+camera' methods subtract each camera's mean embedding, fitted "
                                 "per trial on its query and gallery images (camera ids only), "
                                 "then re-normalise (personlens.models.camera_norm)")
                                if camera_centring else None),
            "note": ("VIPeR, PRID and GRID images are in PETA: the PAR encoder was fine-tuned for "
                     "attributes on PETA's training split (no identities)"
                     + (f" without {', '.join(excluded)}" if excluded else
                        ", so it has seen these cameras and about half of these people")
                     + "; the re-ID head's training data is listed in reid_head_trained_on"),
            "unseen": unseen_note,
            "seconds": round(time.time() - t0, 1)}
    return meta, methods


def run_reid_eval(json_path, **kw) -> tuple[dict, Path]:
    meta, methods = evaluate_reid(**kw)
    title = (f"{meta['dataset']} re-ID ({meta['trials']} trial(s), {meta['queries_per_trial']} "
             f"queries, {meta['gallery_per_trial']} gallery)")
    return write_retrieval_report(json_path, meta, methods, title)
