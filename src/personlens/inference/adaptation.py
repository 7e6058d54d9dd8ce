"""A library's adaptation to its cameras: fitted from unlabelled crops, saved, applied.

``personlens adapt CROPS --db DIR [--camera NAME]`` fits one ``CameraAdaptation`` (new
normalisation statistics and thresholds, ``inference.adapt``) from the crops and stores it in
the library folder::

    adaptation.json          model it was fitted for, settings, per camera: crops, thresholds, priors
    adaptation.safetensors   per camera: the encoder's BatchNorm statistics

Crops given without ``--camera`` make the entry ``*``, used for every camera that has none
of its own (and for query images, which come without a camera). An adaptation belongs to one
attribute model (its fingerprint): opened with another one, it is refused with a message,
never applied to a model it was not fitted for.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .adapt import (AdaptSettings, ScoreModel, apply_bn_statistics, bn_statistics,
                    estimate_bn_statistics, fit_score_mixture, transfer_thresholds)

ADAPTATION_FILE = "adaptation.json"
STATS_FILE = "adaptation.safetensors"
ALL_CAMERAS = "*"
FORMAT = 1

__all__ = ["ADAPTATION_FILE", "ALL_CAMERAS", "Adaptation", "AdaptationError", "CameraAdaptation",
           "fit_camera"]


class AdaptationError(ValueError):
    """Adaptation cannot be fitted or applied (too few crops, another model, a bad file)."""


@dataclass
class CameraAdaptation:
    crops: int
    thresholds: np.ndarray           # (A,) on the model's probabilities
    priors: np.ndarray               # (A,) estimated share of positives on these crops
    bn: dict[str, torch.Tensor] | None = None
    created: str = ""

    def summary(self, names: list[str], base_thresholds: np.ndarray, top: int = 5) -> dict:
        moved = np.argsort(-np.abs(self.thresholds - base_thresholds))[:top]
        return {"crops": self.crops, "created": self.created, "normalisation": self.bn is not None,
                "largest_threshold_moves": {names[i]: [round(float(base_thresholds[i]), 3),
                                                       round(float(self.thresholds[i]), 3)]
                                            for i in moved}}


@dataclass
class Adaptation:
    model: str                                    # fingerprint of the attribute model
    names: list[str]
    settings: AdaptSettings = field(default_factory=AdaptSettings)
    cameras: dict[str, CameraAdaptation] = field(default_factory=dict)

    def entry(self, camera: str | None) -> CameraAdaptation | None:
        if camera is not None and camera in self.cameras:
            return self.cameras[camera]
        return self.cameras.get(ALL_CAMERAS)

    @property
    def id(self) -> str:
        """Changes whenever any entry changes: part of the library's model version."""
        h = hashlib.blake2b(digest_size=6)
        h.update(json.dumps(self._json(), sort_keys=True).encode())
        for name, t in sorted(self._tensors().items()):
            h.update(name.encode())
            h.update(t.numpy().tobytes())
        return h.hexdigest()

    # ------------------------------------------------------------------ files
    def _json(self) -> dict:
        return {"format": FORMAT, "model": self.model, "attributes": self.names,
                "settings": asdict(self.settings),
                "cameras": [{"camera": c, "crops": e.crops, "created": e.created,
                             "normalisation": e.bn is not None,
                             "thresholds": [round(float(t), 6) for t in e.thresholds],
                             "priors": [round(float(p), 6) for p in e.priors]}
                            for c, e in self.cameras.items()]}

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {f"{i}/{k}": v.float().contiguous() for i, e in enumerate(self.cameras.values())
                if e.bn is not None for k, v in e.bn.items()}

    def save(self, db_dir: str | Path) -> None:
        """Both files, each replaced atomically; the statistics first, so that a crash never
        leaves a JSON that names statistics which are not there."""
        d = Path(db_dir)
        tensors = self._tensors()
        tmp = d / f".{STATS_FILE}.{os.getpid()}.tmp"
        if tensors:
            save_file(tensors, str(tmp), metadata={"format": "personlens-adaptation"})
            tmp.replace(d / STATS_FILE)
        else:
            (d / STATS_FILE).unlink(missing_ok=True)
        tmp = d / f".{ADAPTATION_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(self._json(), indent=1))
        tmp.replace(d / ADAPTATION_FILE)

    @classmethod
    def load(cls, db_dir: str | Path) -> "Adaptation | None":
        d = Path(db_dir)
        if not (d / ADAPTATION_FILE).is_file():
            return None
        try:
            raw = json.loads((d / ADAPTATION_FILE).read_text())
            if raw.get("format") != FORMAT:
                raise AdaptationError(f"adaptation format {raw.get('format')!r} is not {FORMAT}")
            tensors = load_file(str(d / STATS_FILE)) if (d / STATS_FILE).is_file() else {}
            cameras = {}
            for i, c in enumerate(raw["cameras"]):
                bn = {k.split("/", 1)[1]: v for k, v in tensors.items() if k.split("/", 1)[0] == str(i)}
                if c["normalisation"] and not bn:
                    raise AdaptationError(f"statistics of camera {c['camera']!r} are missing")
                cameras[c["camera"]] = CameraAdaptation(
                    crops=int(c["crops"]), thresholds=np.asarray(c["thresholds"], np.float32),
                    priors=np.asarray(c["priors"], np.float32), bn=bn or None, created=c["created"])
            return cls(model=raw["model"], names=list(raw["attributes"]),
                       settings=AdaptSettings(**raw["settings"]), cameras=cameras)
        except AdaptationError as e:
            raise AdaptationError(f"{d / ADAPTATION_FILE}: {e}; remove it with "
                                  f"`personlens adapt --reset --db {d}`") from None
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise AdaptationError(f"{d / ADAPTATION_FILE} is unreadable ({e}); remove it with "
                                  f"`personlens adapt --reset --db {d}`") from None

    @staticmethod
    def remove(db_dir: str | Path) -> bool:
        d = Path(db_dir)
        found = (d / ADAPTATION_FILE).exists()
        (d / ADAPTATION_FILE).unlink(missing_ok=True)   # first: without it the stats are ignored
        (d / STATS_FILE).unlink(missing_ok=True)
        return found

    def check(self, model_fingerprint: str, names: list[str], where: str = "this library") -> None:
        if self.model != model_fingerprint or list(self.names) != list(names):
            raise AdaptationError(
                f"{where} was adapted for another attribute model; adapt it again for this one "
                f"(`personlens adapt CROPS --db DIR`, which replaces it) or remove the adaptation "
                f"(`personlens adapt --reset --db DIR`)")


def fit_camera(predictor, images: list, settings: AdaptSettings = AdaptSettings(),
               batch_size: int = 32, progress=None) -> CameraAdaptation:
    """One camera's adaptation from decoded RGB crops (no labels) for an ``AttributePredictor``
    with its base statistics and thresholds active."""
    if len(images) < settings.min_crops:
        raise AdaptationError(f"adaptation needs at least {settings.min_crops} readable crops, "
                              f"got {len(images)}")
    source = predictor.score_model
    if settings.thresholds and source is None:
        raise AdaptationError("this attribute model has no validation score statistics "
                              "(val_scores.json); write them with `personlens calibrate attributes "
                              "--scores-only --weights DIR --root DATASET`")
    enc = predictor.encoder
    x = enc.tensor(images)
    bn = None
    if settings.normalisation:
        batches = (x[i:i + batch_size] for i in range(0, len(x), batch_size))
        if progress is not None:
            batches = progress(batches, total=-(-len(x) // batch_size), desc="normalisation")
        bn = estimate_bn_statistics(enc.encoder, batches, settings.bn_prior)
    thresholds = np.asarray(predictor.base_thresholds, np.float32)
    priors = source.prior.astype(np.float32) if source is not None else np.zeros(len(thresholds), np.float32)
    if settings.thresholds:
        rng = np.random.default_rng(0)
        pick = np.sort(rng.choice(len(x), min(len(x), settings.threshold_crops), replace=False))
        saved = bn_statistics(enc.encoder)
        try:
            if bn is not None:
                apply_bn_statistics(enc.encoder, bn)
            chunks = (x[pick[i:i + batch_size]] for i in range(0, len(pick), batch_size))
            if progress is not None:
                chunks = progress(chunks, total=-(-len(pick) // batch_size), desc="scores")
            probs = np.concatenate([enc(c).probs for c in chunks])
        finally:
            apply_bn_statistics(enc.encoder, saved)
        target = fit_score_mixture(probs, source, settings)
        thresholds = transfer_thresholds(thresholds, source, target, settings.max_shift)
        priors = target.prior.astype(np.float32)
    # as saved (6 decimals), so a reopened library decides exactly as this one
    thresholds, priors = (np.round(a.astype(np.float64), 6).astype(np.float32) for a in (thresholds, priors))
    return CameraAdaptation(crops=len(images), thresholds=thresholds, priors=priors, bn=bn,
                            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


def score_model_from(scores: dict | None, names: list[str]) -> ScoreModel | None:
    """The ``ScoreModel`` of ``val_scores.json`` in the order of ``names`` (None without one)."""
    if scores is None:
        return None
    if list(scores.get("attributes", [])) != list(names):
        raise AdaptationError("val_scores.json was written for other attributes than the model's; "
                              "rewrite it with `personlens calibrate attributes --scores-only`")
    return ScoreModel.from_dict(scores)
