"""Monitors score every epoch on extra labelled sets and steer nothing."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from crops_testlib import tiny_par_training, write_crops
from personlens.data.base import PersonDataset, Sample
from personlens.train.monitor import NEW_PERSONS, new_persons
from personlens.train.par import train_par

NAMES = ["personalMale", "carryingBackpack", "accessoryHat"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("par-monitor")
    tr, va, cfg = tiny_par_training(root, NAMES, epochs=2)
    # val's first two crops show people of the train split: only the other two are new persons
    va = PersonDataset([replace(s, pid=tr.samples[i].pid) if i < 2 else s
                        for i, s in enumerate(va.samples)], va.schema)
    rng = np.random.default_rng(1)
    extra = PersonDataset([Sample(p, 100 + i, 1, rng.integers(0, 2, len(NAMES)).astype(np.float32))
                           for i, p in enumerate(write_crops(root / "extra", 4, start=40))], tr.schema)
    # a run that builds the feature cache ends a few float ulps away from one that loads it:
    # build it first, so that the runs compared below both load it
    train_par(tr, va, tr.paths + va.paths + extra.paths, replace(cfg, epochs=1), log=lambda *_: None)
    return tr, va, extra, cfg


def test_new_persons_are_the_val_images_of_people_train_lacks(data):
    tr, va, _, _ = data
    assert [s.pid for s in new_persons(va, tr).samples] == [s.pid for s in va.samples[2:]]


@pytest.mark.parametrize("unfreeze_top", [True, False])
def test_every_epoch_is_scored_on_the_monitors_and_training_is_unchanged(data, unfreeze_top):
    tr, va, extra, cfg = data
    cfg = replace(cfg, unfreeze_top=unfreeze_top)
    paths = tr.paths + va.paths + extra.paths
    _, watched = train_par(tr, va, paths, cfg, log=lambda *_: None, monitor={"extra": extra})
    _, plain = train_par(tr, va, paths, cfg, log=lambda *_: None)
    for h in watched["history"]:
        for k in (f"{NEW_PERSONS}_mA", f"{NEW_PERSONS}_f1", "extra_mA", "extra_f1", "extra_auc"):
            assert 0.0 <= h[k] <= 100.0, k
    assert "extra_mA" not in plain["history"][0]
    # the same training with or without them (the frozen encoder's tokens of more images are
    # computed in other batches: a few float ulps apart)
    for w, p in zip(watched["history"], plain["history"], strict=True):
        assert (w["epoch"], w["val_mA"], w["val_f1"]) == (p["epoch"], p["val_mA"], p["val_f1"])
        assert w["loss"] == pytest.approx(p["loss"], rel=1e-6)
    assert watched["val_calibrated"] == pytest.approx(plain["val_calibrated"])


def test_a_monitor_outside_the_feature_cache_is_refused(data, tmp_path):
    tr, va, extra, cfg = data
    cfg = replace(cfg, cache_root=str(tmp_path / "cache"))   # a cache of train and val only
    with pytest.raises(ValueError, match="monitor 'extra': 4 images are not in the feature cache"):
        train_par(tr, va, tr.paths + va.paths, cfg, log=lambda *_: None, monitor={"extra": extra})


def test_select_on_new_persons_keeps_their_best_epoch_and_trains_the_same(data):
    """--select-on new-persons: the same epochs as choosing on val, but the kept model is the
    epoch with the best mA + F1 on val's new people (its val probabilities are the ones kept)."""
    tr, va, extra, cfg = data
    cfg = replace(cfg, epochs=4)
    paths = tr.paths + va.paths + extra.paths
    model, on_new = train_par(tr, va, paths, replace(cfg, select_on="new-persons"), log=lambda *_: None)
    _, on_val = train_par(tr, va, paths, cfg, log=lambda *_: None)
    h = on_new["history"]
    assert [x["val_mA"] for x in h] == [x["val_mA"] for x in on_val["history"]]
    new_best = max(range(len(h)), key=lambda i: h[i][f"{NEW_PERSONS}_mA"] + h[i][f"{NEW_PERSONS}_f1"])
    val_best = max(range(len(h)), key=lambda i: h[i]["val_mA"] + h[i]["val_f1"])
    assert new_best != val_best          # the fixture's runs differ, so the rule is what is tested
    assert on_new["val_fixed"]["mA"] == pytest.approx(h[new_best]["val_mA"])
    assert on_val["val_fixed"]["mA"] == pytest.approx(h[val_best]["val_mA"])
    assert model.config.notes["best_epoch"] == new_best + 1 and model.config.notes["selected_on"] == "new-persons"


def test_select_on_is_checked(data):
    tr, va, extra, cfg = data
    with pytest.raises(ValueError, match="unknown --select-on 'test'"):
        train_par(tr, va, tr.paths + va.paths, replace(cfg, select_on="test"), log=lambda *_: None)
    known = PersonDataset([replace(s, pid=tr.samples[0].pid) for s in va.samples], va.schema)
    with pytest.raises(ValueError, match="no image of a person the train split lacks"):
        train_par(tr, known, tr.paths + va.paths, replace(cfg, select_on="new-persons"), log=lambda *_: None)


class Killed(RuntimeError):
    pass


def test_the_other_rules_epoch_is_kept_beside_and_survives_a_resume(data, tmp_path):
    """One run saves both models: OUT (chosen on val) and OUT/selected-new-persons, each the
    epoch its rule picks; a run killed and resumed saves the same two."""
    import torch

    from personlens.models.io import load_par

    tr, va, extra, cfg = data
    cfg = replace(cfg, epochs=4)
    paths = tr.paths + va.paths + extra.paths
    _, full = train_par(tr, va, paths, cfg, out_dir=tmp_path / "full", log=lambda *_: None)
    h = full["history"]
    new_best = max(range(len(h)), key=lambda i: h[i][f"{NEW_PERSONS}_mA"] + h[i][f"{NEW_PERSONS}_f1"])
    main, alt = load_par(tmp_path / "full"), load_par(tmp_path / "full" / "selected-new-persons")
    assert main.config.notes["selected_on"] == "val" and alt.config.notes["selected_on"] == "new-persons"
    assert alt.config.notes["best_epoch"] == new_best + 1 != main.config.notes["best_epoch"]
    assert (tmp_path / "full" / "selected-new-persons" / "val_scores.json").is_file()

    def killed_in_epoch_3(msg):
        if msg.startswith("epoch 3:"):
            raise Killed

    with pytest.raises(Killed):
        train_par(tr, va, paths, cfg, out_dir=tmp_path / "cut", log=killed_in_epoch_3)
    train_par(tr, va, paths, cfg, out_dir=tmp_path / "cut", log=lambda *_: None, resume=True)
    again = load_par(tmp_path / "cut" / "selected-new-persons")
    assert again.config.notes["best_epoch"] == new_best + 1
    for k, v in alt.state_dict().items():
        torch.testing.assert_close(again.state_dict()[k], v, atol=2e-3, rtol=0)
