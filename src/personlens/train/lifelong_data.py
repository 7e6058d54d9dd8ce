"""What lifelong re-ID trains on: cached lower-stage features of every domain's images, and the
descriptions of the training crops as MiniLM token states (for VLADR's text side).

* ``LowerFeatures``: one feature cache (``train.features.build_cache``: each image and its
  mirror) over the union of the domains' images; rows are looked up by path.
* ``describe_crops``: the shipped pipeline's description of each crop (from its own attribute
  and description models), so domains without attribute labels (CUHK03) get texts too.
  Cached as JSON by the list of paths.
* ``TextStates``: MiniLM's last hidden states of each distinct description, padded to the
  longest, with masks; a crop's text is a row index. ``attributes`` reads back which PETA
  attributes each description states (``text.consistency.asserted_attributes``), for the
  attribute prototype memory.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..data.cache import key

__all__ = ["LowerFeatures", "describe_crops", "TextStates", "stated_attributes"]


class LowerFeatures:
    def __init__(self, encoder, paths: list[Path], stage: int, cache_root: Path,
                 batch_size: int = 64, tag: str | None = None):
        """``tag``: a cache of its own (a user's images must not replace the protocol's)."""
        from .features import build_cache, cache_dir_for, load_cache

        paths = [Path(p) for p in paths]
        out = cache_dir_for(Path(cache_root), encoder, stage)
        if tag:
            out = out.with_name(f"{out.name}-{tag}")
        build_cache(encoder, paths, stage, out, batch_size=batch_size)
        self.array, meta = load_cache(out)
        self.row = {p: i for i, p in enumerate(meta["paths"])}
        missing = [p for p in paths if str(p.resolve()) not in self.row]
        if missing:
            raise RuntimeError(f"{len(missing)} images missing from the feature cache {out}")

    def rows(self, paths) -> np.ndarray:
        return np.array([self.row[str(Path(p).resolve())] for p in paths], dtype=np.int64)

    def batch(self, rows: np.ndarray, views: np.ndarray) -> torch.Tensor:
        """float32 (B, C, H, W) of ``rows`` in view ``views`` (0 image, 1 mirror)."""
        order = np.argsort(rows, kind="stable")           # memmap reads in file order
        x = np.empty((len(rows), *self.array.shape[2:]), np.float32)
        x[order] = self.array[rows[order], views[order]]
        return torch.from_numpy(x)

    def embed(self, fn, paths, batch: int = 256) -> np.ndarray:
        """``fn`` (lower-stage features -> unit rows) over ``paths``, first view, in batches."""
        rows = self.rows(paths)
        with torch.inference_mode():
            out = [fn(self.batch(rows[i:i + batch], np.zeros(len(rows[i:i + batch]), int)))
                   for i in range(0, len(rows), batch)]
        return torch.cat(out).numpy()


def describe_crops(paths: list[Path], cache_root: Path, progress: bool = True,
                   batch_size: int = 32) -> list[str]:
    """One description per crop from the shipped models (cached)."""
    paths = [str(Path(p).resolve()) for p in paths]
    out = Path(cache_root) / f"descriptions-{key(paths, digest_size=6)}.json"
    if out.exists():
        texts = json.loads(out.read_text())
        if len(texts) == len(paths):
            return texts
    from tqdm import tqdm

    from ..inference.pipeline import PersonPipeline
    from ..inference.batching import PredictionError

    pipe = PersonPipeline(reid_head=None)   # attributes + description; no LOMO work
    texts = []
    for r in tqdm(pipe.records_from_paths(paths, batch_size=batch_size), total=len(paths),
                  desc="describing training crops", unit="crop", disable=not progress):
        if isinstance(r, PredictionError):
            raise RuntimeError(f"cannot describe {r.image}: {r.error}")
        texts.append(r.description or "a person")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(texts))
    return texts


class TextStates:
    """MiniLM token states (U, L, T) float16 of the distinct texts, masks (U, L), and the
    row of each crop's text (``index``)."""

    def __init__(self, texts: list[str], cache_root: Path, text_encoder: str = "minilm",
                 batch_size: int = 128):
        uniq = sorted(set(texts))
        self.texts = uniq
        self._attributes: np.ndarray | None = None
        where = {t: i for i, t in enumerate(uniq)}
        self.index = np.array([where[t] for t in texts], dtype=np.int64)
        path = Path(cache_root) / f"text-states-{text_encoder}-{key(uniq, digest_size=6)}.npz"
        if path.exists():
            z = np.load(path)
            self.states, self.mask = z["states"], z["mask"]
            return
        from ..models.factory import create_text_encoder

        enc = create_text_encoder(text_encoder).freeze()
        chunks, masks = [], []
        with torch.inference_mode():
            for i in range(0, len(uniq), batch_size):
                batch = enc.tokenizer(uniq[i:i + batch_size], padding="max_length", truncation=True,
                                      max_length=enc.max_length, return_tensors="pt")
                chunks.append(enc.model(**batch).last_hidden_state.half().numpy())
                masks.append(batch["attention_mask"].numpy().astype(np.uint8))
        states, mask = np.concatenate(chunks), np.concatenate(masks)
        length = int(mask.sum(1).max())                    # drop the all-padding tail
        self.states, self.mask = states[:, :length], mask[:, :length]
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, states=self.states, mask=self.mask)

    def batch(self, crop_rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        i = self.index[crop_rows]
        return (torch.from_numpy(self.states[i].astype(np.float32)),
                torch.from_numpy(self.mask[i].astype(np.int64)))

    def attributes(self, crop_rows: np.ndarray) -> torch.Tensor:
        """(B, len(ATTRIBUTE_NAMES)) bool: the attributes each crop's description states."""
        if self._attributes is None:
            self._attributes = stated_attributes(self.texts)
        return torch.from_numpy(self._attributes[self.index[crop_rows]])


def stated_attributes(texts: list[str]) -> np.ndarray:
    """(len(texts), len(ATTRIBUTE_NAMES)) bool: the PETA attributes each text says a person
    has (read back as the description metrics do; what a text rules out stays False)."""
    from ..models.lifelong import ATTRIBUTE_NAMES
    from ..text.consistency import asserted_attributes

    col = {a: j for j, a in enumerate(ATTRIBUTE_NAMES)}
    table = np.zeros((len(texts), len(col)), bool)
    for i, t in enumerate(texts):
        for a, yes in asserted_attributes(t).items():
            if yes and a in col:
                table[i, col[a]] = True
    return table
