"""The colour part of a re-ID head: LOMO descriptors, projected, appended to the embedding.

``add_lomo_part`` (``ReidTrainConfig.lomo_dim`` > 0): the LOMO descriptor of each crop,
colour and texture (``personlens.models.lomo``), projected by LDA fitted on the training
identities (``personlens.train.lomo_fit``), is appended to the embedding; the texture weight
inside it and the part's weight are chosen on validation. ``cfg`` is a
``personlens.train.reid.ReidTrainConfig``.
"""
from __future__ import annotations

import time

import numpy as np

from ..models.embedding import EmbeddingHead
from .reid_val import rank_features

__all__ = ["colour_descriptor_config", "add_lomo_part"]


def colour_descriptor_config(cfg):
    """The ``LomoConfig`` to compute training and validation descriptors with: the largest
    texture weight tried, from which every other weight is derived (``reweight_texture``)."""
    from ..models.lomo import LomoConfig

    return LomoConfig(texture_weight=max((*cfg.colour_texture_weights,
                                            cfg.colour_texture_weight_without_val)))


def add_lomo_part(head: EmbeddingHead, train_colour: np.ndarray, labels: np.ndarray,
                    cfg, val: dict | None = None, flip_tta: bool = False,
                    log=print) -> tuple[EmbeddingHead, dict]:
    """Fit the colour projection on the training images' descriptors (made with
    ``colour_descriptor_config(cfg)``) and identities, for each texture weight of
    ``cfg.colour_texture_weights``, and choose the texture weight and the colour part's weight
    (``cfg.colour_weights``) on ``val`` (which then holds ``colour``, the validation images'
    descriptors) by mAP + R1, like ``base_weight``; without ``val``, the ``*_without_val``
    weights. Colour weight 0 returns ``head`` unchanged."""
    from ..models.lomo import reweight_texture
    from .lomo_fit import fit_lomo_projection
    from ..models.embedding import with_lomo
    from ..inference.pooled import head_embeddings

    t0 = time.time()
    dim = min(cfg.lomo_dim, len(np.unique(labels)) - 1)   # LDA: below the identity count
    if dim < 1:
        log("colour part skipped: fitting it needs at least two training identities")
        return head, {"dim": 0, "weight": 0.0, "skipped": "fewer than two training identities"}
    made_with = colour_descriptor_config(cfg)

    def at(desc, texture):   # the descriptors as a head with that texture weight computes them
        return reweight_texture(desc, made_with, texture) if made_with.texture_weight else desc

    def fit(texture):
        return fit_lomo_projection(at(train_colour, texture), labels, dim, cfg.colour_pca_dim,
                                     seed=cfg.seed)

    summary: dict = {"dim": dim, "pca_dim": cfg.colour_pca_dim,
                     "descriptor": "LOMO: HSV colour and SILTP texture (personlens.models.lomo)"}
    if val is None:
        texture, weight = cfg.colour_texture_weight_without_val, cfg.colour_weight_without_val
        mean, proj = fit(texture)
    else:
        scores, fitted = {}, {}
        for texture in cfg.colour_texture_weights:
            fitted[texture] = mean, proj = fit(texture)
            config, val_desc = made_with.with_texture_weight(texture), at(val["colour"], texture)
            for w in cfg.colour_weights:
                if w == 0 and any(x == 0 for _, x in scores):
                    continue   # without a colour part the texture weight does not matter
                cand = with_lomo(head, mean, proj, w, config) if w else head
                emb = head_embeddings(cand, val["pooled"], flip_tta, colour=val_desc)
                scores[(texture, w)] = rank_features(emb, val["query"], val["gallery"], val["pids"],
                                             val["camids"])
        texture, weight = max(scores, key=lambda k: scores[k]["mAP"] + scores[k]["R1"])
        if not weight:
            texture = 0.0
        mean, proj = fitted.get(texture) or fit(texture)
        summary["val"] = {f"texture {t} colour {w}": m for (t, w), m in scores.items()}
        log("colour part on val: " + ", ".join(f"t={t} w={w}: R1 {m['R1']:.1f} mAP {m['mAP']:.1f}"
                                               for (t, w), m in scores.items())
            + f" -> texture {texture}, weight {weight}")
    summary.update({"texture_weight": texture, "weight": weight,
                    "seconds": round(time.time() - t0, 1)})
    out = with_lomo(head, mean, proj, weight, made_with.with_texture_weight(texture)) \
        if weight else head
    out.config.notes["colour"] = {k: v for k, v in summary.items() if k != "val"}
    return out, summary
