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
path list of the same model are reused. Every cache here is a ``personlens.data.cache``
``ArrayCache``: written atomically, and a missing, unreadable or wrong-shaped file is recomputed.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.cache import ArrayCache
from ..data.cache import key as cache_key
from ..data.images import ImageLoadError, Preprocess, load_image
from ..models.hub import module_fingerprint

DEFAULT_CACHE = Path("cache/pooled")

__all__ = ["pooled_features", "model_key", "load_encoder_model", "merge_views",
           "head_embeddings", "mean_pooled_embeddings", "lomo_features", "text_embeddings",
           "PreprocessedImages", "DEFAULT_CACHE", "DEFAULT_TEXT_CACHE"]


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


def cache_namespace(model) -> str:
    """The cache folder of a model's pooled features: its fingerprint and the precision the
    encoder runs at here (features made in bf16 are not the fp32 pipeline's, and the other
    way round), so a cache is never read back by a pass of another precision."""
    from .encode import resolve_precision

    return f"{model_key(model)}-{resolve_precision('auto')}"


def _paths_key(paths: list[str], flip: bool) -> str:
    # insertion order, not sorted: the file names caches have had from the start
    return cache_key({"paths": paths, "flip": flip}, sort_keys=False)


def _existing_rows(cache: ArrayCache, skip: str, views: int, dim: int,
                   n_probs: int | None) -> dict[str, tuple]:
    """path -> (pooled array, probs array or None, row) from the other arrays of ``cache``
    (``n_probs``: the attribute count when probabilities are needed too)."""
    out: dict[str, tuple] = {}
    for name in cache.names():
        meta = cache.load_meta(name)
        if name == skip or meta is None or not isinstance(meta.get("paths"), list):
            continue
        rows = len(meta["paths"])
        arr = cache.load(name, shape=(rows, None, dim), mmap=True)
        probs = cache.load(f"{name}.probs", shape=(rows, n_probs), mmap=True) if n_probs else None
        if arr is None or arr.shape[1] < views or (n_probs and probs is None):
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
    n_probs = len(model.config.attributes) if probs else None
    cache = stem = None
    if cache_root is not None:
        cache = ArrayCache(cache_root, cache_namespace(model))
        stem = _paths_key(paths, flip)
        stem = f"{name}-{stem}" if name else stem
        pooled = cache.load(stem, shape=(n, views, dim))
        pooled_probs = cache.load(f"{stem}.probs", shape=(n, n_probs)) if probs else None
        if pooled is not None and (not probs or pooled_probs is not None):
            return (pooled, pooled_probs) if probs else pooled
    out = np.zeros((n, views, dim), np.float16)
    out_probs = np.zeros((n, n_probs), np.float32) if probs else None
    todo = list(range(n))
    if cache is not None and n:
        known = _existing_rows(cache, stem, views, dim, n_probs)
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
    if cache is not None:
        if probs:
            cache.save(f"{stem}.probs", out_probs)
        cache.save(stem, out, meta={"paths": paths, "flip": flip, "shape": list(out.shape)})
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
    cache = stem = None
    if cache_root is not None:
        cache = ArrayCache(cache_root, cache_key(config.to_dict(), digest_size=8))
        stem = _paths_key(paths, False)
        stem = f"{name}-{stem}" if name else stem
        arr = cache.load(stem, shape=(len(paths), config.dim))
        if arr is not None:
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
    if cache is not None:
        cache.save(stem, arr)
    return arr.astype(np.float32)


class PreprocessedImages(torch.utils.data.Dataset):
    """Image files as preprocessed tensors (``ValueError`` naming a file that cannot be read)."""

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

    # the precision the pipeline runs at on this machine (bf16 where the CPU has it, else fp32)
    enc = EncoderPass(model)
    loader = torch.utils.data.DataLoader(PreprocessedImages(paths, enc.preprocess),
                                         batch_size=batch_size, num_workers=workers)
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
    cache = stem = None
    if cache_root is not None:
        fp = getattr(encoder, "_personlens_fingerprint", None)
        if fp is None:
            fp = module_fingerprint(encoder, {"name": getattr(encoder, "name", "")})
            try:
                object.__setattr__(encoder, "_personlens_fingerprint", fp)
            except Exception:  # pragma: no cover
                pass
        cache, stem = ArrayCache(cache_root, fp), f"{name}-{cache_key(uniq)}"
        emb = cache.load(stem, shape=(len(uniq), None))
        if emb is not None:
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
    if cache is not None:
        cache.save(stem, emb)
    pos = {t: i for i, t in enumerate(uniq)}
    return emb[[pos[t] for t in texts]] if texts else emb
