"""Typed load and save for every kind of model directory (``models.hub`` handles the files).

``load_par`` / ``save_par``: attribute models; ``load_embedding_head`` / ``save_embedding_head``
(``models.embedding``): search and re-ID heads; ``load_describer`` / ``save_describer``
(``models.describer``): description models. ``load_model(dir_or_name)`` loads any of them,
finding the kind in the directory itself.
"""
from __future__ import annotations

from pathlib import Path

from . import hub
from .describer import load_describer
from .embedding import load_embedding_head
from .factory import build_head, create_image_encoder
from .par import PARConfig, PARModel


def save_par(model: PARModel, out_dir: str | Path) -> Path:
    return hub.save_weights(out_dir, model.trainable_state_dict(), model.config.to_dict(), "attributes")


def load_par(model_dir: str | Path | None = None) -> PARModel:
    """Load a PAR model directory or shipped name (default: the weights shipped in the package)."""
    model_dir = hub.resolve(model_dir, "attributes")
    cfg, state = hub.read_weights(model_dir)
    config = PARConfig.from_dict(cfg)
    from ..data.images import Preprocess

    encoder = create_image_encoder(config.encoder, pretrained=True,
                                   preprocess=Preprocess.from_dict(config.preprocess)).freeze()
    head = build_head(encoder.dim, state.get("head.prompts"), len(config.attributes), config.head)
    model = PARModel(encoder, head, config)
    # the frozen ImageNet encoder is not saved (only a trained top is)
    hub.load_state(model, state, model_dir / hub.WEIGHTS_FILE, optional=("encoder.",))
    return model.eval()


def set_thresholds(model_dir: str | Path, thresholds, calibration: dict) -> Path:
    """Store calibrated per-attribute thresholds (and how they were fitted) in an attribute
    model's config, checked against its attributes; returns the config path."""
    config = PARConfig.from_dict(hub.read_config(model_dir))
    thresholds = [float(t) for t in thresholds]
    if len(thresholds) != len(config.attributes):
        raise ValueError(f"{len(thresholds)} thresholds for {len(config.attributes)} attributes")
    config.thresholds = thresholds
    config.notes = {**(config.notes or {}), "calibration": calibration}
    return hub.write_config(model_dir, config.to_dict())


LOADERS = {"attributes": load_par, "search": lambda d: load_embedding_head(d, kind="search"),
           "reid": lambda d: load_embedding_head(d, kind="reid"), "describer": load_describer}


def load_model(model: str | Path, kind: str | None = None):
    """Any model directory, or a shipped model's name (``models.hub.SHIPPED``)."""
    if kind is None:
        kind = hub.SHIPPED[model].kind if isinstance(model, str) and model in hub.SHIPPED \
            else hub.kind_of(model)
    if kind not in LOADERS:
        raise KeyError(f"no model kind {kind!r}; available: {', '.join(LOADERS)}")
    return LOADERS[kind](hub.resolve(model, kind))
