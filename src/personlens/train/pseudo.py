"""Self-training on unlabelled crops from other cameras (noisy student, Xie et al., CVPR 2020).

PETA is the only labelled source, so every camera the attribute model learns from is one of
PETA's. Unlabelled crops from other cameras (e.g. CUHK03's) can still teach it: a *teacher*
(an attribute model trained without them) labels each crop with its probabilities, and the
*student* trains on PETA's labels plus those soft targets, seeing the unlabelled crops through
the same noise as PETA's (pixel-augmented views, erasing, MixStyle) while the teacher saw
them clean. The student so learns to give on a new camera's augmented crops what the teacher
gives on clean ones: invariance to the camera, taught on cameras PETA does not have.

The teacher must share the student's frozen lower stages (same encoder, stage and input
size), because its targets are computed from the same feature cache; on the unseen-camera
protocol it must be the fold's own model (``<teacher>/<fold>``), which never saw the held-out
cameras.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.augment import PixelAugment
from ..data.cache import key
from ..data.images import images_in
from ..models.par import PARModel
from .features import augmented_views, build_cache, cache_dir_for, load_cache
from .losses import imbalance_weights

__all__ = ["PseudoLabelError", "Unlabelled", "unlabelled_images", "check_teacher", "teacher_targets",
           "prepare_unlabelled", "soft_target_loss", "load_teacher"]

class PseudoLabelError(ValueError):
    """Unlabelled crops or a teacher that self-training cannot use (a user's error)."""


@dataclass
class Unlabelled:
    """The unlabelled crops as training needs them: cached clean and mirror features
    ``(N, 2, ...)``, augmented views ``(N, V, ...)`` or ``None``, and the teacher's
    probabilities ``(N, A)``."""

    paths: list[Path]
    feats: np.ndarray
    aug: np.ndarray | None
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)


def unlabelled_images(folder: str | Path) -> list[Path]:
    """Every image under ``folder`` (recursively), sorted; a clear error when there is none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PseudoLabelError(f"unlabelled crops: {folder} is not a folder")
    paths = images_in(folder)
    if len(paths) < 2:
        raise PseudoLabelError(f"unlabelled crops: {folder} holds {len(paths)} images (at least 2 needed)")
    return paths


def check_teacher(teacher: PARModel, encoder_name: str, stage: int, preprocess: dict,
                  attributes: list[str]) -> None:
    """Refuse a teacher whose targets cannot come from the student's feature cache, or that
    predicts other attributes."""
    c = teacher.config
    if c.encoder != encoder_name or c.stage != stage or c.preprocess != preprocess:
        raise PseudoLabelError(
            f"the teacher ({c.encoder}, stage {c.stage}, {c.preprocess.get('height')}x"
            f"{c.preprocess.get('width')}) must share the student's frozen lower stages "
            f"({encoder_name}, stage {stage}, {preprocess.get('height')}x{preprocess.get('width')})")
    if list(c.attributes) != list(attributes):
        raise PseudoLabelError(f"the teacher predicts {len(c.attributes)} attributes "
                               f"({', '.join(c.attributes[:3])}, ...), the student learns {len(attributes)}")


def load_teacher(path: str | Path, encoder, stage: int, attributes: list[str]) -> PARModel:
    """The teacher model at ``path``, checked against the student (``check_teacher``)."""
    from ..models.io import load_par

    try:
        teacher = load_par(path)
    except (FileNotFoundError, KeyError, ValueError) as e:
        raise PseudoLabelError(f"teacher {path}: not an attribute model ({e})") from None
    check_teacher(teacher, encoder.name, stage, encoder.preprocess.to_dict(), attributes)
    return teacher


def teacher_targets(teacher: PARModel, feats: np.ndarray, batch: int = 128) -> np.ndarray:
    """The teacher's probabilities on the clean crops, averaged with their mirrors'."""
    teacher.eval()
    out = np.empty((len(feats), len(teacher.config.attributes)), np.float32)
    with torch.inference_mode():
        for i in range(0, len(feats), batch):
            views = torch.from_numpy(np.asarray(feats[i:i + batch, :2], np.float32))
            p = torch.sigmoid(teacher.forward_from_stage(views.flatten(0, 1)))
            out[i:i + batch] = p.view(len(views), 2, -1).mean(1).numpy()
    return out


def prepare_unlabelled(encoder, teacher: PARModel, folder: str | Path, stage: int, cache_root: str | Path,
                       augment: PixelAugment, views: int, seed: int, log=print) -> Unlabelled:
    """Cache the unlabelled crops' lower-stage features (clean, mirror and ``views``
    augmented views, in folders of their own keyed by the image list) and label them with
    the teacher. A mirror's or an augmented view's target is the clean crop's (flip-averaged):
    the student learns to answer on the noisy view what the teacher answers on the clean one."""
    paths = unlabelled_images(folder)
    base = cache_dir_for(Path(cache_root), encoder, stage)
    clean_dir = base.with_name(f"{base.name}-unlabelled-{key(sorted(str(p.resolve()) for p in paths), digest_size=4)}")
    feats, _ = load_cache(build_cache(encoder, paths, stage, clean_dir))
    feats = np.ascontiguousarray(feats)
    aug = augmented_views(encoder, paths, stage, cache_root, augment, views, seed) if views else None
    targets = teacher_targets(teacher, feats)
    log(f"{len(paths)} unlabelled crops from {folder}; teacher's mean positive rate "
        f"{targets.mean():.3f}")
    return Unlabelled(paths, feats, aug, targets)


def soft_target_loss(logits: torch.Tensor, targets: torch.Tensor, pos_rate: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy against the teacher's probabilities, summed over attributes and
    averaged over the batch (the scale of ``par_loss``); each term is weighted like a label
    of that attribute would be, by the target's mix of the positive and negative weight, so
    that rare attributes keep their weight as in the labelled loss."""
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ")
    w = targets * imbalance_weights(torch.ones_like(targets), pos_rate) \
        + (1 - targets) * imbalance_weights(torch.zeros_like(targets), pos_rate)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return (w * bce).sum(1).mean()
