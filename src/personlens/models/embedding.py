"""Pluggable embedding heads: image-encoder tokens -> unit vector (search or re-ID).

A head is a small ``nn.Module`` on the patch tokens ``(B, N, C)`` of the shared image
encoder, so attributes, search and re-ID embeddings all come from one encoder pass. Heads are
saved like PAR models: ``config.json`` + ``model.safetensors`` in a directory.

A *search* head maps images into the space of a text encoder (``config.text_encoder``);
queries are embedded with that encoder and, when the head has one, a learned linear
``query_proj`` on top (for heads trained CLIP-style with a projection on both sides).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import hub

KINDS = ("search", "reid")
POOLS = ("mean", "meanmax")


@dataclass
class EmbeddingHeadConfig:
    kind: str                      # "search" | "reid"
    in_dim: int                    # image-encoder token width (1280 for efficientnet_lite0)
    out_dim: int                   # embedding size (search: the text encoder's, 384 for minilm)
    hidden: int = 0                # 0: pooled tokens -> linear; > 0: 2-layer MLP
    pool: str = "mean"             # "mean" or "meanmax" (concatenated mean and max)
    image_encoder: str = "efficientnet_lite0"
    text_encoder: str | None = None   # search heads: the query encoder ("minilm", ...)
    query_proj: bool = False          # search heads: a learned linear map on query embeddings
    query_dim: int | None = None      # input size of query_proj (the text encoder's width)
    # re-ID heads: weight w of the untrained part. The output is [sqrt(w) * the L2-normalised
    # mean-pooled tokens, sqrt(1 - w) * the learned embedding], so cosine similarity is
    # w * cos(untrained) + (1 - w) * cos(learned). A learned head alone can overfit its source
    # domains; keeping part of the generic feature is what holds up on unseen cameras.
    base_weight: float = 0.0
    # re-ID heads: weight of the projected LOMO descriptor (colour + SILTP texture per band,
    # ``personlens.models.lomo``), appended as sqrt(lomo_weight) * its unit vector after
    # the token part is scaled by sqrt(1 - lomo_weight). It comes from the crop's pixels, not
    # the tokens: callers pass it to ``add_lomo`` (the pipeline and ``head_embeddings`` do).
    lomo_weight: float = 0.0
    lomo_dim: int = 0
    lomo: dict | None = None          # the ``LomoConfig`` of the descriptor
    notes: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"embedding head kind must be one of {KINDS}, got {self.kind!r}")
        if self.pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {self.pool!r}")
        if self.kind == "search" and not self.text_encoder:
            raise ValueError("a search head needs text_encoder (the space its queries live in)")
        if not 0.0 <= self.base_weight < 1.0:
            raise ValueError(f"base_weight must be in [0, 1), got {self.base_weight}")
        if self.base_weight and self.kind != "reid":
            raise ValueError("base_weight is for re-ID heads (a search head lives in text space)")
        if not 0.0 <= self.lomo_weight < 1.0:
            raise ValueError(f"lomo_weight must be in [0, 1), got {self.lomo_weight}")
        if self.lomo_weight and (self.kind != "reid" or self.lomo_dim <= 0 or not self.lomo):
            raise ValueError("lomo_weight needs a re-ID head with lomo_dim > 0 and a LOMO config")

    @property
    def embedding_dim(self) -> int:
        """Size of the vectors the head outputs (``out_dim``, plus ``in_dim`` with a base part)."""
        return (self.out_dim + (self.in_dim if self.base_weight else 0)
                + (self.lomo_dim if self.lomo_weight else 0))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "EmbeddingHeadConfig":
        d = dict(d)
        for old, new in LEGACY_KEYS.items():  # configs written before the LOMO part had its name
            if old in d:
                d.setdefault(new, d.pop(old))
        return cls(**d)


# config keys and state names of heads saved before 0.2 -> today's
LEGACY_KEYS = {"colour_weight": "lomo_weight", "colour_dim": "lomo_dim", "colour": "lomo"}
LEGACY_STATE = {"colour_mean": "lomo_mean", "colour_proj": "lomo_proj"}


class EmbeddingHead(nn.Module):
    """Pool the tokens, project, L2-normalise (and, for re-ID heads with a LOMO part,
    ``add_lomo`` appends the projected LOMO descriptor)."""

    def __init__(self, config: EmbeddingHeadConfig):
        super().__init__()
        self.config = config
        d_in = config.in_dim * (2 if config.pool == "meanmax" else 1)
        if config.hidden:
            self.proj = nn.Sequential(nn.Linear(d_in, config.hidden), nn.GELU(),
                                      nn.Linear(config.hidden, config.out_dim))
        else:
            self.proj = nn.Linear(d_in, config.out_dim)
        self.query_proj = (nn.Linear(config.query_dim or config.out_dim, config.out_dim)
                           if config.query_proj else None)
        self.lomo_config = None
        if config.lomo_weight:
            from .lomo import LomoConfig

            self.lomo_config = LomoConfig.from_dict(config.lomo)
            # fitted by personlens.train.reid (fit_lomo_projection): mean and projection
            self.register_buffer("lomo_mean", torch.zeros(self.lomo_config.dim))
            self.register_buffer("lomo_proj", torch.zeros(self.lomo_config.dim, config.lomo_dim))

    @property
    def needs_lomo(self) -> bool:
        return self.lomo_config is not None

    def add_lomo(self, embedding: torch.Tensor, descriptors: torch.Tensor) -> torch.Tensor:
        """The full re-ID embedding from the token part ``(N, d)`` (unit vectors, views already
        merged) and the crops' ``lomo_descriptor``s ``(N, D)``: unit vectors of
        ``embedding_dim``. Without a LOMO part, ``embedding`` unchanged."""
        if not self.needs_lomo:
            return embedding
        if descriptors.shape != (len(embedding), self.lomo_config.dim):
            raise ValueError(f"expected LOMO descriptors of shape ({len(embedding)}, "
                             f"{self.lomo_config.dim}), got {tuple(descriptors.shape)}")
        lomo = F.normalize((descriptors.float() - self.lomo_mean) @ self.lomo_proj, dim=-1)
        w = self.config.lomo_weight
        return torch.cat([math.sqrt(1.0 - w) * F.normalize(embedding.float(), dim=-1),
                          math.sqrt(w) * lomo], dim=-1)

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.config.pool == "meanmax":
            return torch.cat([tokens.mean(1), tokens.amax(1)], dim=-1)
        return tokens.mean(1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.forward_pooled(self.pool(tokens))

    def forward_pooled(self, pooled: torch.Tensor) -> torch.Tensor:
        """The embedding from pooled tokens ``(..., D)``: for ``pool="meanmax"`` D = 2C
        ([mean, max]); for ``pool="mean"`` D = C, or 2C in the [mean, max] layout of
        ``personlens.inference.pooled`` (the mean half is used). Training on cached pooled
        features and inference on tokens share this code path."""
        c = self.config.in_dim
        learned = F.normalize(self.proj(pooled[..., :c] if self.config.pool == "mean" else pooled).float(),
                              dim=-1)
        w = self.config.base_weight
        if not w:
            return learned
        base = F.normalize(pooled[..., :c].float(), dim=-1)   # the mean half of [mean, max]
        return torch.cat([math.sqrt(w) * base, math.sqrt(1.0 - w) * learned], dim=-1)

    def encode_query(self, text_embedding: torch.Tensor) -> torch.Tensor:
        """Map text-encoder embeddings (T, query_dim) into this head's space."""
        if self.query_proj is not None:
            text_embedding = self.query_proj(text_embedding)
        return F.normalize(text_embedding.float(), dim=-1)


def with_lomo(head: EmbeddingHead, mean, proj, weight: float, lomo_config) -> EmbeddingHead:
    """A copy of re-ID ``head`` with a LOMO part: the fitted ``mean`` (D,) and ``proj``
    (D, k) of ``personlens.models.lomo.fit_lomo_projection``, weighted ``weight``."""
    cfg = EmbeddingHeadConfig.from_dict({**head.config.to_dict(), "lomo_weight": float(weight),
                                         "lomo_dim": int(proj.shape[1]),
                                         "lomo": lomo_config.to_dict()})
    out = EmbeddingHead(cfg)
    out.load_state_dict({**head.state_dict(), "lomo_mean": torch.as_tensor(mean).float(),
                         "lomo_proj": torch.as_tensor(proj).float()})
    return out.eval()


# Tensors this large are stored in float16 (and loaded into float32): it halves a re-ID head
# with a LOMO part (26,960 x 256 projection, 1,024 x 2,560 hidden layer), which would
# otherwise weigh 25 MB; the rounding moves embeddings far less than people differ.
HALF_PRECISION_MIN_VALUES = 1 << 20


def save_embedding_head(head: EmbeddingHead, out_dir: str | Path) -> Path:
    return hub.save_weights(out_dir, head.state_dict(), head.config.to_dict(), head.config.kind,
                            half_min_values=HALF_PRECISION_MIN_VALUES)


def load_embedding_head(model_dir: str | Path, kind: str | None = None) -> EmbeddingHead:
    """Load a head directory; ``kind`` ("search"/"reid") checks it is the expected kind."""
    model_dir = Path(model_dir)
    cfg, state = hub.read_weights(model_dir)
    config = EmbeddingHeadConfig.from_dict(cfg)
    if kind is not None and config.kind != kind:
        raise ValueError(f"{model_dir} is a {config.kind} head, expected a {kind} head")
    head = EmbeddingHead(config)
    state = {LEGACY_STATE.get(k, k): v for k, v in state.items()}
    hub.load_state(head, state, model_dir / hub.WEIGHTS_FILE)
    return head.eval()
