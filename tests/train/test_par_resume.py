"""A killed attribute-training run, re-run with resume, ends exactly where an uninterrupted
run ends; a checkpoint from other settings is refused."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from crops_testlib import tiny_par_training
from personlens.train.checkpoint import CHECKPOINT_FILE
from personlens.train.par import train_par

NAMES = ["personalMale", "carryingBackpack", "accessoryHat"]


class Killed(RuntimeError):
    pass


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("par-resume")
    tr, va, cfg = tiny_par_training(root, NAMES)
    return tr, va, cfg, root


def _train(data, out, **kw):
    tr, va, cfg, _ = data
    return train_par(tr, va, tr.paths + va.paths, kw.pop("cfg", cfg), out_dir=out, **kw)


def test_resume_after_a_kill_matches_an_uninterrupted_run(data, tmp_path):
    full_model, full = _train(data, tmp_path / "full", log=lambda *_: None)

    def killed_in_epoch_2(msg):   # epoch 2's report comes before its checkpoint
        if msg.startswith("epoch 2:"):
            raise Killed

    with pytest.raises(Killed):
        _train(data, tmp_path / "cut", log=killed_in_epoch_2)
    assert (tmp_path / "cut" / CHECKPOINT_FILE).is_file()
    said = []
    model, summary = _train(data, tmp_path / "cut", log=said.append, resume=True)
    assert said[0].startswith("resuming after epoch 1 of 3")
    assert [h["epoch"] for h in summary["history"]] == [1, 2, 3]
    assert [h["val_mA"] for h in summary["history"]] == [h["val_mA"] for h in full["history"]]
    # the same to float noise (a CPU convolution's backward pass sums over threads in any order)
    for k, v in full_model.trainable_state_dict().items():
        torch.testing.assert_close(model.trainable_state_dict()[k], v, atol=2e-3, rtol=0)
    assert not (tmp_path / "cut" / CHECKPOINT_FILE).exists()   # a finished run leaves none


def test_a_checkpoint_from_other_settings_is_refused(data, tmp_path):
    with pytest.raises(Killed):
        _train(data, tmp_path, log=lambda m: (_ for _ in ()).throw(Killed) if m.startswith("epoch 2:") else None)
    other = replace(data[2], lr=5e-4)
    with pytest.raises(ValueError, match="other settings"):
        _train(data, tmp_path, cfg=other, log=lambda *_: None, resume=True)


def test_accumulate_is_the_running_mean_of_float_tensors():
    from personlens.train.par import _accumulate

    states = [{"w": torch.tensor([1.0, 2.0]) * k, "n": torch.tensor(k)} for k in (1, 2, 6)]
    mean, n = None, 0
    for st in states:
        mean, n = _accumulate(mean, n, st)
    assert n == 3
    torch.testing.assert_close(mean["w"], torch.tensor([3.0, 6.0]))
    assert int(mean["n"]) == 6                  # an integer buffer: the latest value
    assert float(states[0]["w"][0]) == 1.0      # the inputs are not changed


def test_weight_averaging_ships_the_mean_and_keeps_the_epoch_selected_model(data, tmp_path):
    from personlens.models.io import load_par

    cfg = replace(data[2], average_last=0.5)
    full_model, full = _train(data, tmp_path / "full", cfg=cfg, log=lambda *_: None)
    assert full["averaged_steps"] == 3                       # the last half of 3 epochs x 2 steps
    selected = load_par(tmp_path / "full" / "epoch-selected")
    shipped = load_par(tmp_path / "full")
    top = [k for k in full_model.trainable_state_dict() if k.startswith("encoder.") and "weight" in k]
    assert top and any(not torch.equal(selected.state_dict()[k], shipped.state_dict()[k]) for k in top)
    assert shipped.config.notes["averaged_steps"] == 3
    # the running mean goes through the checkpoint: a killed run ends where the full one did
    with pytest.raises(Killed):
        _train(data, tmp_path / "cut", cfg=cfg,
               log=lambda m: (_ for _ in ()).throw(Killed) if m.startswith("epoch 3:") else None)
    model, _ = _train(data, tmp_path / "cut", cfg=cfg, log=lambda *_: None, resume=True)
    for k, v in full_model.trainable_state_dict().items():
        torch.testing.assert_close(model.trainable_state_dict()[k], v, atol=2e-3, rtol=0)


def test_mixstyle_trains_and_leaves_no_hook_behind(data, tmp_path):
    from personlens.train.par import _key_settings

    cfg = replace(data[2], mixstyle=1.0)
    model, summary = _train(data, tmp_path, cfg=cfg, log=lambda *_: None)
    assert len(summary["history"]) == 3
    assert all(not b._forward_hooks for b in model.encoder.blocks)
    # runs without the newer settings keep the key their checkpoints were written with
    assert "mixstyle" not in _key_settings(data[2]) and "average_last" not in _key_settings(data[2])
    assert _key_settings(cfg)["mixstyle"] == 1.0
