"""The model hub: what a model directory holds, which models ship, and how weights are read.

Every trained model personlens writes or ships is one directory::

    config.json          its typed config (``PARConfig``, ``EmbeddingHeadConfig``, ``DescriberConfig``)
    model.safetensors    its weights (never pickle); the ``format`` metadata names the kind

plus, for a describer, ``vocab.json`` and ``par/`` (the attribute model whose tokens it reads),
and, for an attribute model, ``val_scores.json``: how its scores of negatives and positives
were distributed on the validation split (``personlens adapt`` moves thresholds from it), and
``new_cameras.json``: how well each attribute carries over to cameras the recipe never saw
(``models/transfer.py``). Both sit beside the config, not in it, so that adding them changes
no model version.
This module is the one place that knows those file names, the table of shipped models
(:data:`SHIPPED`), how a directory is found from ``--model NAME`` / ``--weights DIR``
(:func:`resolve`), how weights are saved and read back (:func:`save_weights`,
:func:`read_weights`), and which encoder a head was trained on (:class:`TrainedOn`).

It is a leaf of ``personlens.models``: the model modules import it, never the reverse, so
the kinds' builders stay next to their configs (``models/par.py``, ``models/embedding.py``,
``models/describer.py``) while their files are handled here once.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..data.images import Preprocess

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.json"
SCORES_FILE = "val_scores.json"
TRANSFER_FILE = "new_cameras.json"
PAR_SUBDIR = "par"   # inside a describer directory: the attribute model it was trained on

# kind -> the ``format`` written in the safetensors metadata
FORMATS = {"attributes": "personlens-par", "search": "personlens-embedding-head",
           "reid": "personlens-embedding-head", "describer": "personlens-describer",
           "lifelong-reid": "personlens-lifelong-reid"}
KINDS = tuple(FORMATS)


@dataclass(frozen=True)
class ShippedModel:
    """One model that ships inside the package (``personlens/weights/<folder>``)."""

    name: str
    kind: str          # one of KINDS
    folder: str
    summary: str

    @property
    def path(self) -> Path:
        return Path(str(files("personlens") / "weights" / self.folder))

    @property
    def present(self) -> bool:
        """False in a build that leaves the weights out (the code then uses its baselines)."""
        return (self.path / CONFIG_FILE).is_file() and (self.path / WEIGHTS_FILE).is_file()


SHIPPED: dict[str, ShippedModel] = {m.name: m for m in (
    ShippedModel("par-peta", "attributes", "par-peta",
                 "VLM-PAR attribute model, EfficientNet-Lite0, PETA's 35 attributes"),
    ShippedModel("par-peta-mamba", "attributes", "par-peta-mamba",
                 "Mamba PAR: par-peta's encoder + a bidirectional Vim head (2 layers), PETA's 35 attributes"),
    ShippedModel("search-peta", "search", "search-peta",
                 "text-to-person search head into MiniLM's space, trained on PETA captions"),
    ShippedModel("reid", "reid", "reid",
                 "re-ID head: encoder tokens + learned projection + LOMO part"),
    ShippedModel("describe-peta", "describer", "describe-peta",
                 "PersonVLM-style describer, 3-layer decoder on the attribute model's tokens"),
)}
DEFAULT_FOR_KIND = {"attributes": "par-peta", "search": "search-peta", "reid": "reid",
                    "describer": "describe-peta"}


def shipped(name: str) -> ShippedModel:
    if name not in SHIPPED:
        raise KeyError(f"no shipped model {name!r}; available: {', '.join(SHIPPED)}")
    return SHIPPED[name]


def shipped_dir(name: str = "par-peta") -> Path:
    """The directory of a shipped model (whether or not this build holds its files)."""
    return shipped(name).path


def shipped_default(kind: str) -> Path | None:
    """The shipped model of a kind, or None when this build holds none."""
    if kind not in DEFAULT_FOR_KIND:
        raise KeyError(f"no model kind {kind!r}; available: {', '.join(DEFAULT_FOR_KIND)}")
    m = SHIPPED[DEFAULT_FOR_KIND[kind]]
    return m.path if m.present else None


def resolve(model: str | Path | None, kind: str) -> Path:
    """The directory for ``--model NAME`` or ``--weights DIR``: ``None`` is the shipped model
    of ``kind``, a name of :data:`SHIPPED` that model, anything else a directory."""
    if model is None:
        d = shipped_default(kind)
        if d is None:
            raise FileNotFoundError(f"no {kind} model is shipped in this build: pass a directory")
        return d
    if isinstance(model, str) and model in SHIPPED:
        m = SHIPPED[model]
        if m.kind != kind:
            raise ValueError(f"{model!r} is a {m.kind} model, not a {kind} model")
        return m.path
    d = Path(model)
    if not (d / CONFIG_FILE).is_file() or not (d / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"{d} must hold {CONFIG_FILE} and {WEIGHTS_FILE}")
    return d


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def save_weights(out_dir: str | Path, state: dict[str, torch.Tensor], config: dict, kind: str,
                 *, half_min_values: int | None = None) -> Path:
    """Write ``model.safetensors`` + ``config.json`` (each file replaced atomically).

    Tensors of ``half_min_values`` values or more are stored in float16 (and read back into
    float32): big projections halve in size while moving outputs far less than people differ.
    """
    if kind not in FORMATS:
        raise KeyError(f"no model kind {kind!r}; available: {', '.join(FORMATS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    def stored(t: torch.Tensor) -> torch.Tensor:
        t = t.detach()
        big = half_min_values is not None and t.numel() >= half_min_values
        return (t.half() if big else t.float()).contiguous()

    tmp = out_dir / f".{WEIGHTS_FILE}.{os.getpid()}.tmp"
    save_file({k: stored(v) for k, v in state.items()}, str(tmp), metadata={"format": FORMATS[kind]})
    tmp.replace(out_dir / WEIGHTS_FILE)
    _atomic_write_text(out_dir / CONFIG_FILE, json.dumps(config, indent=2))
    return out_dir


def write_scores(model_dir: str | Path, scores: dict) -> Path:
    """Write an attribute model's validation score statistics (``SCORES_FILE``) atomically."""
    path = Path(model_dir) / SCORES_FILE
    _atomic_write_text(path, json.dumps(scores, indent=1))
    return path


def read_scores(model_dir: str | Path) -> dict | None:
    """The validation score statistics of an attribute model, or None when it has none."""
    path = Path(model_dir) / SCORES_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
        raise ValueError(f"{path} is not readable JSON: {e}") from None


def write_config(model_dir: str | Path, config: dict) -> Path:
    """Replace a model directory's ``config.json`` atomically (its weights stay as they are)."""
    path = Path(model_dir) / CONFIG_FILE
    _atomic_write_text(path, json.dumps(config, indent=2))
    return path


def read_format(model_dir: str | Path) -> str | None:
    """The ``format`` a weights file was saved with (None for files without one)."""
    with safe_open(str(Path(model_dir) / WEIGHTS_FILE), framework="pt") as f:
        return (f.metadata() or {}).get("format")


def kind_of(model_dir: str | Path) -> str:
    """``attributes``, ``describer`` or the embedding head's kind, from the directory itself."""
    fmt = read_format(model_dir)
    if fmt == FORMATS["attributes"]:
        return "attributes"
    if fmt == FORMATS["describer"]:
        return "describer"
    if fmt == FORMATS["lifelong-reid"]:
        return "lifelong-reid"
    if fmt == FORMATS["search"]:
        return read_config(model_dir).get("kind", "search")
    raise ValueError(f"{model_dir} holds no personlens model (format {fmt!r})")


def read_config(model_dir: str | Path) -> dict:
    d = Path(model_dir)
    if not (d / CONFIG_FILE).is_file() or not (d / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"{d} must hold {CONFIG_FILE} and {WEIGHTS_FILE}")
    try:
        cfg = json.loads((d / CONFIG_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{d / CONFIG_FILE} is not valid JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{d / CONFIG_FILE} is not a model config")
    return cfg


def read_weights(model_dir: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """``(config dict, float32 state dict)`` of a model directory."""
    cfg = read_config(model_dir)
    state = {k: v.float() for k, v in load_file(str(Path(model_dir) / WEIGHTS_FILE)).items()}
    return cfg, state


def load_state(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str | Path,
               *, optional: tuple[str, ...] = ()) -> None:
    """``module.load_state_dict(state)`` where keys starting with ``optional`` may be missing
    (frozen parts that are not saved); anything else that does not fit is a clear error."""
    missing, unexpected = module.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(optional)] if optional else missing
    if missing or unexpected:
        raise ValueError(f"{source} does not match its config: missing={missing[:5]} "
                         f"unexpected={unexpected[:5]}")


# --------------------------------------------------------------------------- identity

def _digest_module(h, module: torch.nn.Module) -> None:
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def module_fingerprint(module: torch.nn.Module, config: dict | None = None) -> str:
    """A short hash of a module's weights (and its config, when given)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps(config or {}, sort_keys=True, default=str).encode())
    _digest_module(h, module)
    return h.hexdigest()


def encoder_parts(model) -> tuple[torch.nn.Module, Preprocess]:
    """(image encoder, preprocessing) of a PAR model or of a bare image encoder."""
    config = getattr(model, "config", None)
    if hasattr(model, "encoder") and hasattr(config, "preprocess"):
        return model.encoder, Preprocess.from_dict(config.preprocess)
    return model, model.preprocess


def encoder_fingerprint(model) -> str:
    """What a head's inputs depend on: the image encoder's weights and preprocessing (of a
    PAR model or a bare encoder). Cached on the module: weights are frozen at inference."""
    fp = getattr(model, "_personlens_encoder_fp", None)
    if fp is None:
        enc, pre = encoder_parts(model)
        fp = module_fingerprint(enc, {"encoder": getattr(enc, "name", ""), "preprocess": pre.to_dict()})
        try:
            object.__setattr__(model, "_personlens_encoder_fp", fp)
        except (AttributeError, TypeError):  # pragma: no cover - frozen objects
            pass
    return fp


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class TrainedOn:
    """Which attribute model a head or describer was trained on: the typed compatibility
    record. Heads record the encoder's fingerprint (``notes["encoder_fingerprint"]`` in their
    config), describers the SHA-256 of the PAR weights file (``par_sha256``); both are read
    from the configs as they were always written, so shipped files load unchanged."""

    encoder_fingerprint: str | None = None
    par_sha256: str | None = None

    @classmethod
    def of(cls, config) -> "TrainedOn":
        notes = getattr(config, "notes", None) or {}
        return cls(encoder_fingerprint=notes.get("encoder_fingerprint") or None,
                   par_sha256=getattr(config, "par_sha256", None) or None)

    @property
    def known(self) -> bool:
        return bool(self.encoder_fingerprint or self.par_sha256)

    def fits(self, par_model=None, par_dir: str | Path | None = None) -> bool | None:
        """True/False when the record can be checked against this PAR model (loaded, or its
        directory; ``par_dir=None`` is the shipped one), None when it records nothing."""
        if self.encoder_fingerprint and par_model is not None:
            return self.encoder_fingerprint == encoder_fingerprint(par_model)
        if self.par_sha256:
            d = Path(par_dir) if par_dir is not None else shipped_dir("par-peta")
            return file_sha256(d / WEIGHTS_FILE) == self.par_sha256
        return None


__all__ = ["CONFIG_FILE", "DEFAULT_FOR_KIND", "FORMATS", "KINDS", "PAR_SUBDIR", "SHIPPED",
           "SCORES_FILE", "ShippedModel", "TRANSFER_FILE", "TrainedOn", "VOCAB_FILE", "WEIGHTS_FILE", "encoder_fingerprint",
           "file_sha256", "kind_of", "load_state", "module_fingerprint", "read_config", "read_scores",
           "write_scores",
           "read_weights", "resolve", "save_weights", "shipped", "shipped_default", "shipped_dir",
           "write_config"]
