"""VLM-PAR: per-attribute cross-attention from image patch tokens to attribute prompt embeddings.

For attribute ``a`` with prompt embeddings ``T_a`` (P x d_text, frozen text encoder):
    z_a = LayerNorm( mean_n [ q_n + MHA(q_n, K=T_a, V=T_a) ] )      (q_n: projected patch tokens)
    logit_a = w_a . MLP(z_a) + b_a
The attention weights are shared across attributes; the attribute's own prompts make each
branch specific. ``LinearProbeHead`` is the paper's "no cross-attention" ablation. Both
register as ``par_head`` (the Mamba and Transformer sequence heads: ``par_heads``);
``models.factory.build_head`` builds any of them by name.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ..data.schema import AttributeSchema
from .registry import register

POSITIVE_TEMPLATES = (
    "a photo of a person {}.",
    "a pedestrian {}.",
    "a surveillance camera image of someone {}.",
    "a person who is {}.",
)
NEGATIVE_TEMPLATES = (
    "a photo of a person, not {}.",
    "a pedestrian, but not {}.",
    "a surveillance camera image of someone, not {}.",
    "a person who is not {}.",
)


def attribute_prompts(schema: AttributeSchema) -> list[list[str]]:
    """P prompts per attribute: positive and negative phrasings of its English phrase."""
    return [[t.format(a.phrase) for t in POSITIVE_TEMPLATES + NEGATIVE_TEMPLATES] for a in schema]


@dataclass
class HeadConfig:
    kind: str = "cross_attention"  # a registered "par_head": `personlens info` lists them
    embed_dim: int = 256
    num_heads: int = 8
    dropout: float = 0.1
    # sequence heads (models/par_heads.py): mixer layers, Mamba state size and expansion, the
    # scan, and the encoder's token count they were built for (their position embedding)
    layers: int = 2
    d_state: int = 8
    expand: int = 1
    scan: str = "sequential"
    tokens: int | None = None


class CrossAttentionHead(nn.Module):
    def __init__(self, image_dim: int, prompts: torch.Tensor, cfg: HeadConfig):
        super().__init__()
        num_attr, num_prompts, text_dim = prompts.shape
        d, h = cfg.embed_dim, cfg.num_heads
        if d % h:
            raise ValueError("embed_dim must be divisible by num_heads")
        self.num_heads = h
        self.register_buffer("prompts", prompts.clone())  # (A, P, text_dim), constants
        self.q_proj = nn.Sequential(nn.Linear(image_dim, d), nn.LayerNorm(d))
        self.kv_proj = nn.Linear(text_dim, d)
        self.k = nn.Linear(d, d)
        self.v = nn.Linear(d, d)
        self.out = nn.Linear(d, d)
        self.norm = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Dropout(cfg.dropout))
        self.cls_w = nn.Parameter(torch.randn(num_attr, d) / math.sqrt(d))
        self.cls_b = nn.Parameter(torch.zeros(num_attr))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, n, _ = tokens.shape
        h = self.num_heads
        q = self.q_proj(tokens)                                   # (B, N, d)
        d = q.shape[-1]
        t = self.kv_proj(self.prompts)                            # (A, P, d)
        a, p, _ = t.shape
        k = self.k(t).view(a, p, h, d // h)
        v = self.v(t).view(a, p, h, d // h)
        qh = q.view(b, n, h, d // h)
        attn = torch.einsum("bnhc,aphc->bahnp", qh, k).mul(1 / math.sqrt(d // h)).softmax(-1)
        # Mean-pooling over tokens commutes with the (linear) value/output maps, so pool the
        # attention weights first: exact, and O(B*A*P*d) instead of O(B*A*N*d).
        attn = attn.mean(3)                                       # (B, A, h, P)
        o = torch.einsum("bahp,aphc->bahc", attn, v).reshape(b, a, d)
        z = self.norm(q.mean(1, keepdim=True) + self.out(o))      # (B, A, d)
        z = z + self.mlp(z)
        return (z * self.cls_w).sum(-1) + self.cls_b              # (B, A)


class LinearProbeHead(nn.Module):
    def __init__(self, image_dim: int, num_attr: int, cfg: HeadConfig):
        super().__init__()
        self.drop = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(image_dim, num_attr)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(tokens.mean(1)))


@register("par_head", "cross_attention")
def cross_attention_head(image_dim, prompts, num_attr, cfg):
    if prompts is None:
        raise ValueError("cross_attention head needs prompt embeddings")
    return CrossAttentionHead(image_dim, prompts, cfg)


cross_attention_head.uses_prompts, cross_attention_head.uses_tokens = True, False


@register("par_head", "linear")
def linear_head(image_dim, prompts, num_attr, cfg):
    return LinearProbeHead(image_dim, num_attr, cfg)


linear_head.uses_prompts, linear_head.uses_tokens = False, False


@dataclass
class PARConfig:
    """Everything needed to rebuild a PAR model; saved as config.json beside the weights."""

    attributes: list[str]
    encoder: str = "efficientnet_lite0"
    text_encoder: str = "minilm"
    stage: int = 11              # encoder stages >= this run inside the model (cached below)
    unfreeze_top: bool = False   # train encoder stages >= stage ("unfrozen top" variant)
    head: HeadConfig = field(default_factory=HeadConfig)
    preprocess: dict = field(default_factory=dict)
    thresholds: list[float] | None = None
    flip_tta: bool = False       # average the probabilities of the crop and its mirror image
    dataset: str = "peta"
    notes: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PARConfig":
        d = dict(d)
        d["head"] = HeadConfig(**d.get("head", {}))
        return cls(**d)


class PARModel(nn.Module):
    """Image encoder (frozen, optionally with a trainable top) + attribute head -> logits."""

    def __init__(self, encoder: nn.Module, head: nn.Module, config: PARConfig):
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.config = config

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(images))

    def forward_from_stage(self, h: torch.Tensor) -> torch.Tensor:
        """Logits from cached lower-stage features."""
        return self.head(self.encoder.forward_upper(h, self.config.stage))

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """What a checkpoint must hold: the head, plus the encoder top when it was trained."""
        state = {f"head.{k}": v for k, v in self.head.state_dict().items()}
        if self.config.unfreeze_top:
            enc = self.encoder.state_dict()
            top = {n for n, _ in _named_upper(self.encoder, self.config.stage)}
            state.update({f"encoder.{k}": v for k, v in enc.items() if k in top})
        return state


def _named_upper(encoder, stage: int):
    """(name, tensor) of encoder parameters and buffers that the upper stages use."""
    upper = {id(p) for p in encoder.upper_parameters(stage)}
    for mod_name, mod in encoder.named_modules():
        own = list(mod.named_parameters(recurse=False))
        if any(id(p) in upper for _, p in own):
            for n, t in list(mod.named_parameters(recurse=False)) + list(mod.named_buffers(recurse=False)):
                yield (f"{mod_name}.{n}" if mod_name else n), t
