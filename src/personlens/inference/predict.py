"""Attribute inference on person crops with a trained (by default the shipped) PAR model."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
from PIL import Image

from ..models import hub
from ..models.io import load_par
from .batching import PredictionError, batched_over_paths
from .adapt import bn_statistics
from .encode import EncoderPass, resolve_precision


@dataclass(frozen=True)
class AttributePrediction:
    image: str
    attributes: dict[str, float]   # name -> probability
    present: list[str]             # names whose probability reaches their threshold

    def __post_init__(self):
        bad = [k for k, v in self.attributes.items() if not 0.0 <= v <= 1.0]
        if bad:
            raise ValueError(f"probabilities outside [0, 1] for {bad}")

    def to_dict(self) -> dict:
        return {"image": self.image, "attributes": self.attributes, "present": self.present}


class AttributePredictor:
    """Batched channels_last CPU inference, bf16 where the CPU has it (the fast path measured
    in benchmarks/), else fp32.

    Example::

        from personlens import AttributePredictor

        for r in AttributePredictor().predict_paths(["crop1.jpg", "crop2.png"]):
            print(r.image, r.present)      # a PredictionError for a file that cannot be read
    """

    def __init__(self, model_dir: str | Path | None = None, precision: str = "auto",
                 threads: int | None = None, flip_tta: bool | None = None):
        if threads:
            torch.set_num_threads(threads)
        precision = resolve_precision(precision)   # a bad value fails before the model loads
        self.model_dir = hub.resolve(model_dir, "attributes")
        self.encoder = EncoderPass(load_par(self.model_dir), precision, flip_tta)
        self.model = self.encoder.model
        self.config = self.model.config
        self.names = list(self.config.attributes)
        self.preprocess = self.encoder.preprocess
        # the model as trained (before any adaptation): its identity, statistics, thresholds
        self.fingerprint = hub.module_fingerprint(self.model, self.config.to_dict())
        self._base_bn = bn_statistics(self.model.encoder)
        th = self.config.thresholds or [0.5] * len(self.names)
        self.base_thresholds = np.asarray(th, np.float32)
        self.adapted = None
        self._set_thresholds(self.base_thresholds)
        self.precision = precision
        # mirror-image averaging: the model's setting unless the caller trades it for speed
        self.flip_tta = self.encoder.flip_tta

    def _set_thresholds(self, thresholds) -> None:
        self.thresholds = np.asarray(thresholds, np.float32)
        self.threshold_map = {n: float(t) for n, t in zip(self.names, self.thresholds)}

    @property
    def score_model(self):
        """The validation score statistics (``val_scores.json``) as a ``ScoreModel``, or None."""
        from .adaptation import score_model_from

        return score_model_from(hub.read_scores(self.model_dir), self.names)

    @property
    def transfer(self):
        """How well each attribute carries over to cameras the recipe never saw
        (``new_cameras.json``, a ``TransferReport``), or None when the model has no such
        measurement for its attributes."""
        from ..models.transfer import read_transfer

        return read_transfer(self.model_dir, self.names)

    def set_adaptation(self, entry) -> None:
        """Use one camera's ``CameraAdaptation`` (normalisation statistics and thresholds),
        or the model as trained with ``None``."""
        from .adapt import apply_bn_statistics

        if entry is not None and len(entry.thresholds) != len(self.names):
            raise ValueError(f"{len(entry.thresholds)} adapted thresholds for {len(self.names)} attributes")
        if entry is self.adapted:
            return
        apply_bn_statistics(self.model.encoder, entry.bn if entry is not None and entry.bn else self._base_bn)
        self._set_thresholds(self.base_thresholds if entry is None else entry.thresholds)
        self.adapted = entry

    def probabilities(self, images: list[Image.Image]) -> np.ndarray:
        """(N, A) probabilities for decoded RGB images."""
        if not images:
            return np.zeros((0, len(self.names)), np.float32)
        return self.encoder(images).probs

    def to_prediction(self, source: str, probs: np.ndarray) -> AttributePrediction:
        # ``present`` is decided on the reported (rounded) probability, so the output is
        # self-consistent: attributes[n] >= threshold[n] exactly when n is in present.
        attrs = {n: round(float(p), 4) for n, p in zip(self.names, probs)}
        return AttributePrediction(
            image=source,
            attributes=attrs,
            present=[n for n, t in zip(self.names, self.thresholds) if attrs[n] >= t],
        )

    def predict_paths(self, paths: Iterable[str | Path], batch_size: int = 32
                      ) -> Iterator[AttributePrediction | PredictionError]:
        """Yield one result per path, in order; unreadable files yield a PredictionError."""

        def run(sources, images):
            return [self.to_prediction(src, p) for src, p in zip(sources, self.probabilities(images))]

        return batched_over_paths(paths, batch_size, run)
