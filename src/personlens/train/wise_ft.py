"""WiSE-FT: the weights of a fine-tuned attribute model moved part of the way back to its
linear probe's.

Wortsman et al. (CVPR 2022, "Robust fine-tuning of zero-shot models") average the weights of
a pretrained model and of the same model fine-tuned from it, ``(1 - alpha) * probe + alpha *
fine-tuned``: on data shifted away from the fine-tuning set the average beats both ends, at
no cost at inference (one model, as fast as either end). Both ends must lie in one basin: the
fine-tuned model must have started from the probe (LP-FT, ``train.warm_start``), so that the
probe's head reads the probe's features and the fine-tuned head the fine-tuned ones.

The thresholds of the fine-tuned model do not fit the average; fit them again on the val
split (``scripts/wise_ft.py`` does).
"""
from __future__ import annotations

import copy

import torch

from ..models.par import PARModel
from .warm_start import WarmStartError, check_same_layout

__all__ = ["interpolate_states", "wise_ft"]


def interpolate_states(probe: dict[str, torch.Tensor], tuned: dict[str, torch.Tensor],
                       alpha: float) -> dict[str, torch.Tensor]:
    """``(1 - alpha) * probe + alpha * tuned`` for every floating tensor (BatchNorm statistics
    included); counters (integers) are the fine-tuned model's."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    if probe.keys() != tuned.keys():
        odd = sorted(probe.keys() ^ tuned.keys())
        raise WarmStartError(f"the two models hold other weights: {', '.join(odd[:4])}")
    out = {}
    for k, b in tuned.items():
        a = probe[k]
        if a.shape != b.shape:
            raise WarmStartError(f"{k}: shape {tuple(a.shape)} against {tuple(b.shape)}")
        out[k] = torch.lerp(a.to(b.dtype), b, alpha) if b.is_floating_point() else b.clone()
    return out


def wise_ft(probe: PARModel, tuned: PARModel, alpha: float) -> PARModel:
    """A new model between ``probe`` (alpha 0) and ``tuned`` (alpha 1); ``tuned``'s config,
    with the mix noted. Its thresholds are ``tuned``'s until fitted again."""
    check_same_layout(probe.config, tuned.config, "WiSE-FT")
    model = copy.deepcopy(tuned)
    model.load_state_dict(interpolate_states(probe.state_dict(), tuned.state_dict(), alpha))
    model.config.notes = {**(model.config.notes or {}), "wise_ft": {"alpha": alpha}}
    return model.eval()
