"""Per-epoch training checkpoints, so that a killed run re-run with ``--resume`` goes on
from the last finished epoch instead of starting again.

A checkpoint holds only tensors, numbers, strings, lists and dicts; it is written to a
temporary file and renamed (a run killed mid-write leaves the previous checkpoint intact)
and read with ``torch.load(weights_only=True)``, which refuses anything but those types:
no pickled code is ever run. A checkpoint records a fingerprint of the run's settings; one
made with other settings is refused rather than mixed in.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

CHECKPOINT_FILE = "checkpoint.pt"


def settings_key(settings: dict) -> str:
    return hashlib.blake2b(json.dumps(settings, sort_keys=True, default=str).encode(),
                           digest_size=12).hexdigest()


def save_checkpoint(out_dir: str | Path, state: dict) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / CHECKPOINT_FILE
    tmp = out_dir / f".{CHECKPOINT_FILE}.{os.getpid()}.tmp"
    torch.save(state, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(out_dir: str | Path, key: str) -> dict | None:
    """The checkpoint in ``out_dir`` (None when there is none); ``ValueError`` when it was
    made by a run with other settings."""
    path = Path(out_dir) / CHECKPOINT_FILE
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("settings_key") != key:
        raise ValueError(f"{path} was written by a run with other settings; remove it or use "
                         f"another --out to start afresh")
    return state


def rng_state(rng: np.random.Generator) -> str:
    return json.dumps(rng.bit_generator.state)


def set_rng_state(rng: np.random.Generator, state: str) -> None:
    rng.bit_generator.state = json.loads(state)


def remove_checkpoint(out_dir: str | Path) -> None:
    """Called when a run has finished and saved its result."""
    (Path(out_dir) / CHECKPOINT_FILE).unlink(missing_ok=True)
