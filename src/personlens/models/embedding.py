"""Pluggable embedding heads: image-encoder tokens -> unit vector (search or re-ID).

A head is a small ``nn.Module`` on the patch tokens ``(B, N, C)`` of the shared image
encoder, so attributes, search and re-ID embeddings all come from one encoder pass. Heads are
saved like PAR models: ``config.json`` + ``model.safetensors`` in a directory.

A *search* head maps images into the space of a text encoder (``config.text_encoder``);
queries are embedded with that encoder and, when the head has one, a learned linear
``query_proj`` on top (for heads trained CLIP-style with a projection on both sides).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
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
    # re-ID heads: weight of a projected hand-crafted colour descriptor
    # (``personlens.models.colour``), appended as sqrt(colour_weight) * its unit vector after
    # the token part is scaled by sqrt(1 - colour_weight). It comes from the crop's pixels, not
    # the tokens: callers pass it to ``add_colour`` (the pipeline and ``head_embeddings`` do).
    colour_weight: float = 0.0
    colour_dim: int = 0
    colour: dict | None = None        # the ``ColourConfig`` of the descriptor
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
        if not 0.0 <= self.colour_weight < 1.0:
            raise ValueError(f"colour_weight must be in [0, 1), got {self.colour_weight}")
        if self.colour_weight and (self.kind != "reid" or self.colour_dim <= 0 or not self.colour):
            raise ValueError("colour_weight needs a re-ID head with colour_dim > 0 and a colour config")

    @property
    def embedding_dim(self) -> int:
        """Size of the vectors the head outputs (``out_dim``, plus ``in_dim`` with a base part)."""
        return (self.out_dim + (self.in_dim if self.base_weight else 0)
                + (self.colour_dim if self.colour_weight else 0))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "EmbeddingHeadConfig":
        return cls(**d)


class EmbeddingHead(nn.Module):
    """Pool the tokens, project, L2-normalise (and, for re-ID heads with a colour part,
    ``add_colour`` appends the projected colour descriptor)."""

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
        self.colour_config = None
        if config.colour_weight:
            from .colour import ColourConfig

            self.colour_config = ColourConfig.from_dict(config.colour)
            # fitted by personlens.train.reid (fit_colour_projection): mean and projection
            self.register_buffer("colour_mean", torch.zeros(self.colour_config.dim))
            self.register_buffer("colour_proj", torch.zeros(self.colour_config.dim, config.colour_dim))

    @property
    def needs_colour(self) -> bool:
        return self.colour_config is not None

    def add_colour(self, embedding: torch.Tensor, descriptors: torch.Tensor) -> torch.Tensor:
        """The full re-ID embedding from the token part ``(N, d)`` (unit vectors, views already
        merged) and the crops' ``colour_descriptor``s ``(N, D)``: unit vectors of
        ``embedding_dim``. Without a colour part, ``embedding`` unchanged."""
        if not self.needs_colour:
            return embedding
        if descriptors.shape != (len(embedding), self.colour_config.dim):
            raise ValueError(f"expected colour descriptors of shape ({len(embedding)}, "
                             f"{self.colour_config.dim}), got {tuple(descriptors.shape)}")
        colour = F.normalize((descriptors.float() - self.colour_mean) @ self.colour_proj, dim=-1)
        w = self.config.colour_weight
        return torch.cat([math.sqrt(1.0 - w) * F.normalize(embedding.float(), dim=-1),
                          math.sqrt(w) * colour], dim=-1)

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.config.pool == "meanmax":
            return torch.cat([tokens.mean(1), tokens.amax(1)], dim=-1)
        return tokens.mean(1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.forward_pooled(self.pool(tokens))

    def forward_pooled(self, pooled: torch.Tensor) -> torch.Tensor:
        """The embedding from pooled tokens ``(..., D)``: for ``pool="meanmax"`` D = 2C
        ([mean, max]); for ``pool="mean"`` D = C, or 2C in the [mean, max] layout of
        ``personlens.train.pooled`` (the mean half is used). Training on cached pooled
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


def with_colour(head: EmbeddingHead, mean, proj, weight: float, colour_config) -> EmbeddingHead:
    """A copy of re-ID ``head`` with a colour part: the fitted ``mean`` (D,) and ``proj``
    (D, k) of ``personlens.models.colour.fit_colour_projection``, weighted ``weight``."""
    cfg = EmbeddingHeadConfig.from_dict({**head.config.to_dict(), "colour_weight": float(weight),
                                         "colour_dim": int(proj.shape[1]),
                                         "colour": colour_config.to_dict()})
    out = EmbeddingHead(cfg)
    out.load_state_dict({**head.state_dict(), "colour_mean": torch.as_tensor(mean).float(),
                         "colour_proj": torch.as_tensor(proj).float()})
    return out.eval()


# Tensors this large are stored in float16 (and loaded into float32): it halves a re-ID head
# with a colour part (26,960 x 256 projection, 1,024 x 2,560 hidden layer), which would
# otherwise weigh 25 MB; the rounding moves embeddings far less than people differ.
HALF_PRECISION_MIN_VALUES = 1 << 20


def save_embedding_head(head: EmbeddingHead, out_dir: str | Path) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if v.numel() >= HALF_PRECISION_MIN_VALUES else v.float())
             .detach().contiguous() for k, v in head.state_dict().items()}
    save_file(state, str(out_dir / WEIGHTS_FILE), metadata={"format": "personlens-embedding-head"})
    (out_dir / CONFIG_FILE).write_text(json.dumps(head.config.to_dict(), indent=2))
    return out_dir


def load_embedding_head(model_dir: str | Path, kind: str | None = None) -> EmbeddingHead:
    """Load a head directory; ``kind`` ("search"/"reid") checks it is the expected kind."""
    model_dir = Path(model_dir)
    cfg_path, w_path = model_dir / CONFIG_FILE, model_dir / WEIGHTS_FILE
    if not cfg_path.exists() or not w_path.exists():
        raise FileNotFoundError(f"{model_dir} must hold {CONFIG_FILE} and {WEIGHTS_FILE}")
    config = EmbeddingHeadConfig.from_dict(json.loads(cfg_path.read_text()))
    if kind is not None and config.kind != kind:
        raise ValueError(f"{model_dir} is a {config.kind} head, expected a {kind} head")
    head = EmbeddingHead(config)
    state = load_file(str(w_path))
    missing, unexpected = head.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{w_path} does not match its config: missing={missing[:5]} "
                         f"unexpected={unexpected[:5]}")
    return head.eval()
