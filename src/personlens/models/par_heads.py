"""Sequence heads for attributes: Mamba (Vim) and Transformer mixers over the encoder's tokens.

The heads of the empirical study of Mamba for PAR (Wang et al., "MambaPAR"), rebuilt on our
encoder's tokens and MiniLM attribute prompts (learned from OpenPAR's description; no code
taken). Every head maps tokens (b, N, C) to logits (b, A):

* ``vim`` / ``vim_uni``: the tokens projected to ``embed_dim`` plus a learned position
  embedding, ``layers`` bidirectional (``vim``) or forward-only (``vim_uni``) Vim layers,
  then a 1x1 convolution over the token axis pools N tokens to A (one per attribute);
* ``vim_text``: the image tokens followed by one token per attribute (its prompts' mean
  MiniLM embedding, projected), Vim layers over the whole sequence, read out at the A
  attribute positions;
* ``transformer`` / ``transformer_text``: the same two with Transformer (pre-norm) layers,
  the control the study compares against;
* ``hybrid``: dense fusion (the study's MaHDFT idea): a Transformer branch, and a Mamba
  branch whose layer ``l`` takes the Transformer's layer-``l`` output added (projected) to
  its own input; both branches read out and their logits are averaged.

The read-out: attribute ``a``'s token times its own weight vector plus bias, then a
BatchNorm over the logits (as in the study). A head with a position embedding knows how many
tokens it was trained on (``HeadConfig.tokens``) and refuses an encoder that gives another
number, rather than reading positions that mean something else.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .registry import register
from .ssm import VimLayer


class AttributeReadout(nn.Module):
    """(b, A, d) attribute tokens -> (b, A) logits: a weight vector per attribute, then BN."""

    def __init__(self, d: int, num_attr: int):
        super().__init__()
        self.w = nn.Parameter(torch.randn(num_attr, d) / math.sqrt(d))
        self.b = nn.Parameter(torch.zeros(num_attr))
        self.bn = nn.BatchNorm1d(num_attr)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.bn((z * self.w).sum(-1) + self.b)


def _mixer(kind: str, cfg) -> nn.Module:
    d = cfg.embed_dim
    if kind == "transformer":
        return nn.TransformerEncoderLayer(d, cfg.num_heads, dim_feedforward=d, dropout=cfg.dropout,
                                          activation="gelu", batch_first=True, norm_first=True)
    return VimLayer(d, d_state=cfg.d_state, expand=cfg.expand, bidirectional=kind == "vim",
                    scan=cfg.scan)


class SequenceHead(nn.Module):
    """Tokens (+ attribute tokens) -> ``cfg.layers`` mixer layers -> per-attribute logits."""

    def __init__(self, image_dim: int, num_attr: int, cfg, mixer: str,
                 prompts: torch.Tensor | None = None):
        super().__init__()
        if not cfg.tokens:
            raise ValueError(f"the {cfg.kind} head needs the encoder's token count (HeadConfig.tokens)")
        d = cfg.embed_dim
        self.tokens, self.num_attr = int(cfg.tokens), num_attr
        self.proj = nn.Sequential(nn.Linear(image_dim, d), nn.LayerNorm(d))
        self.pos = nn.Parameter(torch.randn(1, self.tokens, d) * 0.02)
        self.text = prompts is not None
        if self.text:
            self.register_buffer("prompts", prompts.clone())          # (A, P, text_dim), constants
            self.attr_proj = nn.Linear(prompts.shape[-1], d)
            self.attr_pos = nn.Parameter(torch.randn(1, num_attr, d) * 0.02)
        else:
            self.pool = nn.Conv1d(self.tokens, num_attr, 1)            # over the token axis
        self.layers = nn.ModuleList(_mixer(mixer, cfg) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(d)
        self.readout = AttributeReadout(d, num_attr)

    def check(self, tokens: torch.Tensor) -> None:
        if tokens.shape[1] != self.tokens:
            raise ValueError(
                f"this attribute head was trained on {self.tokens} encoder tokens, but the encoder "
                f"gives {tokens.shape[1]}: its position embedding only fits the training input "
                "size (use the model's own preprocessing, config.json 'preprocess')")

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        self.check(tokens)
        x = self.proj(tokens) + self.pos
        if self.text:
            attr = self.attr_proj(self.prompts.mean(1)).unsqueeze(0) + self.attr_pos
            x = torch.cat([x, attr.expand(x.shape[0], -1, -1)], 1)
        return x

    def read(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        z = x[:, -self.num_attr:] if self.text else self.pool(x)
        return self.readout(z)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        for layer in self.layers:
            x = layer(x)
        return self.read(x)


class HybridHead(nn.Module):
    """Dense fusion: Transformer layer ``l``'s output feeds Mamba layer ``l``; logits averaged."""

    def __init__(self, image_dim: int, num_attr: int, cfg):
        super().__init__()
        self.transformer = SequenceHead(image_dim, num_attr, cfg, "transformer")
        self.mamba = SequenceHead(image_dim, num_attr, cfg, "vim")
        self.fuse = nn.ModuleList(nn.Linear(cfg.embed_dim, cfg.embed_dim) for _ in range(cfg.layers))
        for f in self.fuse:               # start as the plain Mamba branch, learn how much to take
            nn.init.zeros_(f.weight)
            nn.init.zeros_(f.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        t = self.transformer.embed(tokens)
        m = self.mamba.embed(tokens)
        for t_layer, m_layer, fuse in zip(self.transformer.layers, self.mamba.layers, self.fuse):
            t = t_layer(t)
            m = m_layer(m + fuse(t))
        return (self.transformer.read(t) + self.mamba.read(m)) / 2


def _uses(prompts: bool = False, tokens: bool = True):
    """Mark what a head constructor needs from ``models.factory.build_head``."""
    def deco(fn):
        fn.uses_prompts, fn.uses_tokens = prompts, tokens
        return fn
    return deco


def _need_prompts(kind: str, prompts):
    if prompts is None:
        raise ValueError(f"the {kind} head needs attribute prompt embeddings")
    return prompts


@register("par_head", "vim")
@_uses()
def vim_head(image_dim, prompts, num_attr, cfg):
    return SequenceHead(image_dim, num_attr, cfg, "vim")


@register("par_head", "vim_uni")
@_uses()
def vim_uni_head(image_dim, prompts, num_attr, cfg):
    return SequenceHead(image_dim, num_attr, cfg, "vim_uni")


@register("par_head", "vim_text")
@_uses(prompts=True)
def vim_text_head(image_dim, prompts, num_attr, cfg):
    return SequenceHead(image_dim, num_attr, cfg, "vim", _need_prompts("vim_text", prompts))


@register("par_head", "transformer")
@_uses()
def transformer_head(image_dim, prompts, num_attr, cfg):
    return SequenceHead(image_dim, num_attr, cfg, "transformer")


@register("par_head", "transformer_text")
@_uses(prompts=True)
def transformer_text_head(image_dim, prompts, num_attr, cfg):
    return SequenceHead(image_dim, num_attr, cfg, "transformer",
                        _need_prompts("transformer_text", prompts))


@register("par_head", "hybrid")
@_uses()
def hybrid_head(image_dim, prompts, num_attr, cfg):
    return HybridHead(image_dim, num_attr, cfg)
