"""A killed attribute-training run, re-run with resume, ends exactly where an uninterrupted
run ends; a checkpoint from other settings is refused."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from crops_testlib import write_crops
from personlens.data.base import PersonDataset, Sample
from personlens.data.schema import PETA_SCHEMA
from personlens.models.par import HeadConfig
from personlens.train.checkpoint import CHECKPOINT_FILE
from personlens.train.par import TrainConfig, train_par

NAMES = ["personalMale", "carryingBackpack", "accessoryHat"]


class Killed(RuntimeError):
    pass


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("par-resume")
    paths = write_crops(root / "crops", 12)
    rng = np.random.default_rng(0)
    samples = [Sample(p, i, 0, rng.integers(0, 2, len(NAMES)).astype(np.float32))
               for i, p in enumerate(paths)]
    schema = PETA_SCHEMA.subset(NAMES)
    tr, va = PersonDataset(samples[:8], schema), PersonDataset(samples[8:], schema)
    # a linear head: no text encoder to load; the top stages still train
    cfg = TrainConfig(head=HeadConfig(kind="linear"), epochs=3, batch_size=4, stage=14,
                      cache_root=str(root / "cache"), calibration="ma")
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
