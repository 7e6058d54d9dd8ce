"""Attribute inference on person crops with a trained (by default the shipped) PAR model."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
from PIL import Image

from .data.images import ImageLoadError, Preprocess, load_image
from .models.io import load_par


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


@dataclass(frozen=True)
class PredictionError:
    image: str
    error: str


class AttributePredictor:
    """Batched, bf16 + channels_last CPU inference (the fast path measured in benchmarks/)."""

    def __init__(self, model_dir: str | Path | None = None, precision: str = "bf16",
                 threads: int | None = None, flip_tta: bool | None = None):
        if threads:
            torch.set_num_threads(threads)
        if precision not in ("bf16", "fp32"):
            raise ValueError("precision must be bf16 or fp32")
        self.model = load_par(model_dir).to(memory_format=torch.channels_last)
        self.config = self.model.config
        self.names = list(self.config.attributes)
        self.preprocess = Preprocess.from_dict(self.config.preprocess)
        th = self.config.thresholds or [0.5] * len(self.names)
        self.thresholds = np.asarray(th, np.float32)
        self.threshold_map = {n: float(t) for n, t in zip(self.names, self.thresholds)}
        self.precision = precision
        # mirror-image averaging: the model's setting unless the caller trades it for speed
        self.flip_tta = self.config.flip_tta if flip_tta is None else flip_tta

    def probabilities(self, images: list[Image.Image]) -> np.ndarray:
        """(N, A) probabilities for decoded RGB images."""
        if not images:
            return np.zeros((0, len(self.names)), np.float32)
        x = torch.stack([self.preprocess(im) for im in images]).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16,
                                                   enabled=self.precision == "bf16"):
            if self.flip_tta:
                x = torch.cat([x, x.flip(-1)])
            probs = torch.sigmoid(self.model(x).float())
        if self.flip_tta:
            probs = (probs[:len(images)] + probs[len(images):]) / 2
        return probs.numpy()

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


def batched_over_paths(paths: Iterable[str | Path], batch_size: int, run) -> Iterator:
    """Decode paths into batches for ``run(sources, images) -> results``; yield results in input
    order, with a ``PredictionError`` in place of each file that cannot be read."""
    pending: list[tuple[str, Image.Image]] = []

    def flush():
        if pending:
            results = run([s for s, _ in pending], [im for _, im in pending])
            pending.clear()
            yield from results

    for path in paths:
        try:
            pending.append((str(path), load_image(path)))
        except ImageLoadError as e:
            yield from flush()
            yield PredictionError(str(path), e.reason)
            continue
        if len(pending) >= batch_size:
            yield from flush()
    yield from flush()
