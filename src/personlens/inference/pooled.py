"""Pooled encoder features: one pass of the (frozen) image encoder per image, cached.

``pooled_features(par, paths)`` runs the PAR model's image encoder (bf16 autocast and
channels_last, as ``personlens.inference.predict`` and ``personlens.inference.pipeline`` do) on every image and
its mirror image and keeps, per view, the mean and the max of the patch tokens::

    pooled[i, v] = [tokens.mean(tokens axis), tokens.amax(tokens axis)]     (2 * C values)

``EmbeddingHead`` pools the tokens before anything else, so a head trained on these arrays
(``head.forward_pooled``) computes exactly what it computes on tokens inside the pipeline
(``pool="meanmax"`` uses both halves, ``pool="mean"`` the first). Training a search or re-ID
head is then a few linear layers on cached vectors: seconds per epoch on a CPU.

The arrays are cached as ``<cache_root>/<model fingerprint>/<name>.npy`` (float16,
``(N, views, 2C)``), keyed by the list of paths (and ``flip``); the attribute probabilities
of the same pass can be kept beside them (``probs=True``). Rows already computed for another
path list of the same model are reused.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.images import ImageLoadError, Preprocess, load_image
from ..models.hub import module_fingerprint

DEFAULT_CACHE = Path("cache/pooled")

__all__ = ["pooled_features", "model_key", "load_encoder_model", "merge_views",
           "head_embeddings", "mean_pooled_embeddings", "lomo_features", "text_embeddings",
           "DEFAULT_CACHE", "DEFAULT_TEXT_CACHE"]


def load_encoder_model(par_dir_or_model):
    """A PAR model (a directory, ``None`` for the shipped one, or a loaded ``PARModel``) or a
    bare ``ImageEncoder``, returned as is when already a module."""
    if isinstance(par_dir_or_model, torch.nn.Module):
        return par_dir_or_model.eval()
    from ..models.io import load_par

    return load_par(par_dir_or_model)


def _parts(model):
    """(encoder, attribute head or None, preprocess, flip_tta, config dict) of a model."""
    from ..models.par import PARModel

    if isinstance(model, PARModel):
        return (model.encoder, model.head, Preprocess.from_dict(model.config.preprocess),
                bool(getattr(model.config, "flip_tta", False)), model.config.to_dict())
    enc = model
    return enc, None, enc.preprocess, False, {"encoder": getattr(enc, "name", type(enc).__name__),
                                               "preprocess": enc.preprocess.to_dict()}


def model_key(model) -> str:
    """Fingerprint of a PAR model (weights and config) or of a bare image encoder."""
    cached = getattr(model, "_personlens_fingerprint", None)
    if cached:
        return cached
    _, _, _, _, cfg = _parts(model)
    fp = module_fingerprint(model, cfg)
    try:
        object.__setattr__(model, "_personlens_fingerprint", fp)
    except Exception:  # pragma: no cover
        pass
    return fp


def _paths_key(paths: list[str], flip: bool) -> str:
    h = hashlib.blake2b(digest_size=10)
    h.update(json.dumps({"paths": paths, "flip": flip}).encode())
    return h.hexdigest()


def _existing_rows(folder: Path, skip: Path, views: int, need_probs: bool) -> dict[str, tuple]:
    """path -> (pooled array, probs array or None, row) from other caches in ``folder``."""
    out: dict[str, tuple] = {}
    for meta_path in sorted(folder.glob("*.json")):
        arr_path = meta_path.with_suffix(".npy")
        if arr_path == skip or not arr_path.exists():
            continue
        try:
            meta = json.loads(meta_path.read_text())
            arr = np.load(arr_path, mmap_mode="r")
            probs_path = meta_path.with_name(meta_path.stem + ".probs.npy")
            probs = np.load(probs_path, mmap_mode="r") if probs_path.exists() else None
        except (OSError, ValueError):
            continue
        if arr.shape[1] < views or (need_probs and probs is None) or arr.shape[0] != len(meta["paths"]):
            continue
        for row, p in enumerate(meta["paths"]):
            out.setdefault(p, (arr, probs, row))
    return out


def pooled_features(par_dir_or_model, paths: Sequence[str | Path], flip: bool = True,
                    batch_size: int = 64, *, cache_root: str | Path | None = DEFAULT_CACHE,
                    name: str | None = None, probs: bool = False, progress: bool = True,
                    workers: int = 0):
    """``(N, 2, 2C)`` float16 [mean, max] of the encoder tokens of each image and its mirror
    (``(N, 1, 2C)`` with ``flip=False``).

    ``par_dir_or_model``: a PAR model directory (``None``: the shipped model), a loaded
    ``PARModel`` or a bare ``ImageEncoder`` (e.g. the ImageNet baseline). With ``probs=True``
    (PAR models only) also returns the attribute probabilities of the same pass, ``(N, A)``
    float32, exactly as the pipeline computes them (averaged over the two views when the
    model has ``flip_tta``, else the plain view). ``cache_root=None`` disables caching.
    Raises ``ValueError`` naming the first image that cannot be read.
    """
    model = load_encoder_model(par_dir_or_model)
    encoder, head, preprocess, flip_tta, _ = _parts(model)
    if probs and head is None:
        raise ValueError("probs=True needs a PAR model (with an attribute head)")
    paths = [str(Path(p).resolve()) for p in paths]
    views = 2 if flip else 1
    n = len(paths)
    dim = 2 * int(encoder.dim)
    arr_path = None
    if cache_root is not None:
        folder = Path(cache_root) / model_key(model)
        stem = _paths_key(paths, flip)
        stem = f"{name}-{stem}" if name else stem
        arr_path = folder / f"{stem}.npy"
        probs_path = folder / f"{stem}.probs.npy"
        if arr_path.exists() and (not probs or probs_path.exists()):
            pooled = np.load(arr_path)
            if pooled.shape == (n, views, dim):
                return (pooled, np.load(probs_path)) if probs else pooled
    out = np.zeros((n, views, dim), np.float16)
    out_probs = np.zeros((n, len(model.config.attributes)), np.float32) if probs else None
    todo = list(range(n))
    if arr_path is not None and arr_path.parent.is_dir() and n:
        known = _existing_rows(arr_path.parent, arr_path, views, probs)
        todo = []
        for i, p in enumerate(paths):
            hit = known.get(p)
            if hit is None:
                todo.append(i)
                continue
            arr, pr, row = hit
            out[i] = arr[row, :views]
            if probs:
                out_probs[i] = pr[row]
    if todo:
        _encode(model, flip, [paths[i] for i in todo], np.asarray(todo), out, out_probs,
                batch_size, progress, workers)
    if arr_path is not None:
        arr_path.parent.mkdir(parents=True, exist_ok=True)
        _save(arr_path, out)
        if probs:
            _save(probs_path, out_probs)
        arr_path.with_suffix(".json").write_text(json.dumps({"paths": paths, "flip": flip,
                                                             "shape": list(out.shape)}))
    return (out, out_probs) if probs else out


def lomo_features(paths: Sequence[str | Path], config=None, *,
                    cache_root: str | Path | None = Path("cache/colour"), name: str | None = None,
                    progress: bool = True, workers: int = 2) -> np.ndarray:
    """``(N, D)`` float32 ``lomo_descriptor``s of images (``personlens.models.lomo``),
    cached as float16 under ``<cache_root>/<config hash>/`` keyed by the path list.
    Raises ``ValueError`` naming the first image that cannot be read."""
    from joblib import Parallel, delayed
    from tqdm import tqdm

    from ..models.lomo import LomoConfig, lomo_descriptor

    config = config or LomoConfig()
    paths = [str(Path(p).resolve()) for p in paths]
    arr_path = None
    if cache_root is not None:
        cfg_key = hashlib.blake2b(json.dumps(config.to_dict(), sort_keys=True).encode(),
                                  digest_size=8).hexdigest()
        stem = _paths_key(paths, False)
        arr_path = Path(cache_root) / cfg_key / (f"{name}-{stem}.npy" if name else f"{stem}.npy")
        if arr_path.exists():
            arr = np.load(arr_path)
            if arr.shape == (len(paths), config.dim):
                return arr.astype(np.float32)

    def one(p):
        try:
            return lomo_descriptor(load_image(p), config).astype(np.float16)
        except ImageLoadError as e:
            raise ValueError(f"cannot read {p}: {e.reason}") from None

    chunks = [paths[i:i + 256] for i in range(0, len(paths), 256)]
    rows = []
    with tqdm(total=len(paths), desc="colour descriptors", unit="img", disable=not progress) as bar:
        for chunk in chunks:
            rows += Parallel(n_jobs=workers)(delayed(one)(p) for p in chunk)
            bar.update(len(chunk))
    arr = np.stack(rows) if rows else np.zeros((0, config.dim), np.float16)
    if arr_path is not None:
        arr_path.parent.mkdir(parents=True, exist_ok=True)
        _save(arr_path, arr)
    return arr.astype(np.float32)


def _save(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, arr)
    tmp.replace(path)


class _Images(torch.utils.data.Dataset):
    def __init__(self, paths, preprocess):
        self.paths, self.preprocess = paths, preprocess

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        try:
            img = load_image(self.paths[i])
        except ImageLoadError as e:
            raise ValueError(f"cannot read {self.paths[i]}: {e.reason}") from None
        return self.preprocess(img)


def _encode(model, flip, paths, rows, out, out_probs, batch_size, progress, workers):
    from tqdm import tqdm

    from .encode import EncoderPass

    # feature caches are always made in bf16 (the precision the pipeline runs at)
    enc = EncoderPass(model)
    loader = torch.utils.data.DataLoader(_Images(paths, enc.preprocess), batch_size=batch_size,
                                         num_workers=workers)
    done = 0
    bar = tqdm(total=len(paths), desc="pooling features", unit="img", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    try:
        for x in loader:
            b = x.shape[0]
            res = enc(x, mirror=flip, probs=out_probs is not None)
            t = res.tokens.float()
            pooled = torch.cat([t.mean(1), t.amax(1)], dim=-1)           # (b * views, 2C)
            idx = rows[done:done + b]
            if res.views == 2 and flip:
                out[idx] = torch.stack([pooled[:b], pooled[b:]], 1).numpy().astype(np.float16)
            else:
                out[idx] = pooled[:b, None].numpy().astype(np.float16)
            if out_probs is not None:
                out_probs[idx] = res.probs
            done += b
            bar.update(b)
    finally:
        bar.close()


# --------------------------------------------------------------------------- embeddings

def merge_views(emb: torch.Tensor, flip_tta: bool) -> torch.Tensor:
    """``(N, V, d)`` per-view outputs -> ``(N, d)`` unit vectors, as the pipeline merges them:
    the average of the two views with ``flip_tta``, else the plain view."""
    e = emb.float()
    e = e[:, :2].mean(1) if flip_tta and e.shape[1] >= 2 else e[:, 0]
    return F.normalize(e, dim=-1)


@torch.inference_mode()
def head_embeddings(head, pooled: np.ndarray, flip_tta: bool, batch_size: int = 4096,
                    colour: np.ndarray | None = None) -> np.ndarray:
    """Pipeline embeddings of an ``EmbeddingHead`` from pooled features: ``(N, embedding_dim)``.
    A head with a colour part needs the images' ``colour`` descriptors ``(N, D)``
    (``personlens.models.lomo.lomo_descriptors``)."""
    head = head.eval()
    needs_lomo = getattr(head, "needs_lomo", False)
    if needs_lomo and (colour is None or len(colour) != len(pooled)):
        raise ValueError("this re-ID head has a LOMO part: pass the images' LOMO descriptors (colour=)")
    out = []
    for s in range(0, len(pooled), batch_size):
        x = torch.from_numpy(np.asarray(pooled[s:s + batch_size], np.float32))
        e = merge_views(head.forward_pooled(x), flip_tta)
        if needs_lomo:
            e = head.add_lomo(e, torch.from_numpy(np.asarray(colour[s:s + batch_size], np.float32)))
        out.append(e)
    return torch.cat(out).numpy() if out else np.zeros((0, head.config.embedding_dim), np.float32)


def mean_pooled_embeddings(pooled: np.ndarray, flip_tta: bool) -> np.ndarray:
    """The re-ID baseline of the pipeline from pooled features: mean-pooled tokens, merged
    over the views like the pipeline does, L2-normalised. ``(N, C)``."""
    c = pooled.shape[-1] // 2
    return merge_views(torch.from_numpy(np.asarray(pooled[..., :c], np.float32)), flip_tta).numpy()


# --------------------------------------------------------------------------- text

DEFAULT_TEXT_CACHE = Path("cache/text")


def text_embeddings(encoder, texts: Sequence[str], cache_root: str | Path | None = DEFAULT_TEXT_CACHE,
                    batch_size: int = 128, progress: bool = True, name: str = "texts") -> np.ndarray:
    """``(len(texts), dim)`` float32 unit vectors from a frozen text encoder.

    Each distinct text is encoded once (sorted by length, so batches carry little padding);
    results are cached under ``<cache_root>/<encoder fingerprint>/<name>-<hash of texts>.npy``.
    """
    from tqdm import tqdm

    texts = list(texts)
    uniq = list(dict.fromkeys(texts))
    path = None
    if cache_root is not None:
        h = hashlib.blake2b(json.dumps(uniq).encode(), digest_size=10).hexdigest()
        fp = getattr(encoder, "_personlens_fingerprint", None)
        if fp is None:
            fp = module_fingerprint(encoder, {"name": getattr(encoder, "name", "")})
            try:
                object.__setattr__(encoder, "_personlens_fingerprint", fp)
            except Exception:  # pragma: no cover
                pass
        path = Path(cache_root) / fp / f"{name}-{h}.npy"
        if path.exists():
            emb = np.load(path)
            if emb.shape[0] == len(uniq):
                pos = {t: i for i, t in enumerate(uniq)}
                return emb[[pos[t] for t in texts]]
    dim = int(getattr(encoder, "dim", 0))
    emb = np.zeros((len(uniq), dim), np.float32) if dim else None
    order = sorted(range(len(uniq)), key=lambda i: len(uniq[i]))
    encoder.eval()
    with torch.inference_mode(), tqdm(total=len(uniq), desc=f"embedding {name}", unit="text",
                                      disable=not progress, file=sys.stderr,
                                      dynamic_ncols=True) as bar:
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            e = encoder.encode([uniq[i] for i in idx], batch_size=batch_size).float().numpy()
            if emb is None:
                emb = np.zeros((len(uniq), e.shape[1]), np.float32)
            emb[idx] = e
            bar.update(len(idx))
    if emb is None:
        emb = np.zeros((0, dim), np.float32)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npy")
        np.save(tmp, emb)
        tmp.replace(path)
    pos = {t: i for i, t in enumerate(uniq)}
    return emb[[pos[t] for t in texts]] if texts else emb
