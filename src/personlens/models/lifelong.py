"""Lifelong re-ID model (VLADR style, issue 16): the encoder's top stages, a global embedding,
attribute part queries over the tokens, a text-side attribute splitter, and the attribute
prototype memory.

Only the top of the image encoder learns (blocks from ``stage`` on, and its head conv), on
cached outputs of the frozen lower stages: so forgetting is real (a head on frozen features
could not forget much), and training stays cheap on a CPU.

* ``LifelongReid.forward(lower)`` -> tokens (B, N, C), the global embedding ``emb`` (B, D)
  (before the BNNeck), the BNNeck output ``bn``, and ``parts`` (B, K, P): one feature per
  attribute group (``PART_NAMES``: a global one and five local ones), from K learned queries
  attending over the tokens. Retrieval uses the L2-normalised BNNeck output (``embed``).
* ``TextAttributeSplit``: K learned prompts attend over the token states of a description
  (MiniLM), giving K text attribute features in the part space: the multi-granular textual
  attribute disentanglement. ``split="random"`` instead averages a fixed random partition of
  the tokens (the ablation).
* ``PrototypeMemory``: one prototype per attribute group per learned domain, an EMA of the
  part features of that domain's images; kept beside the weights instead of old images. The
  same class holds the *attribute* memory (``ATTRIBUTE_NAMES``): per domain, one prototype per
  PETA attribute in the retrieval embedding's space, the EMA of the embeddings of the crops whose
  description states that attribute (``update(..., mask=)``); an attribute a domain never
  showed has no prototype there (``valid``).
* The *style* memory (``STYLE_KEYS``, session 21): per domain, per PETA attribute and once for
  the whole domain, the mean of the channel means and standard deviations of the cached
  lower-stage maps (``channel_style``), the input of the part that learns. A camera's look
  (colour cast, contrast, blur) lives largely in these statistics (MixStyle, AdaIN), so a new
  domain's crop re-styled with an earlier domain's prototype (``restyle``) approximates that
  domain's inputs without keeping any of its images. ``unit=False``: the rows are raw
  statistics, not directions.
* Identity classifiers, one per learned domain (training only, kept for distillation).
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..data.schema import PETA_SCHEMA

__all__ = ["PART_NAMES", "ATTRIBUTE_NAMES", "STYLE_KEYS", "RETRIEVAL_VIEWS", "LoadedLifelong", "LifelongReidConfig", "LifelongReid", "LifelongEmbedder", "TextAttributeSplit",
           "PrototypeMemory", "channel_style", "restyle", "save_lifelong", "load_lifelong", "load_lifelong_embedder"]

# the attribute groups: the whole person, then the body regions and what is carried
PART_NAMES = ("global", "head", "upper", "lower", "shoes", "carried")
RETRIEVAL_VIEWS = ("global", "parts", "global+parts")
# the attribute memory's rows: every PETA attribute a description can state
ATTRIBUTE_NAMES = tuple(PETA_SCHEMA.names)
# the style memory's rows: each attribute, then the whole domain (every crop)
STYLE_KEYS = (*ATTRIBUTE_NAMES, "domain")
_STYLE_EPS = 1e-5


def channel_style(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) feature maps -> (B, 2C): each channel's mean over the map, then its
    standard deviation."""
    mean = x.mean((2, 3))
    std = (x.var((2, 3), unbiased=False) + _STYLE_EPS).sqrt()
    return torch.cat([mean, std], 1)


def restyle(x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """``x`` (B, C, H, W) with each map's channel statistics replaced by ``style`` (B, 2C)
    (AdaIN): what the map shows is kept, its look becomes the style's."""
    c = x.shape[1]
    own = channel_style(x)
    norm = (x - own[:, :c, None, None]) / own[:, c:, None, None]
    return norm * style[:, c:, None, None] + style[:, :c, None, None]


@dataclass
class LifelongReidConfig:
    encoder: str = "efficientnet_lite0"
    # blocks [stage:] and the head conv learn (Lite0 14-15: 8x6 grid). 14 rather than 12: the
    # top learns at 2.1 instead of 1.3 PK batches/s, which fits the protocol in 2 hours
    stage: int = 14
    embed_dim: int = 256
    part_dim: int = 256
    parts: tuple[str, ...] = PART_NAMES
    text_dim: int = 384        # the text encoder's token width (MiniLM)
    text_encoder: str = "minilm"
    text_split: str = "learned"   # "learned" prompts, or "random" token groups (ablation)
    # what retrieval compares (RETRIEVAL_VIEWS): the BNNeck embedding, the attribute parts, or both
    retrieval: str = "global"
    preprocess: dict = field(default_factory=lambda: {"height": 256, "width": 192})
    domains: list = field(default_factory=list)   # learned so far, in order: {name, ids, ...}
    notes: dict = field(default_factory=dict)

    def __post_init__(self):
        self.parts = tuple(self.parts)
        if self.text_split not in ("learned", "random"):
            raise ValueError(f"text_split must be 'learned' or 'random', got {self.text_split!r}")
        if not self.parts:
            raise ValueError("need at least one attribute part")
        if self.retrieval not in RETRIEVAL_VIEWS:
            raise ValueError(f"retrieval must be one of {', '.join(RETRIEVAL_VIEWS)}, got {self.retrieval!r}")

    @property
    def embedding_dim(self) -> int:   # what the pipeline and the vector index read
        parts = len(self.parts) * self.part_dim
        return {"global": self.embed_dim, "parts": parts, "global+parts": self.embed_dim + parts}[self.retrieval]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["parts"] = list(self.parts)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "LifelongReidConfig":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class _PartQueries(nn.Module):
    """K learned queries, one head of scaled dot-product attention over the tokens."""

    def __init__(self, in_dim: int, k: int, dim: int):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(k, dim) * dim ** -0.5)
        self.key = nn.Linear(in_dim, dim)
        self.value = nn.Linear(in_dim, dim)
        self.out = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        k, v = self.key(tokens), self.value(tokens)                    # (B, N, P)
        att = torch.einsum("kp,bnp->bkn", self.queries, k) / math.sqrt(k.shape[-1])
        return self.out(torch.einsum("bkn,bnp->bkp", att.softmax(-1), v))


class LifelongReid(nn.Module):
    def __init__(self, encoder, config: LifelongReidConfig):
        """``encoder``: an ``ImageEncoder`` that can be split; its top is copied and learns,
        its lower stages are not kept (their outputs come from the feature cache)."""
        super().__init__()
        self.config = config
        self.top_blocks = nn.ModuleList(copy.deepcopy(list(encoder.blocks[config.stage:])))
        self.top_head = copy.deepcopy(encoder.head)
        # the encoder given is usually frozen (its lower stages feed the cache): its top copy learns
        for p in (*self.top_blocks.parameters(), *self.top_head.parameters()):
            p.requires_grad_(True)
        self._drop = getattr(encoder, "_drop_connect", 0.0)
        self._first = config.stage
        self._total = len(encoder.blocks)
        dim = encoder.dim
        self.neck = nn.Linear(dim, config.embed_dim)
        self.bn = nn.BatchNorm1d(config.embed_dim)
        self.bn.bias.requires_grad_(False)        # BNNeck (Luo et al., 2019)
        self.parts = _PartQueries(dim, len(config.parts), config.part_dim)
        self.classifiers = nn.ModuleDict()

    def tokens(self, lower: torch.Tensor) -> torch.Tensor:
        h = lower
        for j, block in enumerate(self.top_blocks):
            i = self._first + j
            rate = self._drop * i / self._total if self.training else None
            h = block(h, drop_connect_rate=rate)
        return self.top_head(h).flatten(2).transpose(1, 2)

    def forward(self, lower: torch.Tensor) -> dict[str, torch.Tensor]:
        tok = self.tokens(lower)
        emb = self.neck(tok.mean(1))
        return {"tokens": tok, "emb": emb, "bn": self.bn(emb), "parts": self.parts(tok)}

    @torch.inference_mode()
    def embed(self, lower: torch.Tensor) -> torch.Tensor:
        """Unit-length retrieval embeddings of ``config.retrieval``: the BNNeck output, the
        attribute parts (each unit length, then together), or both with equal weight."""
        tok = self.tokens(lower)
        view = self.config.retrieval
        out = []
        if view in ("global", "global+parts"):
            out.append(F.normalize(self.bn(self.neck(tok.mean(1))), dim=-1))
        if view in ("parts", "global+parts"):
            out.append(F.normalize(F.normalize(self.parts(tok), dim=-1).flatten(1), dim=-1))
        return F.normalize(torch.cat(out, -1), dim=-1)

    def add_domain(self, name: str, num_ids: int) -> nn.Linear:
        if name in self.classifiers:
            raise ValueError(f"domain {name!r} was learned already; give the new cameras another name")
        clf = nn.Linear(self.config.embed_dim, num_ids, bias=False)
        nn.init.normal_(clf.weight, std=0.001)
        self.classifiers[name] = clf
        return clf

    def old_logits(self, bn: torch.Tensor, exclude: str) -> torch.Tensor | None:
        """Logits of every earlier domain's classifier, concatenated (None when none)."""
        outs = [c(bn) for n, c in self.classifiers.items() if n != exclude]
        return torch.cat(outs, -1) if outs else None


class TextAttributeSplit(nn.Module):
    """Description token states (B, L, T) + mask -> K text attribute features (B, K, P)."""

    def __init__(self, text_dim: int, k: int, dim: int, split: str = "learned", seed: int = 0):
        super().__init__()
        self.split = split
        self.k = k
        self.prompts = nn.Parameter(torch.randn(k, text_dim) * text_dim ** -0.5)
        self.key = nn.Linear(text_dim, text_dim)
        self.proj = nn.Sequential(nn.LayerNorm(text_dim), nn.Linear(text_dim, dim))
        g = torch.Generator().manual_seed(seed)
        # the random split: token position j goes to group assign[j] (fixed)
        self.register_buffer("assign", torch.randint(0, k, (512,), generator=g), persistent=False)
        if split == "random":
            self.prompts.requires_grad_(False)
            self.key.requires_grad_(False)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = mask.bool()
        if self.split == "learned":
            att = torch.einsum("kt,blt->bkl", self.prompts, self.key(states)) / math.sqrt(states.shape[-1])
            att = att.masked_fill(~mask[:, None, :], float("-inf")).softmax(-1)
        else:
            groups = F.one_hot(self.assign[:states.shape[1]], self.k).T.float()   # (K, L)
            w = groups[None] * mask[:, None, :].float()
            # a group with no real token falls back to the mean of all tokens
            empty = w.sum(-1, keepdim=True) == 0
            w = torch.where(empty, mask[:, None, :].float(), w)
            att = w / w.sum(-1, keepdim=True)
        return self.proj(torch.einsum("bkl,blt->bkt", att, states))


class PrototypeMemory(nn.Module):
    """(domains, K, P) prototypes and the domain names; EMA updates of the current domain.
    ``counts`` (domains, K): updates each prototype has had (0: none yet, not ``valid``)."""

    def __init__(self, k: int, dim: int, momentum: float = 0.9, unit: bool = True):
        super().__init__()
        self.k, self.dim, self.momentum, self.unit = k, dim, momentum, unit
        self.register_buffer("prototypes", torch.zeros(0, k, dim))
        self.register_buffer("counts", torch.zeros(0, k, dtype=torch.long))
        self.names: list[str] = []

    def __len__(self) -> int:
        return len(self.names)

    def start(self, name: str) -> None:
        if name in self.names:
            raise ValueError(f"domain {name!r} already has prototypes")
        self.names.append(name)
        self.prototypes = torch.cat([self.prototypes, torch.zeros(1, self.k, self.dim)])
        self.counts = torch.cat([self.counts, torch.zeros(1, self.k, dtype=torch.long)])

    @classmethod
    def restored(cls, names, prototypes: torch.Tensor, counts: torch.Tensor,
                 unit: bool = True) -> "PrototypeMemory":
        """A memory rebuilt from its saved rows, its sizes read from them."""
        mem = cls(prototypes.shape[1], prototypes.shape[2], unit=unit)
        mem.load(names, prototypes, counts)
        return mem

    def load(self, names, prototypes: torch.Tensor, counts: torch.Tensor) -> None:
        """Restore a saved memory. Memories saved before session 17 count per domain: (D,)."""
        counts = counts.long()
        if counts.ndim == 1:
            counts = counts[:, None].expand(-1, self.k).clone()
        if len(names) != len(prototypes) or counts.shape != prototypes.shape[:2]:
            raise ValueError("the prototype memory does not match its domain list")
        self.names, self.prototypes, self.counts = list(names), prototypes, counts

    @torch.no_grad()
    def update(self, name: str, feats: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """EMA of the batch mean of unit features (B, K, P) (as given with ``unit=False``),
        or (B, 1, P) shared by every k, for domain ``name``; a prototype's first update sets it.
        With ``mask`` (B, K) bool, prototype k takes the mean over the rows where ``mask[:, k]``
        only, and one no row shows is left as it is."""
        i = self.names.index(name)
        unit = F.normalize(feats.detach(), dim=-1) if self.unit else feats.detach()
        if mask is None:
            mask = torch.ones(len(unit), self.k, dtype=torch.bool)
        n = mask.sum(0)                                           # (K,)
        # one feature per row (the attribute memory): a (K, B) x (B, P) product, no B x K x P copy
        sums = mask.float().T @ unit[:, 0] if unit.shape[1] == 1 else (unit * mask[..., None]).sum(0)
        mean = sums / n.clamp(min=1)[:, None]
        seen = n > 0
        m = torch.where(self.counts[i] > 0, self.momentum, 0.0)[:, None]
        new = m * self.prototypes[i] + (1 - m) * mean
        self.prototypes[i] = torch.where(seen[:, None], new, self.prototypes[i])
        self.counts[i] += seen.long()

    def old(self, exclude: str | None = None) -> torch.Tensor:
        """Unit prototypes of every domain but ``exclude`` that has been updated: (D, K, P)."""
        keep = [i for i, n in enumerate(self.names) if n != exclude and bool(self.counts[i].any())]
        return F.normalize(self.prototypes[keep], dim=-1)

    def valid(self, exclude: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Every updated prototype of every domain but ``exclude``: unit rows (M, P) and the
        index k of each (M,)."""
        keep = torch.tensor([n != exclude for n in self.names], dtype=torch.bool)
        ok = (self.counts > 0) & keep[:, None]
        return F.normalize(self.prototypes[ok], dim=-1), ok.nonzero()[:, 1]

    def table(self, exclude: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The stored rows as they are (D, K, dim) of every domain but ``exclude``, and which
        of them have been updated (D, K) bool."""
        keep = [i for i, n in enumerate(self.names) if n != exclude]
        return self.prototypes[keep], self.counts[keep] > 0


class LifelongEmbedder(nn.Module):
    """A lifelong head as a re-ID head of ``PersonPipeline`` (``index``/``similar``/the service).

    Its top was copied from the ImageNet encoder and learned on the ImageNet lower stages'
    outputs, not on the attribute model's tokens, so it runs its own pass from the pixels:
    the frozen lower stages, then the learned top (``needs_pixels``). The first view only, as
    the protocol scores it. Its fingerprint covers both, so a library indexed with another head
    is re-embedded.
    """

    needs_pixels = True

    def __init__(self, model: LifelongReid, encoder):
        super().__init__()
        self.model = model.eval()
        self.lower = encoder.eval()
        self.config = model.config
        del self.lower.blocks[model.config.stage:]   # the top is the model's own copy
        self.lower.head = nn.Identity()
        for p in self.lower.parameters():
            p.requires_grad_(False)

    @torch.inference_mode()
    def embed_images(self, images) -> torch.Tensor:
        """Decoded RGB crops -> unit embeddings (N, embed_dim)."""
        x = torch.stack([self.lower.preprocess(im) for im in images])
        return self.model.embed(self.lower.forward_lower(x, self.config.stage))


# --------------------------------------------------------------------------- files

def save_lifelong(out_dir, model: LifelongReid, splitter: TextAttributeSplit,
                  memory: PrototypeMemory, global_memory: PrototypeMemory, extra: dict,
                  attribute_memory: PrototypeMemory | None = None,
                  style_memory: PrototypeMemory | None = None) -> Path:
    """A lifelong re-ID head: its weights, text splitter and prototype memories in
    ``model.safetensors`` (no image is stored), its config (learned domains, strategy) in
    ``config.json``."""
    from . import hub

    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    state.update({f"splitter.{k}": v for k, v in splitter.state_dict().items()})
    memories = {"memory": memory, "global_memory": global_memory}
    if attribute_memory is not None and bool(attribute_memory.counts.any()):
        memories["attribute_memory"] = attribute_memory
    if style_memory is not None and len(style_memory):
        memories["style_memory"] = style_memory
    for name, mem in memories.items():
        state[f"{name}.prototypes"] = mem.prototypes
        state[f"{name}.counts"] = mem.counts.float()
    config = {**model.config.to_dict(), **extra, "kind": "lifelong-reid",
              "memory_names": list(memory.names),
              "classifiers": [[n, c.out_features] for n, c in model.classifiers.items()]}
    if "attribute_memory" in memories:
        config["attribute_memory_names"] = list(attribute_memory.names)
    if "style_memory" in memories:
        config["style_memory_names"] = list(style_memory.names)
    return hub.save_weights(out_dir, state, config, "lifelong-reid")


class LoadedLifelong(NamedTuple):
    model: LifelongReid
    splitter: TextAttributeSplit
    memory: PrototypeMemory              # attribute groups x part features
    global_memory: PrototypeMemory       # one global prototype per domain
    attribute_memory: PrototypeMemory    # PETA attributes x retrieval embedding (may be empty)
    config: dict
    style_memory: PrototypeMemory | None = None   # STYLE_KEYS x lower-stage channel statistics


def load_lifelong(model_dir, encoder=None) -> LoadedLifelong:
    """A saved lifelong head with its splitter and memories. ``encoder``: the ImageNet encoder
    whose top the model copies (built when None)."""
    from . import hub

    model_dir = Path(model_dir)
    if hub.kind_of(model_dir) != "lifelong-reid":
        raise ValueError(f"{model_dir} is a {hub.kind_of(model_dir)} model, not a lifelong re-ID "
                         "head with a prototype memory: continue a head trained with "
                         "--lifelong, or start without --from")
    cfg_dict, state = hub.read_weights(model_dir)
    config = LifelongReidConfig.from_dict(cfg_dict)
    if encoder is None:
        from .factory import create_image_encoder

        encoder = create_image_encoder(config.encoder, pretrained=False)
    model = LifelongReid(encoder, config)
    for name, n in cfg_dict.get("classifiers", []):
        model.add_domain(name, int(n))
    model.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("model.")})
    splitter = TextAttributeSplit(config.text_dim, len(config.parts), config.part_dim,
                                  config.text_split)
    splitter.load_state_dict({k[9:]: v for k, v in state.items() if k.startswith("splitter.")})
    memories = []
    for name, k, dim, names_key in (("memory", len(config.parts), config.part_dim, "memory_names"),
                                    ("global_memory", 1, config.embed_dim, "memory_names"),
                                    ("attribute_memory", len(ATTRIBUTE_NAMES), config.embed_dim,
                                     "attribute_memory_names")):
        mem = PrototypeMemory(k, dim)
        if f"{name}.prototypes" in state:
            try:
                mem.load(cfg_dict.get(names_key, []), state[f"{name}.prototypes"], state[f"{name}.counts"])
            except ValueError as e:
                raise ValueError(f"{model_dir}: {e}") from None
        memories.append(mem)
    style = None
    if "style_memory.prototypes" in state:
        try:
            style = PrototypeMemory.restored(cfg_dict.get("style_memory_names", []),
                                             state["style_memory.prototypes"],
                                             state["style_memory.counts"], unit=False)
        except ValueError as e:
            raise ValueError(f"{model_dir}: {e}") from None
    return LoadedLifelong(model.eval(), splitter, *memories, cfg_dict, style)


def load_lifelong_embedder(model_dir) -> LifelongEmbedder:
    """A saved lifelong head, ready for the pipeline (the ImageNet lower stages from the wheel)."""
    from . import hub
    from .factory import create_image_encoder

    cfg = LifelongReidConfig.from_dict(hub.read_config(model_dir))
    encoder = create_image_encoder(cfg.encoder, pretrained=True)
    model = load_lifelong(model_dir, encoder).model
    return LifelongEmbedder(model, encoder)
