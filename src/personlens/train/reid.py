"""Re-identification head on the PAR model's frozen encoder (pooled tokens -> 256-d).

``EmbeddingHead(kind="reid", pool="meanmax", hidden=1024, out_dim=256)`` trained on pooled
features (``personlens.inference.pooled``) with the "bag of tricks" recipe (Luo et al., 2019):

* PK sampling: P identities x K images per batch (K drawn with replacement for identities
  with fewer images); each sample is the image or its mirror at random;
* batch-hard triplet loss (Hermans et al., 2017) on the L2-normalised head output;
* BNNeck: a BatchNorm (no bias) after the head output, then a linear identity classifier
  (training only) with label-smoothed cross-entropy.

Each epoch the validation set (CUHK03-subset ``val``: one query per identity and camera, the
rest gallery) is ranked with the head output before and after the BNNeck's BatchNorm; the best
epoch and feature are kept. When the BatchNorm feature wins it is folded into the head's last
layer, so the saved head is a plain ``EmbeddingHead`` giving the chosen feature.

Training data: the CUHK03-subset ``train`` split and PETA's sub-datasets with identities
``TownCentre``, ``3DPeS``, ``CAVIAR4REID`` and ``i-LIDS``. VIPeR, PRID and GRID are kept out:
they are the cross-domain test sets (``personlens eval reid``).

Then the colour part (``add_lomo_part`` in ``personlens.train.reid_lomo``, when
``cfg.lomo_dim`` > 0): the LOMO descriptor of each crop, colour and texture
(``personlens.models.lomo``), projected by LDA fitted on the same training identities, is
appended to the embedding; the texture weight inside it and the part's weight are chosen on
validation. Validation sets: ``personlens.train.reid_val``.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..models.embedding import EmbeddingHead, EmbeddingHeadConfig, save_embedding_head
from .heads import Standardize, cosine_schedule, fold_batchnorm, fold_input_standardization
from .reid_lomo import add_lomo_part, colour_descriptor_config
from .reid_val import (VAL_DOMAINS, cuhk03_val_set, domain_query_gallery, domain_val_set,
                       rank_features)

__all__ = ["ReidTrainConfig", "PKSampler", "batch_hard_triplet", "train_reid_head",
           "reid_training_items", "train_reid", "PETA_TRAIN_SUBSETS", "VAL_DOMAINS",
           "domain_query_gallery", "domain_val_set", "cuhk03_val_set", "rank_features",
           "add_lomo_part", "colour_descriptor_config"]

PETA_TRAIN_SUBSETS = ("TownCentre", "3DPeS", "CAVIAR4REID", "i-LIDS")


@dataclass
class ReidTrainConfig:
    out_dim: int = 256
    hidden: int = 1024
    epochs: int = 60
    p: int = 16                 # identities per batch
    k: int = 4                  # images per identity
    lr: float = 1e-3
    weight_decay: float = 5e-4
    margin: float = 0.3         # triplet margin on unit vectors
    label_smoothing: float = 0.1
    id_weight: float = 1.0
    triplet_weight: float = 1.0
    input_dropout: float = 0.1
    base_weights: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75)   # tried on val (EmbeddingHeadConfig)
    # the colour part (personlens.models.lomo): projection size (0: none), the principal
    # components it starts from, the weights tried on val, and the weight used without val
    lomo_dim: int = 256
    colour_pca_dim: int = 512
    colour_weights: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75)
    colour_weight_without_val: float = 0.5
    # ... and the weight of LOMO's texture half inside the descriptor (LomoConfig)
    colour_texture_weights: tuple[float, ...] = (0.0, 0.3, 0.5)
    colour_texture_weight_without_val: float = 0.5
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


class PKSampler:
    """Batches of ``p`` identities x ``k`` indices each (an epoch visits every identity once,
    in random order; identities with fewer than ``k`` samples are drawn with replacement).
    The last incomplete group of identities is dropped, unless it is the only one."""

    def __init__(self, labels, p: int, k: int, seed: int = 0):
        labels = np.asarray(labels)
        if p < 1 or k < 1:
            raise ValueError("p and k must be >= 1")
        self.by_id = {int(l): np.flatnonzero(labels == l) for l in np.unique(labels)}
        self.ids = np.array(sorted(self.by_id))
        self.p = min(p, len(self.ids))
        self.k = k
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return max(1, len(self.ids) // self.p)

    def __iter__(self) -> Iterator[np.ndarray]:
        ids = self.rng.permutation(self.ids)
        for s in range(len(self)):
            batch = []
            for pid in ids[s * self.p:(s + 1) * self.p]:
                idx = self.by_id[int(pid)]
                batch.append(self.rng.choice(idx, self.k, replace=len(idx) < self.k))
            yield np.concatenate(batch)


def batch_hard_triplet(feats: torch.Tensor, labels: torch.Tensor, margin: float = 0.3,
                       soft: bool = False) -> torch.Tensor:
    """Batch-hard triplet loss: for each anchor the farthest same-label sample and the closest
    other-label sample (Euclidean); ``relu(d_pos - d_neg + margin)`` (``softplus(d_pos -
    d_neg)`` with ``soft``), averaged over anchors that have a negative."""
    d = torch.cdist(feats, feats).clamp(min=0)
    same = labels[:, None] == labels[None, :]
    d_pos = torch.where(same, d, torch.zeros_like(d)).amax(1)
    d_neg = torch.where(same, torch.full_like(d, float("inf")), d).amin(1)
    valid = torch.isfinite(d_neg)
    if not valid.any():
        return feats.sum() * 0.0
    gap = d_pos[valid] - d_neg[valid]
    return (F.softplus(gap) if soft else F.relu(gap + margin)).mean()


class _Trainer(nn.Module):
    """Head + BNNeck + classifier (the last two for training only)."""

    def __init__(self, head: EmbeddingHead, num_ids: int):
        super().__init__()
        self.head = head
        d = head.config.out_dim
        self.bn = nn.BatchNorm1d(d)
        self.bn.bias.requires_grad_(False)
        self.classifier = nn.Linear(d, num_ids, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, x):
        f = self.head.proj(x)
        return f, self.classifier(self.bn(f))


@torch.inference_mode()
def _val_features(trainer: _Trainer, pooled: np.ndarray, std: Standardize, flip_tta: bool,
                  base_weights=(0.0,)) -> dict[str, np.ndarray]:
    """``{"pre_bn w=0.25": (N, d), ...}``: each candidate output feature, as the pipeline
    would compute it, for each weight of the untrained mean-pooled part."""
    from ..inference.pooled import merge_views

    trainer.eval()
    raw = torch.from_numpy(np.asarray(pooled, np.float32))
    f = trainer.head.proj(std(raw))                         # (N, V, d)
    fb = trainer.bn(f.reshape(-1, f.shape[-1])).reshape(f.shape)
    base = merge_views(F.normalize(raw[..., :trainer.head.config.in_dim], dim=-1), flip_tta)
    out = {}
    for name, feat in (("pre_bn", f), ("bnneck", fb)):
        learned = merge_views(F.normalize(feat, dim=-1), flip_tta)
        for w in base_weights:
            out[f"{name} w={w:g}"] = (torch.cat([math.sqrt(w) * base, math.sqrt(1 - w) * learned], -1)
                                      if w else learned).numpy()
    return out


def train_reid_head(pooled: np.ndarray, labels: np.ndarray, cfg: ReidTrainConfig, in_dim: int,
                    val: dict | None = None, flip_tta: bool = False, log=print,
                    notes: dict | None = None) -> tuple[EmbeddingHead, dict]:
    """Train on ``pooled`` (N, V, 2C) with identity ``labels`` (N,). ``val``: ``pooled``,
    ``pids``, ``camids`` (arrays over the validation images) and ``query``/``gallery`` index
    arrays into them; the best epoch/feature by mAP + R1 is kept (the last epoch, BNNeck
    feature, without ``val``). With ``val``, the weight of the untrained part of the output
    (``EmbeddingHeadConfig.base_weight``) is chosen from ``cfg.base_weights`` too."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    labels = np.asarray(labels)
    uniq, y_all = np.unique(labels, return_inverse=True)
    head = EmbeddingHead(EmbeddingHeadConfig(kind="reid", in_dim=in_dim, out_dim=cfg.out_dim,
                                             hidden=cfg.hidden, pool="meanmax",
                                             notes=dict(notes or {})))
    trainer = _Trainer(head, len(uniq))
    std = Standardize.fit(pooled, seed=cfg.seed)
    params = [p for p in trainer.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    sampler = PKSampler(y_all, cfg.p, cfg.k, seed=cfg.seed)
    sched = cosine_schedule(opt, cfg.epochs * len(sampler), len(sampler))
    x_all = torch.from_numpy(np.ascontiguousarray(pooled))
    y_t = torch.from_numpy(y_all.astype(np.int64))
    history, best, best_state, best_feat, best_epoch = [], -math.inf, None, "bnneck w=0", 0
    t0 = time.time()
    for epoch in range(cfg.epochs):
        trainer.train()
        sums = {"id": 0.0, "triplet": 0.0}
        for b in sampler:
            b = torch.from_numpy(b)
            view = torch.from_numpy(rng.integers(0, x_all.shape[1], len(b)))
            x = std(x_all[b, view].float())
            if cfg.input_dropout:
                x = F.dropout(x, cfg.input_dropout, training=True)
            f, logits = trainer(x)
            l_id = F.cross_entropy(logits, y_t[b], label_smoothing=cfg.label_smoothing)
            l_tri = batch_hard_triplet(F.normalize(f, dim=-1), y_t[b], cfg.margin)
            loss = cfg.id_weight * l_id + cfg.triplet_weight * l_tri
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            sums["id"] += l_id.item()
            sums["triplet"] += l_tri.item()
        rec = {"epoch": epoch + 1, **{f"loss_{k}": v / len(sampler) for k, v in sums.items()}}
        feat, score = "bnneck w=0", float(epoch)
        if val is not None:
            feats = _val_features(trainer, val["pooled"], std, flip_tta, cfg.base_weights)
            rec["val"] = {k: rank_features(v, val["query"], val["gallery"], val["pids"],
                                           val["camids"]) for k, v in feats.items()}
            scores = {k: m["mAP"] + m["R1"] for k, m in rec["val"].items()}
            feat = max(scores, key=scores.get)
            score = scores[feat]
        history.append(rec)
        if score > best:
            best, best_feat, best_epoch = score, feat, epoch + 1
            best_state = {k: v.detach().clone() for k, v in trainer.state_dict().items()}
        msg = f"epoch {epoch + 1}/{cfg.epochs}: id {rec['loss_id']:.3f} triplet {rec['loss_triplet']:.3f}"
        if val is not None:
            msg += f" | val best {feat}: R1 {rec['val'][feat]['R1']:.1f} mAP {rec['val'][feat]['mAP']:.1f}"
        log(msg + f" ({time.time() - t0:.0f}s)")
    trainer.load_state_dict(best_state)
    trainer.eval()
    feature, base_weight = best_feat.split(" w=")
    if feature == "bnneck":
        fold_batchnorm(head, trainer.bn)
    fold_input_standardization(head, std)
    head.config.base_weight = float(base_weight)
    head.eval()
    summary = {"best_epoch": best_epoch, "feature": feature, "base_weight": float(base_weight),
               "num_ids": int(len(uniq)),
               "num_images": int(len(labels)), "history": history,
               "seconds": round(time.time() - t0, 1), "config": cfg.to_dict()}
    if val is not None:
        summary["val"] = history[best_epoch - 1]["val"][best_feat]
    head.config.notes.update({"best_epoch": best_epoch, "feature": feature,
                              "val": summary.get("val")})
    return head, summary


def reid_training_items(peta_root=None, cuhk03_root=None, subsets=PETA_TRAIN_SUBSETS
                        ) -> tuple[list[Path], np.ndarray, dict]:
    """(paths, identity labels unique across sources, {source: (images, identities)})."""
    from ..data.reid import CUHK03Subset, peta_reid_subset

    paths, labels, sources = [], [], {}
    offset = 0
    parts = []
    if cuhk03_root is not None:
        parts.append(("CUHK03-subset train", CUHK03Subset(cuhk03_root, "train").items))
    if peta_root is not None:
        for s in subsets:
            parts.append((f"PETA {s}", peta_reid_subset(peta_root, s).items))
    if not parts:
        raise ValueError("give at least one training source (peta_root or cuhk03_root)")
    for name, items in parts:
        ids = {p: i for i, p in enumerate(sorted({it.pid for it in items}))}
        paths += [it.path for it in items]
        labels += [offset + ids[it.pid] for it in items]
        sources[name] = {"images": len(items), "identities": len(ids)}
        offset += len(ids)
    return paths, np.asarray(labels, np.int64), sources


def train_reid(out_dir, peta_root=None, cuhk03_root=None, par_dir=None,
               cfg: ReidTrainConfig | None = None, cache_root: str | Path = "cache", log=print,
               progress: bool = True, batch_size: int = 64,
               subsets=PETA_TRAIN_SUBSETS, val_domains=VAL_DOMAINS,
               limit: int | None = None) -> tuple[EmbeddingHead, dict]:
    """Train on CUHK03-subset train + the PETA re-ID subsets, and write the head and
    ``training.json`` to ``out_dir``.

    Validation (epoch, output feature and base weight) is on ``val_domains``: PETA subsets
    held out of training (given ``peta_root``), because what the head must do is work on
    cameras it never saw; an in-domain split (CUHK03-subset ``val``, used when no domain is
    held out) rewards overfitting the source domains. ``limit``: keep the first identities'
    images only (quick runs)."""
    from ..models.hub import encoder_fingerprint
    from ..inference.pooled import load_encoder_model, model_key, pooled_features

    cfg = cfg or ReidTrainConfig()
    cache_root = Path(cache_root)
    model = load_encoder_model(par_dir)
    flip_tta = bool(getattr(model.config, "flip_tta", False))
    val_domains = tuple(val_domains or ()) if peta_root is not None else ()
    unknown = set(val_domains) - set(subsets)
    if unknown:
        raise ValueError(f"validation domains {sorted(unknown)} are not among {list(subsets)}")
    train_subsets = tuple(s for s in subsets if s not in val_domains)
    paths, labels, sources = reid_training_items(peta_root if train_subsets else None,
                                                 cuhk03_root, train_subsets)
    if limit:
        src = np.repeat(np.arange(len(sources)), [v["images"] for v in sources.values()])
        keep = np.sort(np.argsort(labels, kind="stable")[:limit])
        paths, labels, src = [paths[i] for i in keep], labels[keep], src[keep]
        sources = {name: {"images": int((src == i).sum()),
                          "identities": int(len(np.unique(labels[src == i])))}
                   for i, name in enumerate(sources) if (src == i).any()}
    log("training data: " + ", ".join(f"{k} {v['images']} images / {v['identities']} ids"
                                      for k, v in sources.items()))
    pooled = pooled_features(model, paths, cache_root=cache_root / "pooled", name="reid-train",
                             progress=progress, batch_size=batch_size)
    val, val_note = None, None
    if val_domains:
        val = domain_val_set(model, peta_root, val_domains, flip_tta, cache_root / "pooled",
                          progress, batch_size, cfg.seed)
        val_note = (f"held-out PETA domains {', '.join(val_domains)} (one query per identity, "
                    "the rest gallery)")
    elif cuhk03_root is not None:
        val = cuhk03_val_set(model, cuhk03_root, flip_tta, cache_root / "pooled", progress,
                          batch_size, limit)
        val_note = "CUHK03-subset val (one query per identity and camera)"
    notes = {"trained_on": sources, "held_out": "VIPeR, PRID and GRID (cross-domain tests)",
             "validation": val_note,
             "par_dir": str(par_dir) if par_dir is not None else "shipped:par-peta",
             "par_model": model_key(model), "encoder_fingerprint": encoder_fingerprint(model),
             "flip_tta": flip_tta}
    head, summary = train_reid_head(pooled, labels, cfg, model.encoder.dim, val=val,
                                    flip_tta=flip_tta, log=log, notes=notes)
    if cfg.lomo_dim:
        from ..inference.pooled import lomo_features

        colour_cache, made_with = cache_root / "colour", colour_descriptor_config(cfg)
        train_colour = lomo_features(paths, made_with, cache_root=colour_cache,
                                       name="reid-train", progress=progress)
        if val is not None:
            val["colour"] = lomo_features(val["paths"], made_with, cache_root=colour_cache,
                                            name="reid-val", progress=progress)
        head, summary["colour"] = add_lomo_part(head, train_colour, labels, cfg, val,
                                                  flip_tta, log)
    out_dir = Path(out_dir)
    save_embedding_head(head, out_dir)
    summary.update({"out": str(out_dir), "notes": notes})
    (out_dir / "training.json").write_text(json.dumps(summary, indent=2))
    return head, summary
