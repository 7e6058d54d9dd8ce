"""Text -> person search head (MARS-style, at CPU scale) on the PAR model's frozen encoder.

Image side: ``EmbeddingHead(kind="search", pool="meanmax")`` on the pooled encoder tokens
(``personlens.inference.pooled``), mapping each crop into a 384-d space. Text side: frozen
MiniLM sentence embeddings (computed once, cached) and the head's learned ``query_proj``
(initialised to the identity, so training starts from MiniLM's own space). At search time the
pipeline embeds a query exactly as in training: ``head.encode_query(minilm(text))``.

Data: PETA's training split with all 105 labels; each image gets ``captions_per_image``
captions from ``CaptionGenerator(style="train")`` (fixed by ``key=index``), one drawn per
image per epoch. The validation split (captions of the same "train" style, another seed:
the evaluation's phrasing stays unseen) picks the epoch.

Losses:

* **Similarity-distribution matching** (IRRA, Jiang & Ye, CVPR 2023): per caption, the KL
  divergence between the softmax over the batch's images of the scaled cosine similarities
  and the normalised mask of its true matches, and the same per image over the captions. A
  caption's true matches are the images of the same person (PETA global id) and the images
  whose caption in the batch is the very same text: such false negatives are not punished.
  The temperature is learned (initial 0.05, kept within [0.01, 0.2]).
* **Attribute loss** (after MARS, Ergasti et al. 2024): the image must match the canonical
  adjective-noun chunks of what it shows (``CaptionGenerator.chunks(labels)``, e.g. "red
  jacket", "backpack") and must not match the chunks of single attributes it does not have
  ("woman", "blue top", "long hair", ...), skipping a negative chunk whose words are all in
  one of its positive chunks ("bag" for a "messenger bag"). Chunks are embedded by MiniLM +
  ``query_proj``; binary cross-entropy on ``scale * cosine + bias`` (both learned), the
  positives and the negatives averaged separately.

Training reads arrays only (``SearchData``): an epoch over PETA's 9,500 training images is a
few seconds on two CPU cores.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..models.embedding import EmbeddingHead, EmbeddingHeadConfig, save_embedding_head
from .heads import Standardize, cosine_schedule, fold_input_standardization

__all__ = ["SearchTrainConfig", "SearchData", "sdm_loss", "attribute_chunk_loss",
           "chunk_targets", "negative_chunks", "build_search_data", "train_search_head",
           "train_search", "retrieval_scores"]


@dataclass
class SearchTrainConfig:
    out_dim: int = 384
    hidden: int = 512
    text_encoder: str = "minilm"
    epochs: int = 40
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    temperature: float = 0.05       # initial; learned within [0.01, 0.2] unless learn_temperature=False
    learn_temperature: bool = True
    attr_weight: float = 1.0        # 0 turns the attribute (chunk) loss off
    input_dropout: float = 0.1
    captions_per_image: int = 6
    partition: int = 0
    seed: int = 0
    val_seed: int = 1               # caption seed of the validation queries

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SearchData:
    """Everything training needs, as arrays.

    ``pooled`` (N, V, D) pooled features; ``pids`` (N,); ``captions`` (N, M, T) unit text
    embeddings; ``caption_ids`` (N, M) ints, equal for equal caption texts; ``chunk_targets``
    (N, K) int8 (1 the image shows the chunk, 0 it does not, -1 unknown) over ``chunk_emb``
    (K, T) unit text embeddings. The chunk fields may be ``None`` (no attribute loss).
    """
    pooled: np.ndarray
    pids: np.ndarray
    captions: np.ndarray
    caption_ids: np.ndarray
    chunk_targets: np.ndarray | None = None
    chunk_emb: np.ndarray | None = None
    chunks: list[str] = field(default_factory=list)

    def __post_init__(self):
        n = len(self.pooled)
        if not (len(self.pids) == len(self.captions) == len(self.caption_ids) == n):
            raise ValueError("pooled, pids, captions and caption_ids differ in length")
        if self.captions.ndim != 3:
            raise ValueError("captions must be (N, captions per image, dim)")
        if (self.chunk_targets is None) != (self.chunk_emb is None):
            raise ValueError("give both chunk_targets and chunk_emb, or neither")
        if self.chunk_targets is not None and self.chunk_targets.shape != (n, len(self.chunk_emb)):
            raise ValueError("chunk_targets must be (N, number of chunks)")


# --------------------------------------------------------------------------- losses

def sdm_loss(img: torch.Tensor, txt: torch.Tensor, positives: torch.Tensor,
             logit_scale: torch.Tensor | float, eps: float = 1e-8) -> torch.Tensor:
    """Symmetric similarity-distribution matching (IRRA).

    ``img`` (B, d) and ``txt`` (B, d) unit vectors, row i of each from the same sample;
    ``positives`` (B, B) bool, ``positives[i, j]``: text i truly describes image j (the
    diagonal must be true). KL(softmax(scale * sim) || positives / row sum), averaged over
    texts (text -> image) plus the same over images (image -> text).
    """
    pos = positives.float()
    sim = logit_scale * txt @ img.t()                                   # (texts, images)

    def one_side(logits, mask):
        q = mask / mask.sum(1, keepdim=True)
        p = logits.softmax(1)
        return (p * (logits.log_softmax(1) - torch.log(q + eps))).sum(1).mean()

    return one_side(sim, pos) + one_side(sim.t(), pos.t())


def attribute_chunk_loss(img: torch.Tensor, chunk: torch.Tensor, targets: torch.Tensor,
                         scale: torch.Tensor | float, bias: torch.Tensor | float) -> torch.Tensor:
    """BCE on ``scale * cos(img, chunk) + bias`` for known targets (1/0; -1 ignored); the
    mean over positives plus the mean over negatives (each 0 when there are none)."""
    logits = scale * img @ chunk.t() + bias                             # (B, K)
    t = targets.float()
    bce = F.binary_cross_entropy_with_logits(logits, t.clamp(min=0), reduction="none")
    loss = logits.new_zeros(())
    for m in (targets == 1, targets == 0):
        if m.any():
            loss = loss + bce[m].mean()
    return loss


# --------------------------------------------------------------------------- chunks

def negative_chunks(generator=None) -> dict[str, list[str]]:
    """attribute name -> the chunks a caption of that attribute alone would mention (generic
    subject chunks like "person" left out): the negatives for images without it."""
    from ..text.captions import CaptionGenerator
    from ..data.schema import PETA_SCHEMA

    g = generator or CaptionGenerator("train")
    out = {}
    for name in PETA_SCHEMA.names:
        ch = [c for c in g.chunks({name: 1}) if c not in ("person",)]
        if ch:
            out[name] = ch
    return out


def chunk_targets(labels: np.ndarray, names: list[str]) -> tuple[list[str], np.ndarray]:
    """The chunk vocabulary and the (N, K) int8 target matrix for label rows over ``names``
    (1: a chunk of the image's canonical description; 0: a chunk of a single attribute it
    lacks, unless all its words are in one of its positive chunks; -1: unknown)."""
    from ..text.captions import CaptionGenerator

    g = CaptionGenerator("train")
    probes = negative_chunks(g)
    labels = np.asarray(labels)
    pos_lists = [g.chunks({n: float(v) for n, v in zip(names, row)}) for row in labels]
    vocab = list(dict.fromkeys([c for ch in pos_lists for c in ch]
                               + [c for n in names for c in probes.get(n, [])]))
    col = {c: i for i, c in enumerate(vocab)}
    t = np.full((len(labels), len(vocab)), -1, np.int8)
    for i, (row, pos) in enumerate(zip(labels, pos_lists)):
        words = [set(c.split()) for c in pos]
        for n, v in zip(names, row):
            if v > 0.5:
                continue
            for c in probes.get(n, []):
                if not any(set(c.split()) <= w for w in words):
                    t[i, col[c]] = 0
        for c in pos:
            t[i, col[c]] = 1
    return vocab, t


def build_search_data(dataset, pooled: np.ndarray, text_encoder, captions_per_image: int,
                      seed: int = 0, attribute_loss: bool = True, text_cache=None,
                      progress: bool = True, name: str = "captions") -> tuple[SearchData, list[list[str]]]:
    """``SearchData`` for a PETA-style data set (labels over PETA names) and its captions."""
    from ..text.captions import CaptionGenerator
    from ..inference.pooled import text_embeddings

    names = dataset.schema.names
    labels = dataset.labels
    gen = CaptionGenerator("train", seed=seed)
    caps = [gen.generate({n: float(v) for n, v in zip(names, row)}, n=captions_per_image, key=i)
            for i, row in enumerate(labels)]
    flat = [c for cs in caps for c in cs]
    emb = text_embeddings(text_encoder, flat, text_cache, progress=progress, name=name)
    ids = {t: i for i, t in enumerate(dict.fromkeys(flat))}
    m = captions_per_image
    data_kw = {}
    if attribute_loss:
        vocab, targets = chunk_targets(labels, names)
        data_kw = dict(chunk_targets=targets, chunk_emb=text_embeddings(
            text_encoder, vocab, text_cache, progress=progress, name="chunks"), chunks=vocab)
    data = SearchData(pooled=pooled, pids=np.array([s.pid for s in dataset.samples], np.int64),
                      captions=emb.reshape(len(labels), m, -1),
                      caption_ids=np.array([ids[t] for t in flat], np.int64).reshape(len(labels), m),
                      **data_kw)
    return data, caps


# --------------------------------------------------------------------------- training

def retrieval_scores(head: EmbeddingHead, pooled: np.ndarray, queries: np.ndarray,
                     q_pids: np.ndarray, g_pids: np.ndarray, flip_tta: bool,
                     prep: Callable | None = None) -> dict:
    """R1/R5/R10/mAP/mINP of text queries (unit text-encoder embeddings) against images."""
    from ..eval.retrieval import evaluate_ranking
    from ..inference.pooled import merge_views

    head.eval()
    with torch.inference_mode():
        x = torch.from_numpy(np.asarray(pooled, np.float32))
        g = merge_views(head.forward_pooled(prep(x) if prep else x), flip_tta)
        q = head.encode_query(torch.from_numpy(np.asarray(queries, np.float32)))
        sim = (q @ g.t()).numpy()
    return evaluate_ranking(sim, q_pids, g_pids).to_dict()


def _identity_init(linear: nn.Linear) -> None:
    with torch.no_grad():
        linear.weight.copy_(torch.eye(linear.out_features, linear.in_features))
        linear.bias.zero_()


def train_search_head(train: SearchData, val: SearchData | None, cfg: SearchTrainConfig,
                      in_dim: int, flip_tta: bool = False, log=print,
                      notes: dict | None = None) -> tuple[EmbeddingHead, dict]:
    """Train a search head on arrays; the epoch with the best validation R1 + mAP is kept
    (the last epoch without ``val``). ``val.captions[:, 0]`` are the validation queries."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    text_dim = train.captions.shape[-1]
    hcfg = EmbeddingHeadConfig(kind="search", in_dim=in_dim, out_dim=cfg.out_dim,
                               hidden=cfg.hidden, pool="meanmax", text_encoder=cfg.text_encoder,
                               query_proj=True, query_dim=text_dim, notes=dict(notes or {}))
    head = EmbeddingHead(hcfg)
    if text_dim == cfg.out_dim:
        _identity_init(head.query_proj)
    std = Standardize.fit(train.pooled, seed=cfg.seed)
    init_scale = math.log(1 / cfg.temperature)
    log_scale = nn.Parameter(torch.tensor(init_scale), requires_grad=cfg.learn_temperature)
    chunk_scale = nn.Parameter(torch.tensor(10.0))
    chunk_bias = nn.Parameter(torch.tensor(-5.0))
    extra = [log_scale, chunk_scale, chunk_bias] if cfg.learn_temperature else [chunk_scale, chunk_bias]
    decay = [p for n, p in head.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in head.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay + extra, "weight_decay": 0.0}], lr=cfg.lr)
    n = len(train.pooled)
    bs = min(cfg.batch_size, n)
    steps = n // bs if n >= bs else 1
    sched = cosine_schedule(opt, cfg.epochs * steps, steps)
    pooled = torch.from_numpy(np.ascontiguousarray(train.pooled))
    caps = torch.from_numpy(np.ascontiguousarray(train.captions, dtype=np.float32))
    cap_ids = torch.from_numpy(train.caption_ids)
    pids = torch.from_numpy(train.pids)
    use_chunks = cfg.attr_weight > 0 and train.chunk_targets is not None
    if use_chunks:
        chunk_emb = torch.from_numpy(np.asarray(train.chunk_emb, np.float32))
        targets = torch.from_numpy(train.chunk_targets)
    lo, hi = math.log(1 / 0.2), math.log(1 / 0.01)
    history, best, best_state = [], -math.inf, None
    t0 = time.time()
    for epoch in range(cfg.epochs):
        head.train()
        order = torch.from_numpy(rng.permutation(n))
        sums = {"sdm": 0.0, "chunks": 0.0}
        for s in range(steps):
            b = order[s * bs:(s + 1) * bs]
            view = torch.from_numpy(rng.integers(0, pooled.shape[1], len(b)))
            c = torch.from_numpy(rng.integers(0, caps.shape[1], len(b)))
            x = std(pooled[b, view].float())
            if cfg.input_dropout:
                x = F.dropout(x, cfg.input_dropout, training=True)
            img = head.forward_pooled(x)
            txt = head.encode_query(caps[b, c])
            same = (pids[b][:, None] == pids[b][None, :]) | (cap_ids[b, c][:, None] == cap_ids[b, c][None, :])
            loss_sdm = sdm_loss(img, txt, same, log_scale.clamp(lo, hi).exp())
            loss = loss_sdm
            if use_chunks:
                ch = head.encode_query(chunk_emb)
                loss_ch = attribute_chunk_loss(img, ch, targets[b], chunk_scale, chunk_bias)
                loss = loss + cfg.attr_weight * loss_ch
                sums["chunks"] += loss_ch.item()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                log_scale.clamp_(lo, hi)
            sums["sdm"] += loss_sdm.item()
        rec = {"epoch": epoch + 1, "loss_sdm": sums["sdm"] / steps,
               "temperature": float(torch.exp(-log_scale.detach()))}
        if use_chunks:
            rec["loss_chunks"] = sums["chunks"] / steps
        if val is not None:
            m = retrieval_scores(head, val.pooled, val.captions[:, 0], val.pids, val.pids,
                                 flip_tta, prep=std)
            rec["val"] = {k: m[k] for k in ("R1", "R5", "R10", "mAP", "mINP")}
            score = m["R1"] + m["mAP"]
        else:
            score = epoch
        history.append(rec)
        if score > best:
            best = score
            best_state = {k: v.detach().clone() for k, v in head.state_dict().items()}
            best_epoch = epoch + 1
        msg = f"epoch {epoch + 1}/{cfg.epochs}: sdm {rec['loss_sdm']:.3f}"
        if use_chunks:
            msg += f" chunks {rec['loss_chunks']:.3f}"
        if "val" in rec:
            msg += f" | val R1 {rec['val']['R1']:.2f} mAP {rec['val']['mAP']:.2f}"
        log(msg + f" ({time.time() - t0:.0f}s)")
    head.load_state_dict(best_state)
    fold_input_standardization(head, std)
    head.eval()
    summary = {"best_epoch": best_epoch, "history": history, "seconds": round(time.time() - t0, 1),
               "config": cfg.to_dict()}
    if val is not None:
        summary["val"] = history[best_epoch - 1]["val"]
    head.config.notes.update({"best_epoch": best_epoch, "val": summary.get("val")})
    return head, summary


def train_search(root: str | Path, out_dir: str | Path, par_dir=None,
                 cfg: SearchTrainConfig | None = None, cache_root: str | Path = "cache",
                 log=print, progress: bool = True, batch_size: int = 64,
                 limit: int | None = None, text_encoder=None) -> tuple[EmbeddingHead, dict]:
    """Train on PETA (``root``) partition ``cfg.partition``: train split, val for the epoch.

    ``limit`` keeps the first images of each split (quick runs). Writes the head to
    ``out_dir`` (``config.json`` + ``model.safetensors``) and ``out_dir/training.json``.
    """
    from ..data.peta import PETA
    from ..models.factory import create_text_encoder
    from ..inference.pipeline import _quietly
    from ..inference.pooled import text_embeddings
    from ..models.hub import encoder_fingerprint
    from ..inference.pooled import load_encoder_model, model_key, pooled_features

    cfg = cfg or SearchTrainConfig()
    cache_root = Path(cache_root)
    model = load_encoder_model(par_dir)
    flip_tta = bool(getattr(model.config, "flip_tta", False))
    tr = PETA(root, "train", partition=cfg.partition, attributes="all")
    va = PETA(root, "val", partition=cfg.partition, attributes="all")
    if limit:
        tr.samples, va.samples = tr.samples[:limit], va.samples[:max(1, limit // 4)]
    log(f"PETA partition {cfg.partition}: {len(tr)} train and {len(va)} val images")
    pooled_tr = pooled_features(model, tr.paths, cache_root=cache_root / "pooled",
                                name=f"peta-p{cfg.partition}-train", progress=progress,
                                batch_size=batch_size)
    pooled_va = pooled_features(model, va.paths, cache_root=cache_root / "pooled",
                                name=f"peta-p{cfg.partition}-val", progress=progress,
                                batch_size=batch_size)
    text = text_encoder if text_encoder is not None else _quietly(create_text_encoder,
                                                                  cfg.text_encoder).freeze()
    train_data, _ = build_search_data(tr, pooled_tr, text, cfg.captions_per_image, seed=cfg.seed,
                                      attribute_loss=cfg.attr_weight > 0,
                                      text_cache=cache_root / "text", progress=progress)
    from ..text.captions import CaptionGenerator

    vgen = CaptionGenerator("train", seed=cfg.val_seed)
    vcaps = [vgen.generate({n: float(v) for n, v in zip(va.schema.names, row)}, n=1, key=i)[0]
             for i, row in enumerate(va.labels)]
    vemb = text_embeddings(text, vcaps, cache_root / "text", progress=progress, name="val-queries")
    val = SearchData(pooled=pooled_va, pids=np.array([s.pid for s in va.samples], np.int64),
                     captions=vemb[:, None], caption_ids=np.arange(len(vcaps))[:, None])
    notes = {"trained_on": f"PETA partition {cfg.partition} train split ({len(tr)} images, "
                           f"{cfg.captions_per_image} generated captions each)",
             "validation": f"PETA partition {cfg.partition} val split, one train-style caption "
                           f"per image (seed {cfg.val_seed})",
             "par_dir": str(par_dir) if par_dir is not None else "shipped:par-peta",
             "par_model": model_key(model), "encoder_fingerprint": encoder_fingerprint(model),
             "flip_tta": flip_tta}
    head, summary = train_search_head(train_data, val, cfg, in_dim=model.encoder.dim,
                                      flip_tta=flip_tta, log=log, notes=notes)
    out_dir = Path(out_dir)
    save_embedding_head(head, out_dir)
    summary.update({"out": str(out_dir), "notes": notes, "num_train": len(tr), "num_val": len(va),
                    "chunk_vocabulary": len(train_data.chunks)})
    (out_dir / "training.json").write_text(json.dumps(summary, indent=2))
    return head, summary
