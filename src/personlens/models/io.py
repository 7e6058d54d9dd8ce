"""Save and load trained models as safetensors + config.json (no pickle anywhere)."""
from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

from safetensors.torch import load_file, save_file

from .par import PARConfig, PARModel, build_head
from .registry import create_image_encoder

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
SHIPPED = {"par-peta": "weights/par-peta", "search-peta": "weights/search-peta",
           "reid": "weights/reid"}
# embedding-head kind -> the shipped head used by default (when its directory is present)
SHIPPED_HEADS = {"search": "search-peta", "reid": "reid"}


def shipped_dir(name: str = "par-peta") -> Path:
    if name not in SHIPPED:
        raise KeyError(f"no shipped model {name!r}; available: {', '.join(SHIPPED)}")
    return Path(str(files("personlens") / SHIPPED[name]))


def shipped_head_dir(kind: str) -> Path | None:
    """The shipped embedding head of a kind ("search" or "reid"), or None when the package
    holds none (then the pipeline uses its untrained baseline)."""
    if kind not in SHIPPED_HEADS:
        raise KeyError(f"no shipped head kind {kind!r}; available: {', '.join(SHIPPED_HEADS)}")
    d = shipped_dir(SHIPPED_HEADS[kind])
    return d if (d / CONFIG_FILE).is_file() and (d / WEIGHTS_FILE).is_file() else None


def save_par(model: PARModel, out_dir: str | Path) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().float() for k, v in model.trainable_state_dict().items()}
    save_file(state, str(out_dir / WEIGHTS_FILE), metadata={"format": "personlens-par"})
    (out_dir / CONFIG_FILE).write_text(json.dumps(model.config.to_dict(), indent=2))
    return out_dir


def load_par(model_dir: str | Path | None = None) -> PARModel:
    """Load a PAR model directory (default: the weights shipped in the package)."""
    model_dir = shipped_dir() if model_dir is None else Path(model_dir)
    cfg_path, w_path = model_dir / CONFIG_FILE, model_dir / WEIGHTS_FILE
    if not cfg_path.exists() or not w_path.exists():
        raise FileNotFoundError(f"{model_dir} must hold {CONFIG_FILE} and {WEIGHTS_FILE}")
    config = PARConfig.from_dict(json.loads(cfg_path.read_text()))
    from ..data.images import Preprocess

    encoder = create_image_encoder(config.encoder, pretrained=True,
                                   preprocess=Preprocess.from_dict(config.preprocess)).freeze()
    state = load_file(str(w_path))
    prompts = state.get("head.prompts")
    head = build_head(encoder.dim, prompts, len(config.attributes), config.head)
    model = PARModel(encoder, head, config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(k.startswith("head.") for k in missing):
        raise ValueError(f"{w_path} does not match its config: missing={missing[:5]} unexpected={unexpected[:5]}")
    return model.eval()
