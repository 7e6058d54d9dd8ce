"""Train a PAR model on cached lower-stage encoder features.

Settings and the best epoch are chosen on the validation split; thresholds are fitted on
it too. The test split is never touched here (``personlens eval attributes`` reports it).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..data.base import PersonDataset
from ..eval.metrics import calibrate_thresholds, par_metrics
from ..inference.adapt import score_statistics
from ..models.factory import build_head, create_image_encoder, create_text_encoder, head_needs
from ..models.par import HeadConfig, PARConfig, PARModel, attribute_prompts
from .checkpoint import (load_checkpoint, remove_checkpoint, rng_state, save_checkpoint,
                         set_rng_state, settings_key)
from ..data.augment import PixelAugment
from .features import augmented_views, build_cache, cache_dir_for, load_cache, pick_views
from .losses import LossConfig, par_loss
from .mixstyle import MixStyleHooks, mix_styles
from .monitor import NEW_PERSONS, build_monitors, monitor_scores, new_persons
from .pseudo import PseudoLabelError, load_teacher, prepare_unlabelled, soft_target_loss
from .sampling import epoch_order, person_balanced_probabilities
from .warm_start import warm_start_head


@dataclass
class TrainConfig:
    encoder: str = "efficientnet_lite0"
    text_encoder: str = "minilm"
    stage: int = 8
    unfreeze_top: bool = True
    head: HeadConfig = field(default_factory=HeadConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    epochs: int = 12
    batch_size: int = 64
    lr: float = 1e-3
    encoder_lr: float = 3e-4
    weight_decay: float = 1e-4
    calibration: str = "joint"
    flip_tta: bool = True
    erase_prob: float = 0.5  # random erasing on the cached feature map (augmentation)
    augment_views: int = 0   # pixel-augmented copies of each image cached beside the clean ones
    augment: dict = field(default_factory=dict)   # PixelAugment fields that differ from its defaults
    mixstyle: float = 0.0    # probability per batch of MixStyle on the top's input and first group
    average_last: float = 0.0  # ship the mean weights of this last fraction of steps (0: best epoch)
    unlabelled: str = ""     # folder of unlabelled crops from other cameras (noisy-student targets)
    teacher: str = ""        # the attribute model that labels them (train.pseudo)
    unlabelled_ratio: float = 0.5   # unlabelled crops per labelled crop in a batch
    unlabelled_weight: float = 1.0  # weight of their loss beside the labelled one
    person_balance: float = 0.0     # draw images with probability ∝ (person's images)^-this (train.sampling)
    select_on: str = "val"   # the epoch kept: best mA + F1 on val, or on val's new people (SELECTION)
    init_head: str = ""      # an attribute model whose head this run's starts from (LP-FT, train.warm_start)
    seed: int = 0
    cache_root: str = "cache/features"
    dataset: str = "peta"
    partition: int = 0
    exclude_subsets: tuple[str, ...] = ()   # PETA sub-datasets left out of train and val


def build_model(cfg: TrainConfig, attributes: list[str], schema, pretrained: bool = True) -> PARModel:
    encoder = create_image_encoder(cfg.encoder, pretrained=pretrained).freeze()
    prompts = None
    uses_prompts, uses_tokens = head_needs(cfg.head.kind)
    if uses_prompts:
        text = create_text_encoder(cfg.text_encoder, pretrained=pretrained).freeze()
        groups = attribute_prompts(schema)
        with torch.inference_mode():
            flat = text.encode([p for g in groups for p in g])
        prompts = flat.view(len(groups), len(groups[0]), -1).clone()
    if uses_tokens and not cfg.head.tokens:   # the position embedding's length
        pre = encoder.preprocess
        with torch.inference_mode():
            cfg.head.tokens = int(encoder(torch.zeros(1, 3, pre.height, pre.width)).shape[1])
    head = build_head(encoder.dim, prompts, len(attributes), cfg.head)
    config = PARConfig(attributes=list(attributes), encoder=cfg.encoder, text_encoder=cfg.text_encoder,
                       stage=cfg.stage, unfreeze_top=cfg.unfreeze_top, head=cfg.head,
                       preprocess=encoder.preprocess.to_dict(), dataset=cfg.dataset,
                       flip_tta=cfg.flip_tta)
    return PARModel(encoder, head, config)


def warmup_cosine(opt: torch.optim.Optimizer, warmup: int, total: int):
    """Step ``s``'s learning-rate factor: linear warm-up over ``warmup`` steps times a cosine
    decay over ``total`` (the two overlap; the schedule of every PAR-family training)."""
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))


_SEQUENCE_FIELDS = ("layers", "d_state", "expand", "scan", "tokens")
_NEWER_FIELDS = {"mixstyle": 0.0, "average_last": 0.0, "unlabelled": "", "teacher": "",
                 "unlabelled_ratio": 0.5, "unlabelled_weight": 1.0, "person_balance": 0.0,
                 "select_on": "val", "init_head": ""}

# --select-on: whose mA + F1 picks the epoch. "val" is the whole val split, whose people are
# mostly trained on (PETA splits images, not people), so it rewards memorising them;
# "new-persons" is the val images of people the train split lacks (``train.monitor``): still
# PETA's cameras and labels, no held-out image, but it stops where new people stop gaining.
# Thresholds are fitted on the whole val split either way.
SELECTION = {"val": None, "new-persons": NEW_PERSONS}


def _key_settings(cfg: TrainConfig) -> dict:
    """The settings a checkpoint is keyed by: the sequence-head fields only for the heads
    that use them, so checkpoints written before those fields existed still resume."""
    d = asdict(cfg)
    for k, default in _NEWER_FIELDS.items():   # unset: keyed as before the field existed
        if d[k] == default:
            d.pop(k)
    if not head_needs(cfg.head.kind)[1]:
        for k in _SEQUENCE_FIELDS:
            d["head"].pop(k, None)
    return d


def run_batched(fn, feats: np.ndarray, idx: np.ndarray, flip: int = 0, batch: int = 256) -> np.ndarray:
    """Apply ``fn`` (no grad) to cached features in batches."""
    out = []
    with torch.inference_mode():
        for i in range(0, len(idx), batch):
            out.append(fn(torch.from_numpy(feats[idx[i:i + batch], flip].astype(np.float32))))
    return torch.cat(out).numpy()


def _erase(h: torch.Tensor, rng: np.random.Generator, prob: float) -> torch.Tensor:
    """Random erasing on cached feature maps: zero a random block of cells per sample."""
    b, _, hh, ww = h.shape
    for i in np.flatnonzero(rng.random(b) < prob):
        eh, ew = rng.integers(2, hh // 2 + 1), rng.integers(2, ww // 2 + 1)
        y, x = rng.integers(0, hh - eh + 1), rng.integers(0, ww - ew + 1)
        h[i, :, y:y + eh, x:x + ew] = 0
    return h


def _precompute_tokens(model: PARModel, feats: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Frozen encoder: its tokens never change, so compute them once, not every epoch."""
    model.encoder.eval()
    up = lambda h: model.encoder.forward_upper(h, model.config.stage).half()  # noqa: E731
    return np.stack([run_batched(up, feats, idx, f) for f in (0, 1)], axis=1)


def _augmented_views(enc, train_paths: list[Path], cfg: "TrainConfig", log) -> np.ndarray:
    """``cfg.augment_views`` pixel-augmented views of each training image, in ``train_paths``
    order (validation images stay clean: the epoch is chosen on what users' crops look like
    before augmentation)."""
    aug = augmented_views(enc, train_paths, cfg.stage, cfg.cache_root, PixelAugment(**cfg.augment),
                          cfg.augment_views, cfg.seed)
    log(f"training on {2 + cfg.augment_views} views per image ({cfg.augment_views} augmented)")
    return aug


def _unlabelled(enc, cfg: "TrainConfig", names: list[str], log):
    """The unlabelled crops, cached and labelled by the teacher (``train.pseudo``)."""
    if not cfg.teacher:
        raise PseudoLabelError("unlabelled crops need a teacher: the attribute model that labels them")
    teacher = load_teacher(cfg.teacher, enc, cfg.stage, names)
    no_swap = PixelAugment(**{**cfg.augment, "background_p": 0.0})   # other datasets' crops have no masks
    return prepare_unlabelled(enc, teacher, cfg.unlabelled, cfg.stage, cfg.cache_root,
                              no_swap, cfg.augment_views, cfg.seed, log)


def _source_models_key(cfg: "TrainConfig") -> dict:
    """A retrained teacher (or starting head) at the same path gives another run: its weights
    key the run too."""
    from ..models.hub import WEIGHTS_FILE, file_sha256

    models = {"teacher_weights": cfg.teacher, "init_head_weights": cfg.init_head}
    return {k: file_sha256(Path(v) / WEIGHTS_FILE) for k, v in models.items() if v}


def _train_batch(feats: np.ndarray, aug: np.ndarray | None, tr_idx: np.ndarray, b: np.ndarray,
                 view: np.ndarray) -> np.ndarray:
    """Rows ``b`` of the training set, each in its view: 0 clean, 1 mirror, 2.. augmented."""
    return pick_views(feats, tr_idx[b], aug, b, view)


def train_par(train_ds: PersonDataset, val_ds: PersonDataset, all_paths: list[Path],
              cfg: TrainConfig, out_dir: Path | None = None, log=print,
              resume: bool = False, monitor: dict[str, PersonDataset] | None = None
              ) -> tuple[PARModel, dict]:
    """Train on ``train_ds`` using a feature cache over ``all_paths`` (which must include both splits).

    Every epoch is also scored on ``monitor``'s labelled sets (and on the val images of people
    the train split lacks, ``val_new_persons``), into the history only (``train.monitor``):
    their images must be among ``all_paths``; nothing is chosen on them.

    With ``out_dir``, a checkpoint is written after every epoch; ``resume=True`` goes on from
    it (same settings and data only), so a killed run re-run loses at most one epoch."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    names = train_ds.schema.names
    model = build_model(cfg, names, train_ds.schema)
    if cfg.init_head:
        warm_start_head(model, cfg.init_head)
        log(f"head starts from {cfg.init_head} (LP-FT)")
    enc = model.encoder
    cache = build_cache(enc, all_paths, cfg.stage, cache_dir_for(Path(cfg.cache_root), enc, cfg.stage))
    feats, meta = load_cache(cache)
    feats = np.ascontiguousarray(feats)  # ~1.6 GB for PETA: random access from RAM, not disk
    pos = {p: i for i, p in enumerate(meta["paths"])}
    aug = _augmented_views(enc, list(train_ds.paths), cfg, log) if cfg.augment_views else None
    un = _unlabelled(enc, cfg, names, log) if cfg.unlabelled else None
    tr_idx = np.array([pos[str(p.resolve())] for p in train_ds.paths])
    va_idx = np.array([pos[str(p.resolve())] for p in val_ds.paths])
    if cfg.select_on not in SELECTION:
        raise ValueError(f"unknown --select-on {cfg.select_on!r}; choose from {', '.join(SELECTION)}")
    monitors = build_monitors({NEW_PERSONS: new_persons(val_ds, train_ds), **(monitor or {})}, pos)
    if SELECTION[cfg.select_on] and all(m.name != SELECTION[cfg.select_on] for m in monitors):
        raise ValueError(f"--select-on {cfg.select_on}: the val split has no image of a person the "
                         "train split lacks (or no person ids); choose on val")
    forward = model.forward_from_stage
    if not cfg.unfreeze_top and (aug is not None or cfg.mixstyle or un is not None):
        raise ValueError("augmented views, MixStyle and unlabelled crops train the encoder's top: "
                         "use unfreeze_top")
    if not cfg.unfreeze_top:
        log("frozen encoder: computing its tokens once")
        rows = np.concatenate([tr_idx, va_idx, *(m.idx for m in monitors)])
        feats = _precompute_tokens(model, feats, rows)
        where = {r: i for i, r in enumerate(rows)}   # a cache row -> its row of the tokens
        tr_idx, va_idx = np.arange(len(tr_idx)), np.arange(len(tr_idx), len(tr_idx) + len(va_idx))
        monitors = [replace(m, idx=np.array([where[r] for r in m.idx])) for m in monitors]
        forward = model.head
    # building the cache draws from torch's generator (DataLoader seeds): seed again, so a run
    # trains the same whether or not the cache was already there
    torch.manual_seed(cfg.seed)
    y_tr = torch.from_numpy(train_ds.labels)
    y_va = val_ds.labels
    pos_rate = y_tr.mean(0)
    n_un = 0 if un is None else max(1, round(cfg.unlabelled_ratio * cfg.batch_size))
    draw = person_balanced_probabilities(train_ds, cfg.person_balance) if cfg.person_balance else None

    params = [{"params": model.head.parameters(), "lr": cfg.lr}]
    if cfg.unfreeze_top:
        top = list(enc.upper_parameters(cfg.stage))
        for p in top:
            p.requires_grad_(True)
        params.append({"params": top, "lr": cfg.encoder_lr})
    opt = torch.optim.AdamW(params, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(tr_idx) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    warmup = steps_per_epoch // 2
    sched = warmup_cosine(opt, warmup, total)
    # the weights of every step from here on are averaged (SWA-style, uniform)
    average_from = total - round(cfg.average_last * total) if cfg.average_last else None
    average, averaged = None, 0
    styles = MixStyleHooks(enc.early_upper_modules(cfg.stage), cfg.mixstyle) if cfg.mixstyle else None

    best, best_state, best_probs, history = -1.0, None, None, []
    # the other --select-on rule's epoch is kept too (OUT/selected-<rule>): the trajectory is the
    # same, so one run gives both models to compare on held-out data
    other = next((r for r, mon in SELECTION.items() if r != cfg.select_on
                  and (mon is None or any(m.name == mon for m in monitors))), None)
    alt = {"best": -1.0, "state": None, "probs": None}
    key = settings_key({"config": _key_settings(cfg), "train": [str(p) for p in train_ds.paths],
                        "val": [str(p) for p in val_ds.paths], **_source_models_key(cfg)})
    start = 0
    ckpt = load_checkpoint(out_dir, key) if resume and out_dir is not None else None
    if ckpt is not None:
        model.load_state_dict(_full_state(model, ckpt["model"]))
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        set_rng_state(rng, ckpt["rng"])
        torch.set_rng_state(ckpt["torch_rng"])
        best, best_state, history = ckpt["best"], ckpt["best_state"], ckpt["history"]
        best_probs = ckpt["best_probs"].numpy()
        if ckpt.get("alt"):         # written since both rules' epochs are kept
            alt = {**ckpt["alt"], "probs": None if ckpt["alt"]["probs"] is None else ckpt["alt"]["probs"].numpy()}
        average, averaged = ckpt.get("average"), ckpt.get("averaged", 0)
        start = int(ckpt["epoch"])
        log(f"resuming after epoch {start} of {cfg.epochs} (best val mA + F1 {best:.2f})")
    t0 = time.time() - (history[-1]["seconds"] if history else 0.0)
    # state_dict tensors share storage with the parameters and buffers, which the optimiser and
    # BatchNorm update in place: one dict, read at every averaged step, not rebuilt per step
    live = model.trainable_state_dict() if average_from is not None else None
    for epoch in range(start, cfg.epochs):
        model.train()
        if not cfg.unfreeze_top:
            enc.eval()  # frozen BatchNorm statistics stay frozen
        order = epoch_order(rng, len(tr_idx), draw)
        running = 0.0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step", leave=False)
        for s in bar:
            b = order[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            view = rng.integers(0, 2 + cfg.augment_views, size=len(b))  # clean, mirror or augmented
            h = _train_batch(feats, aug, tr_idx, b, view)
            if un is not None:   # one forward over both, so BatchNorm and MixStyle see both
                u = rng.integers(0, len(un), size=n_un)
                u_view = rng.integers(0, 2 + cfg.augment_views, size=n_un)
                h = np.concatenate([h, pick_views(un.feats, u, un.aug, u, u_view)])
            h = torch.from_numpy(h.astype(np.float32))
            if cfg.unfreeze_top and cfg.erase_prob:
                h = _erase(h, rng, cfg.erase_prob)
            if cfg.mixstyle:
                h = mix_styles(h, cfg.mixstyle)
            logits = forward(h)
            loss = par_loss(logits[:len(b)], y_tr[b], cfg.loss, pos_rate)
            if un is not None:
                loss = loss + cfg.unlabelled_weight * soft_target_loss(
                    logits[len(b):], torch.from_numpy(un.targets[u]), pos_rate)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if average_from is not None and epoch * steps_per_epoch + s >= average_from:
                average, averaged = _accumulate(average, averaged, live)
            running += loss.item()
            bar.set_postfix(loss=f"{running / (s + 1):.3f}")
        probs = _val_probs(model, forward, feats, va_idx, cfg.flip_tta)
        m = par_metrics(probs, y_va, names)
        watched = monitor_scores(
            monitors, lambda idx: _val_probs(model, forward, feats, idx, cfg.flip_tta),
            calibrate_thresholds(probs, y_va, cfg.calibration), names) if monitors else {}
        history.append({"epoch": epoch + 1, "loss": running / steps_per_epoch, "val_mA": m.mA,
                        "val_f1": m.f1, **watched, "seconds": round(time.time() - t0, 1)})
        log(f"epoch {epoch + 1}: loss {running / steps_per_epoch:.3f}  val mA {m.mA:.2f}  F1 {m.f1:.2f}"
            + "".join(f"  {k} {v:.2f}" for k, v in watched.items() if not k.endswith("_f1")))
        score = _selection_score(history[-1], cfg.select_on)
        if score > best:
            best = score
            best_state = {k: v.detach().clone() for k, v in model.trainable_state_dict().items()}
            best_probs = probs
        other_score = _selection_score(history[-1], other) if other is not None else -1.0
        if other_score > alt["best"]:
            alt = {"best": other_score, "probs": probs,
                   "state": {k: v.detach().clone() for k, v in model.trainable_state_dict().items()}}
        if out_dir is not None:
            save_checkpoint(out_dir, {
                "settings_key": key, "epoch": epoch + 1, "model": model.trainable_state_dict(),
                "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "rng": rng_state(rng), "torch_rng": torch.get_rng_state(), "best": best,
                "best_state": best_state, "best_probs": torch.from_numpy(best_probs),
                "history": history, "average": average, "averaged": averaged,
                "alt": {**alt, "probs": None if alt["probs"] is None else torch.from_numpy(alt["probs"])}})
    if styles is not None:
        styles.remove()
    sizes = {"train_images": len(tr_idx), "val_images": len(va_idx),
             **({"unlabelled_images": len(un)} if un is not None else {})}
    if other is not None and out_dir is not None and alt["state"] is not None:
        model.load_state_dict(_full_state(model, alt["state"]))
        _finish(model, alt["probs"], y_va, replace(cfg, select_on=other), history, sizes,
                Path(out_dir) / f"selected-{other}")
    model.load_state_dict(_full_state(model, best_state))
    if average is None:
        summary = _finish(model, best_probs, y_va, cfg, history, sizes, out_dir)
    else:
        # the epoch-selected model is kept beside the averaged one, for comparison
        _finish(model, best_probs, y_va, cfg, history, sizes,
                None if out_dir is None else Path(out_dir) / "epoch-selected")
        model.load_state_dict(_full_state(model, average))
        probs = _val_probs(model, forward, feats, va_idx, cfg.flip_tta)
        log(f"mean weights of the last {averaged} steps: val mA {par_metrics(probs, y_va, names).mA:.2f}")
        summary = _finish(model, probs, y_va, cfg, history, {**sizes, "averaged_steps": averaged}, out_dir)
    if out_dir is not None:
        remove_checkpoint(out_dir)
    return model, summary


def _finish(model: PARModel, probs: np.ndarray, y_va: np.ndarray, cfg: TrainConfig, history: list,
            extra: dict, out_dir: Path | None) -> dict:
    """Fit the thresholds on the val probabilities ``probs``, note the val scores in the
    model's config and, with ``out_dir``, save the model, its val score statistics and
    ``training.json``; returns that summary."""
    names = model.config.attributes
    th = calibrate_thresholds(probs, y_va, cfg.calibration)
    model.config.thresholds = [float(t) for t in th]
    keys = ("mA", "accuracy", "precision", "recall", "f1")
    val_fixed = par_metrics(probs, y_va, names)
    val_cal = par_metrics(probs, y_va, names, th)
    summary = {"train_config": asdict(cfg), "history": history,
               "val_fixed": {k: getattr(val_fixed, k) for k in keys},
               "val_calibrated": {k: getattr(val_cal, k) for k in keys}, **extra}
    model.config.notes = {"best_epoch": int(np.argmax([_selection_score(h, cfg.select_on) for h in history]) + 1),
                          "selected_on": cfg.select_on,
                          "val_fixed": summary["val_fixed"], "val_calibrated": summary["val_calibrated"],
                          "training_data": {"dataset": cfg.dataset, "partition": cfg.partition,
                                            "exclude_subsets": list(cfg.exclude_subsets)}}
    if "averaged_steps" in extra:
        model.config.notes["averaged_steps"] = extra["averaged_steps"]
    if out_dir is not None:
        from ..models.hub import write_scores
        from ..models.io import save_par

        save_par(model, out_dir)
        write_scores(out_dir, score_statistics(probs, y_va, names, "val"))
        (Path(out_dir) / "training.json").write_text(json.dumps(summary, indent=2))
    return summary


def _selection_score(epoch: dict, rule: str) -> float:
    """mA + F1 of one history row on the set ``--select-on rule`` chooses on."""
    on = SELECTION[rule] or "val"
    return epoch[f"{on}_mA"] + epoch[f"{on}_f1"]


def _val_probs(model: PARModel, forward, feats: np.ndarray, va_idx: np.ndarray, flip_tta: bool) -> np.ndarray:
    model.eval()
    probs = torch.sigmoid(torch.from_numpy(run_batched(forward, feats, va_idx))).numpy()
    if flip_tta:
        probs = (probs + torch.sigmoid(torch.from_numpy(run_batched(forward, feats, va_idx, 1))).numpy()) / 2
    return probs


def _accumulate(mean: dict | None, n: int, state: dict) -> tuple[dict, int]:
    """Running mean of a state dict's float tensors (integer buffers: the latest value)."""
    if mean is None:
        return {k: v.detach().clone() for k, v in state.items()}, 1
    n += 1
    for k, v in state.items():
        if v.is_floating_point():
            mean[k].add_(v.detach() - mean[k], alpha=1.0 / n)
        else:
            mean[k].copy_(v)
    return mean, n


def _full_state(model: PARModel, partial: dict) -> dict:
    state = model.state_dict()
    state.update(partial)
    return state

