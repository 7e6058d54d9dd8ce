"""Train the describer on cached, frozen PAR-encoder tokens.

1. Token cache: every training/validation image (and its mirror image) goes once through the
   PAR model's encoder; the tokens, pooled to the prefix grid, and the PAR probabilities are
   stored in ``<cache>/describe/`` (float16). When the lower-stage feature cache of
   ``personlens train attributes`` (``<cache>/features/``) already covers the images, only
   the encoder's upper stages run. That cache is only read here, never rewritten.
2. Teacher forcing with cross-entropy (label smoothing), AdamW, linear warm-up + cosine decay;
   a mirrored view is drawn per sample (descriptions do not depend on left/right).
3. The epoch with the lowest validation loss (plain cross-entropy) is kept and saved with
   ``save_describer`` (config.json, model.safetensors, vocab.json, par/).
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..data.cache import ArrayCache
from ..data.cache import key as cache_key
from ..models.describer import (DescriberModel, DescriberConfig, build_describer, check_budget,
                                parameter_counts, pool_tokens, save_describer)
from ..models.generate import DecodeConfig
from ..models.par import PARModel
from ..text.vocab import Vocab
from .features import cache_dir_for, load_cache
from .par import warmup_cosine
from ..inference.encode import resolve_precision


@dataclass
class DescribeTrainConfig:
    decoder: str = "transformer"
    decoder_args: dict = field(default_factory=lambda: {
        "d_model": 256, "layers": 3, "heads": 4, "ff": 1024, "dropout": 0.1, "max_len": 64})
    grid: tuple[int, int] = (4, 3)
    attr_conditioning: bool = True
    attr_tokens: int = 2
    attr_dropout: float = 0.1
    epochs: int = 15
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 0.01
    label_smoothing: float = 0.1
    warmup_steps: int = 300
    min_freq: int = 2
    max_words: int = 48
    augment: float = 0.0          # probability of a varied CaptionGenerator caption as target
    val_generate: int = 300       # val images described greedily at the end (summary only)
    seed: int = 0
    cache_root: str = "cache"
    allow_over_budget: bool = False


@dataclass
class CaptionSet:
    """Images with target texts (the first is the canonical one; others are augmentations)."""
    paths: list[Path]
    texts: list[list[str]]
    labels: np.ndarray | None = None  # (N, 105) PETA labels when known (for the summary)


def peta_caption_set(dataset, augment: int = 0, seed: int = 0) -> CaptionSet:
    """Structured descriptions of a PETA split read with ``attributes="all"`` (+ varied captions)."""
    from ..text.captions import CaptionGenerator, structured_description
    from ..data.schema import PETA_ATTRIBUTE_NAMES

    if list(dataset.schema.names) != list(PETA_ATTRIBUTE_NAMES):
        raise ValueError("describer targets need all 105 PETA attributes (attributes='all')")
    labels = dataset.labels
    gen = CaptionGenerator("train", seed=seed, partial=0.3) if augment else None
    texts = []
    for i, row in enumerate(labels):
        t = [structured_description(row)]
        if gen is not None:
            t += gen.generate(row, augment, key=i)
        texts.append(t)
    return CaptionSet(list(dataset.paths), texts, labels)


def jsonl_caption_set(path) -> CaptionSet:
    from ..data.jsonl import read_jsonl

    pairs = read_jsonl(path, check_images=True)
    return CaptionSet([p.image for p in pairs], [[p.text] for p in pairs])


# --------------------------------------------------------------------------- token cache

def _read_token_cache(cache: ArrayCache, want: list[str], shape: tuple[int, ...], n_attr: int):
    """(pooled memory-mapped, probs) from ``cache`` if it holds exactly ``want``, else None."""
    meta = cache.load_meta("meta")
    if meta is None or meta.get("paths") != want:
        return None
    pooled = cache.load("pooled", shape=shape, mmap=True)
    probs = cache.load("probs", shape=(len(want), 2, n_attr))
    return None if pooled is None or probs is None else (pooled, probs)


def token_cache(par: PARModel, par_sha: str, paths: list[Path], grid: tuple[int, int],
                cache_root: Path, batch_size: int = 64, log=print) -> tuple[np.ndarray, np.ndarray, dict]:
    """(pooled (N, 2, G, C) float16, probs (N, 2, A) float32, {path: row}) for ``paths``,
    cached in ``<cache_root>/describe/<encoder, PAR model, grid and paths>/``."""
    enc = par.encoder
    p = enc.preprocess
    want = [str(Path(x).resolve()) for x in paths]
    rows = {q: i for i, q in enumerate(want)}
    n_attr = len(par.config.attributes)
    shape = (len(want), 2, grid[0] * grid[1], enc.dim)
    folder = f"{enc.name}-{p.height}x{p.width}-par{par_sha[:12]}-g{grid[0]}x{grid[1]}-"
    cache = ArrayCache(Path(cache_root) / "describe", folder + cache_key(want, digest_size=6))
    # caches written before personlens.data.cache named the folder by a sha256 of the paths
    legacy = ArrayCache(Path(cache_root) / "describe",
                        folder + hashlib.sha256("\n".join(want).encode()).hexdigest()[:12])
    for c in (cache, legacy):
        if (hit := _read_token_cache(c, want, shape, n_attr)) is not None:
            return (*hit, rows)
    token_grid = (p.height // 32, p.width // 32)
    lower = _covering_lower_cache(enc, par.config.stage, want, Path(cache_root) / "features")
    enc.eval()
    probs_arr = np.zeros((len(want), 2, n_attr), np.float32)

    def upper(h):  # (b, 2, C, H, W) lower features -> tokens (2b, N, C)
        return enc.forward_upper(h.flatten(0, 1).contiguous(memory_format=torch.channels_last),
                                 par.config.stage)

    if lower is not None:
        feats, index, lower_dir = lower
        log(f"describer cache: upper encoder stages on {lower_dir} for {len(want)} images")
        batches = ((i, torch.from_numpy(np.stack([feats[index[q]] for q in want[i:i + batch_size]])
                                        .astype(np.float32)))
                   for i in range(0, len(want), batch_size))
        run = upper
    else:
        log(f"describer cache: full encoder on {len(want)} images (no covering feature cache)")
        from .features import _Images

        loader = torch.utils.data.DataLoader(_Images(want, enc.preprocess), batch_size=batch_size,
                                             num_workers=1)
        batches = ((i * batch_size, x) for i, x in enumerate(loader))
        run = lambda x: enc(x.flatten(0, 1).contiguous(memory_format=torch.channels_last))  # noqa: E731
    total = math.ceil(len(want) / batch_size)
    cache.meta_path("meta").unlink(missing_ok=True)   # it would describe the old arrays
    with cache.writing("pooled", len(want), np.float16) as pooled_out, torch.inference_mode(), \
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=resolve_precision("auto") == "bf16"):
        for i, x in tqdm(batches, total=total, desc="caching describer tokens", unit="batch"):
            b = x.shape[0]
            tokens = run(x)
            probs = torch.sigmoid(par.head(tokens).float())
            pooled = pool_tokens(tokens.float(), token_grid, grid)
            pooled_out.put(i, pooled.reshape(b, 2, *pooled.shape[1:]).numpy().astype(np.float16))
            probs_arr[i:i + b] = probs.reshape(b, 2, -1).numpy()
    cache.save("probs", probs_arr)
    cache.save_meta("meta", {"paths": want, "par_sha256": par_sha, "grid": list(grid),
                             "attributes": list(par.config.attributes)})
    return cache.load("pooled", mmap=True), probs_arr, rows


def _covering_lower_cache(enc, stage: int, want: list[str], root: Path):
    """(memmapped lower features, {path: row}, dir) if the PAR feature cache holds every image."""
    d = cache_dir_for(root, enc, stage)
    try:
        feats, meta = load_cache(d)
    except (OSError, ValueError):
        return None
    if meta.get("encoder") != enc.name or meta.get("stage") != stage or \
            meta.get("preprocess") != enc.preprocess.to_dict():
        return None
    index = {q: i for i, q in enumerate(meta["paths"])}
    if not all(q in index for q in want):
        return None
    return feats, index, d


# --------------------------------------------------------------------------- training

def _encode(vocab: Vocab, texts: list[str], max_words: int) -> list[list[int]]:
    return [[vocab.bos_id] + vocab.encode(t)[:max_words] + [vocab.eos_id] for t in texts]


def _pad(seqs: list[list[int]], pad: int) -> torch.Tensor:
    n = max(len(s) for s in seqs)
    return torch.tensor([s + [pad] * (n - len(s)) for s in seqs], dtype=torch.long)


def _batch(pooled, probs, rows, views, flip_tta: bool):
    x = torch.from_numpy(np.stack([pooled[r, v] for r, v in zip(rows, views)]).astype(np.float32))
    pr = probs[rows].mean(1) if flip_tta else probs[rows, views]
    return x, torch.from_numpy(np.ascontiguousarray(pr, dtype=np.float32))


def _loss(cap: DescriberModel, x, pr, ids, pad: int, smoothing: float) -> tuple[torch.Tensor, int, int]:
    logits = cap(x, pr, ids[:, :-1])
    tgt = ids[:, 1:]
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=pad,
                           label_smoothing=smoothing)
    mask = tgt != pad
    correct = int(((logits.argmax(-1) == tgt) & mask).sum())
    return loss, correct, int(mask.sum())


def train_describer(train: CaptionSet, val: CaptionSet, cfg: DescribeTrainConfig,
                    par_dir: str | Path | None = None, out_dir: str | Path | None = None,
                    log=print, progress: bool = True) -> tuple[DescriberModel, dict]:
    """Train on ``train``, select the epoch on ``val`` loss, save to ``out_dir``."""
    from ..models.hub import WEIGHTS_FILE, file_sha256, shipped_dir
    from ..models.io import load_par

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    par_dir = Path(par_dir) if par_dir is not None else shipped_dir()
    par = load_par(par_dir)
    par_sha = file_sha256(par_dir / WEIGHTS_FILE)

    vocab = Vocab.build((t for ts in train.texts for t in ts), min_freq=cfg.min_freq)
    p = par.encoder.preprocess
    ccfg = DescriberConfig(decoder=cfg.decoder, decoder_args=dict(cfg.decoder_args),
                           image_dim=par.encoder.dim, token_grid=(p.height // 32, p.width // 32),
                           grid=tuple(cfg.grid), attr_conditioning=cfg.attr_conditioning,
                           attr_tokens=cfg.attr_tokens, attributes=list(par.config.attributes),
                           attr_dropout=cfg.attr_dropout, max_words=cfg.max_words, par_sha256=par_sha)
    cap = build_describer(ccfg, vocab)
    counts = parameter_counts(cap, par)
    if not cfg.allow_over_budget:
        check_budget(counts, cfg.decoder)
    log(f"describer: {cfg.decoder} decoder, vocabulary {len(vocab)} words, "
        f"{counts['total_parameters']:,} parameters with the encoder")

    all_paths = list(dict.fromkeys([*train.paths, *val.paths]))
    pooled, probs, index = token_cache(par, par_sha, all_paths, ccfg.grid, Path(cfg.cache_root),
                                       log=log)
    pooled = np.ascontiguousarray(pooled)  # random access from RAM
    flip_tta = bool(par.config.flip_tta)
    tr_rows = np.array([index[str(Path(q).resolve())] for q in train.paths])
    va_rows = np.array([index[str(Path(q).resolve())] for q in val.paths])
    enc_text = (vocab.encode if cfg.decoder == "transformer" else cap.decoder.encode)
    bos, eos, pad = cap.decoder.bos_id, cap.decoder.eos_id, cap.decoder.pad_id

    def ids_of(t: str) -> list[int]:
        return [bos] + enc_text(t)[:cfg.max_words] + [eos]

    tr_ids = [[ids_of(t) for t in ts] for ts in train.texts]
    va_ids = [ids_of(ts[0]) for ts in val.texts]

    params = [q for q in cap.parameters() if q.requires_grad]
    decay = [q for q in params if q.ndim >= 2]
    no_decay = [q for q in params if q.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    steps_per_epoch = max(1, math.ceil(len(tr_rows) / cfg.batch_size))
    total = cfg.epochs * steps_per_epoch
    warm = max(1, min(cfg.warmup_steps, total // 10 or 1))
    sched = warmup_cosine(opt, warm, total)

    best, best_state, history = float("inf"), None, []
    t0 = time.time()
    for epoch in range(cfg.epochs):
        cap.train()
        order = rng.permutation(len(tr_rows))
        run_loss, run_n = 0.0, 0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step",
                   leave=False, disable=not progress)
        for s in bar:
            b = order[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            views = rng.integers(0, 2, size=len(b))
            seqs = []
            for j in b:
                options = tr_ids[j]
                use_aug = len(options) > 1 and rng.random() < cfg.augment
                seqs.append(options[1 + rng.integers(len(options) - 1)] if use_aug else options[0])
            x, pr = _batch(pooled, probs, tr_rows[b], views, flip_tta)
            loss, _, _ = _loss(cap, x, pr, _pad(seqs, pad), pad, cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            run_loss += loss.item()
            run_n += 1
            bar.set_postfix(loss=f"{run_loss / run_n:.3f}")
        val_loss, val_acc = evaluate_loss(cap, pooled, probs, va_rows, va_ids, pad, flip_tta)
        history.append({"epoch": epoch + 1, "train_loss": run_loss / max(run_n, 1),
                        "val_loss": val_loss, "val_token_accuracy": val_acc,
                        "seconds": round(time.time() - t0, 1)})
        log(f"epoch {epoch + 1}: train loss {run_loss / max(run_n, 1):.3f}  val loss {val_loss:.3f}  "
            f"val token acc {val_acc:.3f}  ({time.time() - t0:.0f} s)")
        if val_loss < best:
            best = val_loss
            best_state = {k: v.detach().clone() for k, v in cap.state_dict().items()}
    if best_state is not None:
        cap.load_state_dict(best_state)
    cap.eval()
    best_epoch = int(np.argmin([h["val_loss"] for h in history]) + 1) if history else 0

    summary = {"train_config": asdict(cfg), "history": history, "best_epoch": best_epoch,
               "parameters": counts, "vocab_size": len(vocab), "train_images": len(tr_rows),
               "val_images": len(va_rows), "par_dir": str(par_dir), "par_sha256": par_sha,
               "seconds": round(time.time() - t0, 1)}
    if cfg.val_generate and len(va_rows):
        summary["val_sample"] = _val_sample(cap, pooled, probs, va_rows, val, cfg.val_generate,
                                            flip_tta)
        ex = summary["val_sample"]["examples"][0]
        log(f"val sample ({summary['val_sample']['images']} images, greedy): exact match "
            f"{summary['val_sample']['exact_match']:.3f}\n  reference: {ex['reference']}\n"
            f"  generated: {ex['generated']}")
    cap.config.notes = {"best_epoch": best_epoch, "val_loss": best if history else None,
                        "vocab_size": len(vocab), "train_images": len(tr_rows),
                        **({"val_sample": {k: v for k, v in summary["val_sample"].items()
                                           if k != "examples"}} if "val_sample" in summary else {})}
    if out_dir is not None:
        save_describer(cap, out_dir, par_dir=par_dir, vocab=vocab if cfg.decoder == "transformer" else None)
        (Path(out_dir) / "training.json").write_text(json.dumps(summary, indent=2))
    return cap, summary


@torch.no_grad()
def evaluate_loss(cap: DescriberModel, pooled, probs, rows, ids, pad: int, flip_tta: bool,
                  batch_size: int = 256) -> tuple[float, float]:
    """Mean token cross-entropy (no smoothing) and token accuracy on the unflipped view."""
    cap.eval()
    tot, n_tok, correct = 0.0, 0, 0
    for i in range(0, len(rows), batch_size):
        r = rows[i:i + batch_size]
        x, pr = _batch(pooled, probs, r, np.zeros(len(r), dtype=np.int64), flip_tta)
        seq = _pad(ids[i:i + batch_size], pad)
        loss, c, n = _loss(cap, x, pr, seq, pad, 0.0)
        tot += loss.item() * n
        n_tok += n
        correct += c
    return tot / max(n_tok, 1), correct / max(n_tok, 1)


@torch.no_grad()
def _val_sample(cap, pooled, probs, rows, val: CaptionSet, n: int, flip_tta: bool) -> dict:
    n = min(n, len(rows))
    texts = []
    for i in range(0, n, 128):
        r = rows[i:min(i + 128, n)]
        x, pr = _batch(pooled, probs, r, np.zeros(len(r), dtype=np.int64), flip_tta)
        texts += cap.generate(x, pr, DecodeConfig(max_len=cap.config.max_words + 1))
    refs = [ts[0] for ts in val.texts[:n]]
    exact = float(np.mean([a.lower() == b.lower() for a, b in zip(texts, refs)]))
    out = {"images": n, "exact_match": exact,
           "examples": [{"reference": r, "generated": t} for r, t in list(zip(refs, texts))[:3]]}
    if val.labels is not None:
        from ..eval.describe import text_field_accuracy

        out["text_attribute_accuracy"] = text_field_accuracy(texts, val.labels[:n])
    return out
