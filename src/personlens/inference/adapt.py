"""Unsupervised adaptation of an attribute model to new cameras (no labels needed).

Two corrections, both estimated from unlabelled crops of the user's cameras:

1. **Normalisation statistics (AdaBN; Li et al. 2016, with the source prior of Schneider
   et al. 2020).** A BatchNorm layer normalises with the mean and variance it saw in
   training. A new camera (its colour cast, resolution, exposure) moves those statistics, so
   every later layer sees inputs off the distribution it learned. We re-estimate them on the
   new crops and blend with the training statistics, weighting the training ones as
   ``prior`` pseudo-images: ``mu = (prior * mu_src + n * mu_tgt) / (prior + n)``. The
   weights of the network stay as trained.
2. **Thresholds that follow the scores (EM on the predicted probabilities).** On a new
   camera the scores of one attribute move as a whole: the model says "short sleeves" less
   confidently for everyone, and a threshold fitted on PETA then misses most positives.
   Saerens, Latinne & Decaestecker (2002) re-estimate a class prior by EM on predicted
   probabilities and move the decision by the change of prior odds; that corrects a change of
   *base rates*, but mA (balanced accuracy) does not depend on base rates, and when the
   scores themselves drift it moves the threshold the wrong way (measured: docs/results.md).
   So the EM here fits the prior *and* the two class-conditional score distributions: per
   attribute, a two-component Gaussian mixture over the logits of the new crops, started from
   (and regularised towards, ``score_prior`` pseudo-crops per component) the components
   measured on the validation split at training time (``ScoreModel``). The threshold keeps its
   relative place between the two component means. The move is capped (``max_shift`` in
   log-odds) so that a mixture fitted to few or odd crops cannot run away.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = ["AdaptSettings", "ScoreModel", "bn_layers", "bn_statistics", "estimate_bn_statistics",
           "apply_bn_statistics", "em_priors", "score_statistics", "shift_thresholds", "fit_score_mixture",
           "transfer_thresholds"]


@dataclass(frozen=True)
class AdaptSettings:
    """The defaults were chosen on the validation fold (CUHK held out), maximising mA + F1,
    never on the test folds (``scripts/choose_adapt_settings.py``,
    ``docs/results/adapt_settings_validation.json``): re-estimating the normalisation
    statistics raised mA there by 1-1.7 points but cost about 3 points of F1 (it moves the
    scores of every attribute, and the thresholds no longer sit where the F1 trade-off was
    fitted), so it is opt-in; the score mixture with 50 pseudo-crops of source prior was best."""

    normalisation: bool = False   # re-estimate BatchNorm statistics (AdaBN)
    thresholds: bool = True       # move thresholds with the scores
    bn_prior: float = 16.0        # Schneider et al. 2020's recommended source weight N
    threshold_crops: int = 600    # crops whose scores the mixture is fitted on (the rest: time)
    em_iterations: int = 100
    em_tolerance: float = 1e-6
    prior_clip: float = 0.01      # priors kept in [clip, 1 - clip]
    max_shift: float = 1.0        # largest move of a threshold, in log-odds
    score_prior: float = 50.0     # pseudo-crops per component pulling the mixture to the source
    min_crops: int = 50


def bn_layers(module: nn.Module) -> dict[str, nn.modules.batchnorm._BatchNorm]:
    return {name: m for name, m in module.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats}


def bn_statistics(module: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the module's current BatchNorm statistics, as ``apply_bn_statistics`` takes
    them (to restore them after a temporary change)."""
    return {f"{n}.{b}": getattr(m, b).clone() for n, m in bn_layers(module).items()
            for b in ("running_mean", "running_var")}


@torch.no_grad()
def estimate_bn_statistics(encoder: nn.Module, batches, prior: float = 16.0
                           ) -> dict[str, torch.Tensor]:
    """Re-estimate every BatchNorm layer's running mean and variance on ``batches`` (an
    iterable of preprocessed image tensors) and blend them with the current ones.

    Returns a state dict of the new ``running_mean``/``running_var`` buffers; ``encoder`` is
    left exactly as it was (statistics, mode and all)."""
    layers = bn_layers(encoder)
    if not layers:
        raise ValueError("this encoder has no BatchNorm layers to adapt")
    saved = {n: (m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone(),
                 m.momentum, m.training) for n, m in layers.items()}
    was_training = encoder.training
    n_images = 0
    try:
        encoder.eval()
        for m in layers.values():
            m.reset_running_stats()
            m.momentum = None          # cumulative average over all batches
            m.train()
        for x in batches:
            if len(x) < 2:
                continue               # batch statistics of one image are meaningless
            encoder(x)
            n_images += len(x)
        if n_images == 0:
            raise ValueError("no batch of at least two images to estimate statistics from")
        w = n_images / (n_images + prior)
        out = {}
        for n, m in layers.items():
            src_mean, src_var = saved[n][0], saved[n][1]
            out[f"{n}.running_mean"] = (1 - w) * src_mean + w * m.running_mean
            out[f"{n}.running_var"] = (1 - w) * src_var + w * m.running_var
        return out
    finally:
        for n, m in layers.items():
            mean, var, count, momentum, training = saved[n]
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.num_batches_tracked.copy_(count)
            m.momentum = momentum
            m.train(training)
        encoder.train(was_training)


def apply_bn_statistics(encoder: nn.Module, stats: dict[str, torch.Tensor]) -> None:
    """Load statistics from ``estimate_bn_statistics`` into ``encoder`` (in place)."""
    layers = bn_layers(encoder)
    want = {f"{n}.{b}" for n in layers for b in ("running_mean", "running_var")}
    if set(stats) != want:
        missing, extra = sorted(want - set(stats)), sorted(set(stats) - want)
        raise ValueError("normalisation statistics do not fit this encoder "
                         f"(missing {missing[:3]}, unexpected {extra[:3]})")
    for n, m in layers.items():
        for b in ("running_mean", "running_var"):
            t = stats[f"{n}.{b}"]
            if t.shape != getattr(m, b).shape:
                raise ValueError(f"{n}.{b}: shape {tuple(t.shape)} for {tuple(getattr(m, b).shape)}")
            getattr(m, b).copy_(t.to(getattr(m, b).dtype))


def _logit(p):
    p = np.clip(np.asarray(p, np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def em_priors(probs: np.ndarray, source_priors: np.ndarray, settings: AdaptSettings = AdaptSettings()
              ) -> np.ndarray:
    """Saerens et al.'s EM for each binary attribute: the target priors ``(A,)`` that make
    the prior-corrected posteriors of ``probs`` ``(N, A)`` average to themselves."""
    p = np.clip(np.asarray(probs, np.float64), 1e-6, 1 - 1e-6)
    src = np.clip(np.asarray(source_priors, np.float64), settings.prior_clip, 1 - settings.prior_clip)
    if p.ndim != 2 or p.shape[1] != len(src):
        raise ValueError(f"probabilities {p.shape} do not match {len(src)} source priors")
    tgt = src.copy()
    for _ in range(settings.em_iterations):
        pos = tgt / src * p
        neg = (1 - tgt) / (1 - src) * (1 - p)
        new = np.clip((pos / (pos + neg)).mean(0), settings.prior_clip, 1 - settings.prior_clip)
        done = np.abs(new - tgt).max() < settings.em_tolerance
        tgt = new
        if done:
            break
    return tgt


def shift_thresholds(thresholds, source_priors, target_priors, max_shift: float = 2.0) -> np.ndarray:
    """Thresholds on the unadjusted probabilities equivalent to thresholding the
    prior-corrected ones: the decision log-odds move by the change of prior log-odds."""
    shift = np.clip(_logit(target_priors) - _logit(source_priors), -max_shift, max_shift)
    return (1 / (1 + np.exp(-(_logit(thresholds) - shift)))).astype(np.float32)


@dataclass
class ScoreModel:
    """Per attribute: the positive rate and the mean / standard deviation of the logits of
    negatives (0) and positives (1) on the validation split the thresholds were fitted on."""

    prior: np.ndarray
    mu0: np.ndarray
    sd0: np.ndarray
    mu1: np.ndarray
    sd1: np.ndarray

    @classmethod
    def fit(cls, probs: np.ndarray, labels: np.ndarray) -> "ScoreModel":
        z, y = _logit(probs), np.asarray(labels) > 0
        if z.shape != y.shape or z.ndim != 2:
            raise ValueError(f"probabilities {z.shape} and labels {y.shape} must be equal (N, A)")

        def stats(mask):
            n = np.maximum(mask.sum(0), 1)
            mu = (z * mask).sum(0) / n
            sd = np.sqrt(((z - mu) ** 2 * mask).sum(0) / n)
            return mu, np.maximum(sd, 0.1)   # an attribute with one example still gets a width

        (mu0, sd0), (mu1, sd1) = stats(~y), stats(y)
        return cls(y.mean(0), mu0, sd0, mu1, sd1)

    def to_dict(self) -> dict:
        return {k: [round(float(v), 5) for v in getattr(self, k)]
                for k in ("prior", "mu0", "sd0", "mu1", "sd1")}

    @classmethod
    def from_dict(cls, d: dict) -> "ScoreModel":
        arrays = {k: np.asarray(d[k], np.float64) for k in ("prior", "mu0", "sd0", "mu1", "sd1")}
        if len({len(a) for a in arrays.values()}) != 1:
            raise ValueError("score model arrays differ in length")
        return cls(**arrays)

    def __len__(self) -> int:
        return len(self.prior)


def score_statistics(probs: np.ndarray, labels: np.ndarray, names: list[str], split: str) -> dict:
    """What ``models.hub.write_scores`` stores beside an attribute model."""
    return {"attributes": list(names), "split": split, "images": int(len(labels)),
            **ScoreModel.fit(probs, labels).to_dict()}


def _normal(z, mu, sd):
    return np.exp(-0.5 * ((z - mu) / sd) ** 2) / sd


def fit_score_mixture(probs: np.ndarray, source: ScoreModel, settings: AdaptSettings = AdaptSettings()
                      ) -> ScoreModel:
    """The two-component mixture of each attribute's logits on unlabelled crops (EM, MAP
    towards ``source``)."""
    z = _logit(probs)
    if z.ndim != 2 or z.shape[1] != len(source):
        raise ValueError(f"probabilities {z.shape} do not match {len(source)} attributes")
    k, clip = settings.score_prior, settings.prior_clip
    pi = np.clip(source.prior.copy(), clip, 1 - clip)
    mu0, sd0, mu1, sd1 = (source.mu0.copy(), source.sd0.copy(), source.mu1.copy(), source.sd1.copy())
    for _ in range(settings.em_iterations):
        a, b = pi * _normal(z, mu1, sd1), (1 - pi) * _normal(z, mu0, sd0)
        r = a / np.maximum(a + b, 1e-300)                     # P(positive | score)
        n1, n0 = r.sum(0), (1 - r).sum(0)
        new_mu1 = (k * source.mu1 + (r * z).sum(0)) / (k + n1)
        new_mu0 = (k * source.mu0 + ((1 - r) * z).sum(0)) / (k + n0)
        sd1 = np.sqrt((k * source.sd1 ** 2 + (r * (z - new_mu1) ** 2).sum(0)) / (k + n1))
        sd0 = np.sqrt((k * source.sd0 ** 2 + ((1 - r) * (z - new_mu0) ** 2).sum(0)) / (k + n0))
        new_pi = np.clip(r.mean(0), clip, 1 - clip)
        done = max(np.abs(new_mu1 - mu1).max(), np.abs(new_mu0 - mu0).max(),
                   np.abs(new_pi - pi).max()) < settings.em_tolerance
        mu0, mu1, pi = new_mu0, new_mu1, new_pi
        if done:
            break
    return ScoreModel(pi, mu0, np.maximum(sd0, 0.1), mu1, np.maximum(sd1, 0.1))


def transfer_thresholds(thresholds, source: ScoreModel, target: ScoreModel,
                        max_shift: float = 2.0) -> np.ndarray:
    """Each threshold keeps its relative place between the negative and positive component
    means, from the source's components to the target's (capped at ``max_shift`` log-odds).
    An attribute whose target components are not separated keeps its threshold."""
    t = _logit(thresholds)
    gap_s, gap_t = source.mu1 - source.mu0, target.mu1 - target.mu0
    ok = (gap_s > 0.1) & (gap_t > 0.1)
    where = (t - source.mu0) / np.where(ok, gap_s, 1.0)
    moved = np.where(ok, target.mu0 + where * gap_t, t)
    moved = t + np.clip(moved - t, -max_shift, max_shift)
    return (1 / (1 + np.exp(-moved))).astype(np.float32)
