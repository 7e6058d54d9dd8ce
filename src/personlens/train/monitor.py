"""Per-epoch scores on labelled sets that watch a training run without steering it.

The epoch is chosen on the val split, whose people are mostly also in the train split (PETA's
partitions split images, not identities: 57 % of partition 0's val images show someone the
train split shows). A curve of the same epochs on people never trained on, and, in the
unseen-cameras protocol, on cameras never trained on, says whether that choice favours
memorising PETA's people and cameras. Monitors are written to the run's history; the only
one that may pick anything is ``val_new_persons``, and only when asked (``train attributes
--select-on new-persons`` keeps its best epoch): it is part of PETA's val split. The held-out
cameras' images never pick an epoch, threshold or setting, so they cannot leak into a choice.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.base import PersonDataset
from ..eval.metrics import mean_auc, par_metrics

NEW_PERSONS = "val_new_persons"


@dataclass(frozen=True)
class Monitor:
    name: str
    idx: np.ndarray      # rows of the feature cache
    labels: np.ndarray


def new_persons(val_ds: PersonDataset, train_ds: PersonDataset) -> PersonDataset:
    """The val images whose person id the train split does not have."""
    seen = {s.pid for s in train_ds.samples}
    return PersonDataset([s for s in val_ds.samples if s.pid not in seen], val_ds.schema)


def build_monitors(sets: dict[str, PersonDataset], pos: dict[str, int]) -> list[Monitor]:
    """One ``Monitor`` per non-empty set; ``pos`` maps a resolved image path to its cache row."""
    out = []
    for name, ds in sets.items():
        if not len(ds):
            continue
        missing = [p for p in ds.paths if str(p.resolve()) not in pos]
        if missing:
            raise ValueError(f"monitor {name!r}: {len(missing)} images are not in the feature cache "
                             f"(first: {missing[0]}); pass them among the cached paths")
        out.append(Monitor(name, np.array([pos[str(p.resolve())] for p in ds.paths]), ds.labels))
    return out


def monitor_scores(monitors: list[Monitor], probs_of, thresholds: np.ndarray,
                   names: list[str]) -> dict[str, float]:
    """``<name>_mA`` / ``_f1`` at the thresholds fitted on val this epoch (what ``eval`` would
    report for this epoch's model) and ``<name>_auc``, the mean per-attribute ROC AUC, which
    no threshold moves. ``probs_of(idx)`` gives the model's probabilities for cache rows."""
    out = {}
    for mon in monitors:
        probs = probs_of(mon.idx)
        m = par_metrics(probs, mon.labels, names, thresholds)
        out |= {f"{mon.name}_mA": round(m.mA, 2), f"{mon.name}_f1": round(m.f1, 2),
                f"{mon.name}_auc": round(100 * mean_auc(probs, mon.labels), 2)}
    return out
