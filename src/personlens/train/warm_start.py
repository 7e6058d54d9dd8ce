"""LP-FT: fine-tune the encoder from a head already trained on its frozen features.

Kumar et al. (ICLR 2022, "Fine-Tuning can Distort Pretrained Features and Underperform
Out-of-Distribution") show that fine-tuning under a freshly initialised head lets the head's
first, large and random gradients reshape the pretrained features; the features of inputs
unlike the training set (for us: other cameras) move least coherently, and out-of-distribution
accuracy drops. Training the head first on the frozen encoder (``--frozen``, cheap: its tokens
are computed once) and then fine-tuning everything from that head keeps the early gradients
small and meaningful. ``--init-head DIR`` is the second step.
"""
from __future__ import annotations

from pathlib import Path

from ..models.par import PARModel

__all__ = ["WarmStartError", "check_same_layout", "warm_start_head"]


class WarmStartError(ValueError):
    """A model whose head cannot start this run's head (a user's error)."""


def check_same_layout(got, want, label: str) -> None:
    """Refuse the model config ``got`` where its head could not stand for ``want``'s: another
    encoder or input size, other attributes or order, another head kind. (Widths and depths
    are checked when the weights are loaded.)"""
    if got.encoder != want.encoder or got.preprocess != want.preprocess:
        raise WarmStartError(f"{label}: its head reads {got.encoder} tokens at "
                             f"{got.preprocess.get('height')}x{got.preprocess.get('width')}, "
                             f"this run's {want.encoder} at {want.preprocess.get('height')}x"
                             f"{want.preprocess.get('width')}")
    if list(got.attributes) != list(want.attributes):
        raise WarmStartError(f"{label}: it predicts other attributes ({len(got.attributes)} "
                             f"against this run's {len(want.attributes)}, or in another order)")
    if got.head.kind != want.head.kind:
        raise WarmStartError(f"{label}: its head is {got.head.kind}, this run's {want.head.kind}")


def warm_start_head(model: PARModel, path: str | Path) -> None:
    """Load the head of the attribute model at ``path`` into ``model``'s head, in place.

    Only the head moves: the encoder top starts from ImageNet as in any run (with ``--frozen``
    the source never changed it). The source must have the same head (kind and layout), the
    same attributes in the same order and the same encoder, or its weights would mean
    something else here."""
    from ..models.io import load_par

    try:
        src = load_par(path)
    except (FileNotFoundError, KeyError, ValueError) as e:
        raise WarmStartError(f"--init-head {path}: not an attribute model ({e})") from None
    check_same_layout(src.config, model.config, f"--init-head {path}")
    try:
        model.head.load_state_dict(src.head.state_dict())
    except RuntimeError:   # same kind, other layers or widths
        raise WarmStartError(f"--init-head {path}: its {src.config.head.kind} head has another layout "
                             "(layers or widths) than this run's") from None
