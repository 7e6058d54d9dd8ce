"""Person-balanced sampling: every person's total weight follows its image count ** (1 - power)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from personlens.data.base import PersonDataset, Sample
from personlens.data.schema import PETA_SCHEMA
from personlens.train.sampling import epoch_order, person_balanced_probabilities


def _dataset(pids):
    names = PETA_SCHEMA.subset(["personalMale"])
    return PersonDataset([Sample(Path(f"{i}.png"), p, 0, np.zeros(1, np.float32))
                          for i, p in enumerate(pids)], names)


def test_power_one_gives_every_person_the_same_weight_and_zero_is_uniform():
    ds = _dataset([7, 7, 7, 7, 3, 5])          # person 7 has four images
    p = person_balanced_probabilities(ds, 1.0)
    assert p.sum() == pytest.approx(1.0)
    assert p[:4].sum() == pytest.approx(p[4]) == pytest.approx(p[5]) == pytest.approx(1 / 3)
    assert person_balanced_probabilities(ds, 0.0) == pytest.approx(np.full(6, 1 / 6))
    half = person_balanced_probabilities(ds, 0.5)
    assert half[:4].sum() / half[4] == pytest.approx(2.0)   # 4 images ** 0.5


def test_bad_power_or_no_images_is_refused():
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        person_balanced_probabilities(_dataset([1]), 1.5)
    with pytest.raises(ValueError, match="no training images"):
        person_balanced_probabilities(_dataset([]), 0.5)


def test_an_epoch_keeps_its_length_and_follows_the_probabilities():
    rng = np.random.default_rng(0)
    assert sorted(epoch_order(rng, 5, None)) == [0, 1, 2, 3, 4]
    draws = np.concatenate([epoch_order(rng, 4, np.array([0.7, 0.1, 0.1, 0.1])) for _ in range(2000)])
    assert len(draws) == 8000
    assert np.mean(draws == 0) == pytest.approx(0.7, abs=0.02)


def test_training_with_person_balance_draws_other_batches(tmp_path):
    from crops_testlib import tiny_par_training
    from personlens.train.par import train_par

    tr, va, cfg = tiny_par_training(tmp_path, ["personalMale", "carryingBackpack"], epochs=1)
    tr = PersonDataset([replace(s, pid=0) if i < 6 else s for i, s in enumerate(tr.samples)], tr.schema)
    train_par(tr, va, tr.paths + va.paths, cfg, log=lambda *_: None)   # builds the feature cache
    _, plain = train_par(tr, va, tr.paths + va.paths, cfg, log=lambda *_: None)
    _, plain2 = train_par(tr, va, tr.paths + va.paths, cfg, log=lambda *_: None)
    _, balanced = train_par(tr, va, tr.paths + va.paths, replace(cfg, person_balance=1.0), log=lambda *_: None)
    assert plain2["history"][0]["loss"] == plain["history"][0]["loss"]
    assert balanced["history"][0]["loss"] != plain["history"][0]["loss"]
    assert balanced["train_config"]["person_balance"] == 1.0
