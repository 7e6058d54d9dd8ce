"""Which training images a step draws: balancing people against their image counts.

PETA's train split is uneven in people: TownCentre gives 37 % of partition 0's training
images from 214 people (16 each, one camera), while CUHK, MIT, PRID, GRID and VIPeR give about
one image per person. Uniform sampling lets the model spend a third of its steps on the same
214 people, which it can memorise, and gives their one camera three quarters as many steps as
those five sub-datasets' cameras together (3,484 against 4,543 images). Drawing
an image with probability proportional to ``n ** -power`` (``n``: its person's images in the
train split) moves weight from repeated people to new ones: ``power`` 0 is uniform, 1 gives
every person the same total weight.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from ..data.base import PersonDataset


def person_balanced_probabilities(train_ds: PersonDataset, power: float) -> np.ndarray:
    """Per training image, the probability of drawing it (sums to 1)."""
    if not 0.0 <= power <= 1.0:
        raise ValueError(f"person balance must be in [0, 1], got {power}")
    pids = [s.pid for s in train_ds.samples]
    if not pids:
        raise ValueError("no training images to sample from")
    counts = Counter(pids)
    w = np.array([counts[p] ** -power for p in pids], np.float64)
    return w / w.sum()


def epoch_order(rng: np.random.Generator, n: int, probabilities: np.ndarray | None) -> np.ndarray:
    """The images of one epoch, ``n`` draws: a permutation when uniform, else drawn with
    replacement by ``probabilities`` (the epoch keeps its number of steps)."""
    if probabilities is None:
        return rng.permutation(n)
    return rng.choice(n, size=n, replace=True, p=probabilities)
