"""Descriptions of person crops: one encoder pass gives the attributes and the text.

``Describer`` loads a describer directory (``personlens train describe``) and the PAR model
it was trained with (its ``par/`` folder, or ``par_dir``). Per batch: the PAR encoder runs
once (bf16 + channels_last, with the mirrored crop when the PAR model uses flip TTA), the
attribute head gives the probabilities, the pooled tokens and those probabilities give the
describer's prefix, the decoder writes the text, the clean-up pass tidies it, and the
consistency check compares it with the attributes (``consistency="fix"`` rewrites
contradicted facts, ``"flag"`` only reports them, ``"off"`` skips the check).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
from PIL import Image

from ..models.describer import describer_par_dir, load_describer, pool_tokens, resolve_describer_dir
from ..models.generate import DecodeConfig
from ..models.hub import TrainedOn
from .batching import PredictionError, batched_over_paths
from .predict import AttributePredictor
from ..text.consistency import reconcile

CONSISTENCY = ("fix", "flag", "off")


@dataclass(frozen=True)
class Description:
    image: str
    text: str
    attributes: dict[str, float]
    present: list[str]
    contradictions: list[dict] = field(default_factory=list)  # found in the generated text
    generated: str = ""   # the text before a consistency fix (same as ``text`` when none)

    def to_dict(self) -> dict:
        d = {"image": self.image, "text": self.text, "attributes": self.attributes,
             "present": self.present, "contradictions": self.contradictions}
        if self.generated and self.generated != self.text:
            d["generated"] = self.generated
        return d


class DescriberHead:
    """The text half of a describer: pooled encoder tokens + attribute probabilities -> the
    cleaned, consistency-checked description. ``PersonPipeline`` uses it on the tokens of its
    one encoder pass; ``Describer`` adds its own attribute model around it."""

    def __init__(self, weights: str | Path | None = None, decoding: DecodeConfig | None = None,
                 consistency: str = "fix"):
        if consistency not in CONSISTENCY:
            raise ValueError(f"consistency must be one of {CONSISTENCY}")
        self.weights = resolve_describer_dir(weights)
        self.model = load_describer(self.weights)
        self.config = self.model.config
        self.decoding = decoding or DecodeConfig(max_len=self.config.max_words + 1)
        self.consistency = consistency

    def matches(self, par_dir: str | Path | None, names) -> bool:
        """Was it trained on the tokens (and attributes) of this PAR model?"""
        if self.config.attr_conditioning and list(self.config.attributes) != list(names):
            return False
        return TrainedOn.of(self.config).fits(par_dir=par_dir) is not False

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        return pool_tokens(tokens.float(), self.config.token_grid, self.config.grid)

    @torch.no_grad()
    def texts(self, pooled: torch.Tensor, probs: np.ndarray, thresholds: dict[str, float],
              names) -> list[tuple[str, list, str]]:
        """Per crop ``(text, contradictions found, generated text before any fix)``."""
        cond = torch.from_numpy(np.asarray(probs, np.float32)) if self.config.attr_conditioning else None
        out = []
        for text, p in zip(self.model.generate(pooled, cond, self.decoding), probs):
            final, found = text, []
            if self.consistency != "off":
                final, found = reconcile(text, dict(zip(names, (float(x) for x in p))), thresholds,
                                         mode="fix" if self.consistency == "fix" else "flag")
            out.append((final, [c.to_dict() for c in found], text))
        return out


class Describer:
    """Descriptions and attributes of crops (the shipped describer by default).

    Example::

        from personlens import Describer
        from personlens.models.generate import DecodeConfig

        describer = Describer()
        describer.decoding = DecodeConfig(method="beam", beam_size=4, max_len=49)
        for d in describer.describe_paths(["crop.jpg"]):
            print(d.text, d.present, d.contradictions)
    """

    def __init__(self, weights: str | Path | None = None, par_dir: str | Path | None = None,
                 decoding: DecodeConfig | None = None, consistency: str = "fix",
                 precision: str = "auto", warn=None):
        self.describer_head = DescriberHead(weights, decoding, consistency)
        self.weights = self.describer_head.weights
        self.model = self.describer_head.model
        self.config = self.model.config
        par_dir = Path(par_dir) if par_dir is not None else describer_par_dir(self.weights)
        self.predictor = AttributePredictor(par_dir, precision=precision)
        self.par_dir = par_dir
        self.names = self.predictor.names
        if self.config.attr_conditioning and list(self.config.attributes) != list(self.names):
            raise ValueError(f"the description model was trained with the attributes of another PAR "
                             f"model ({len(self.config.attributes)} attributes); pass the --par it was "
                             f"trained with")
        if not self.describer_head.matches(par_dir, self.names):
            (warn or (lambda m: print(f"warning: {m}", file=sys.stderr)))(
                f"the description model was trained on the tokens of another PAR model than "
                f"{par_dir or 'the shipped one'}; descriptions may be poor")

    @property
    def thresholds(self) -> dict[str, float]:
        """The attribute model's current thresholds (adapted ones after ``set_adaptation``)."""
        return self.predictor.threshold_map

    # Decoding and consistency live on the head that writes the text; these properties make
    # ``describer.decoding = DecodeConfig(...)`` reach it (it once set a copy nobody read).
    @property
    def decoding(self) -> DecodeConfig:
        return self.describer_head.decoding

    @decoding.setter
    def decoding(self, value: DecodeConfig) -> None:
        self.describer_head.decoding = value

    @property
    def consistency(self) -> str:
        return self.describer_head.consistency

    @consistency.setter
    def consistency(self, value: str) -> None:
        if value not in CONSISTENCY:
            raise ValueError(f"consistency must be one of {CONSISTENCY}")
        self.describer_head.consistency = value

    @torch.no_grad()
    def encode(self, images: list[Image.Image]) -> tuple[torch.Tensor, np.ndarray]:
        """(pooled tokens (B, G, C) float32, probabilities (B, A)) in one encoder pass."""
        out = self.predictor.encoder(images)
        return self.describer_head.pool(out.first_view(out.tokens)).clone(), out.probs

    def describe_images(self, images: list[Image.Image],
                        sources: list[str] | None = None) -> list[Description]:
        if not images:
            return []
        sources = sources or [f"<image {i}>" for i in range(len(images))]
        pooled, probs = self.encode(images)
        out = []
        for src, p, (final, found, text) in zip(sources, probs,
                                                self.describer_head.texts(pooled, probs, self.thresholds,
                                                                     self.names)):
            pred = self.predictor.to_prediction(src, p)
            out.append(Description(src, final, pred.attributes, pred.present, found, text))
        return out

    def describe_paths(self, paths: Iterable[str | Path], batch_size: int = 32
                       ) -> Iterator[Description | PredictionError]:
        """One result per path, in order; unreadable files give a ``PredictionError``."""
        return batched_over_paths(paths, batch_size,
                                  lambda sources, images: self.describe_images(images, sources))
