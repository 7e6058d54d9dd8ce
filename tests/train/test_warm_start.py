"""LP-FT (``train.warm_start``): a run's head starts from another model's head, and a head that
cannot start it is refused with a clear message."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from crops_testlib import tiny_par_training
from personlens.models.par import HeadConfig
from personlens.train.par import build_model, train_par
from personlens.train.unseen import fold_model
from personlens.train.warm_start import WarmStartError, warm_start_head

NAMES = ["personalMale", "carryingBackpack", "accessoryHat"]


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    """A linear probe: the head trained on the frozen encoder (LP-FT's first step)."""
    root = tmp_path_factory.mktemp("warm")
    tr, va, cfg = tiny_par_training(root, NAMES, epochs=1)
    model, _ = train_par(tr, va, tr.paths + va.paths, replace(cfg, unfreeze_top=False),
                         out_dir=root / "probe", log=lambda *_: None)
    return tr, va, cfg, root, model


def _head(model) -> dict:
    return {k: v.clone() for k, v in model.head.state_dict().items()}


def test_the_head_starts_from_the_probe_and_the_encoder_from_imagenet(probe):
    tr, _, cfg, root, lp = probe
    model = build_model(cfg, NAMES, tr.schema)
    fresh, top = _head(model), {k: v.clone() for k, v in model.encoder.state_dict().items()}
    warm_start_head(model, root / "probe")
    for k, v in _head(model).items():
        torch.testing.assert_close(v, lp.head.state_dict()[k])
    assert any(not torch.equal(v, fresh[k]) for k, v in _head(model).items())
    for k, v in model.encoder.state_dict().items():
        torch.testing.assert_close(v, top[k])


def test_a_run_with_init_head_trains_from_the_probes_head(probe):
    """With every learning rate at 0 the run's head stays the probe's: the warm start is what
    the training starts from (a cold start would ship random head weights)."""
    tr, va, cfg, root, lp = probe
    said = []
    model, _ = train_par(tr, va, tr.paths + va.paths,
                         replace(cfg, init_head=str(root / "probe"), lr=0.0, encoder_lr=0.0),
                         log=said.append)
    assert any("head starts from" in m for m in said)
    for k, v in model.head.state_dict().items():
        torch.testing.assert_close(v, lp.head.state_dict()[k])


def test_a_head_that_cannot_start_this_run_is_refused(probe, tmp_path):
    tr, _, cfg, root, _ = probe
    with pytest.raises(WarmStartError, match="not an attribute model"):
        warm_start_head(build_model(cfg, NAMES, tr.schema), tmp_path)
    with pytest.raises(WarmStartError, match="other attributes"):
        warm_start_head(build_model(cfg, NAMES[:2], tr.schema.subset(NAMES[:2])), root / "probe")
    other = replace(cfg, head=HeadConfig(kind="transformer", layers=1))
    with pytest.raises(WarmStartError, match="its head is linear, this run's transformer"):
        warm_start_head(build_model(other, NAMES, tr.schema), root / "probe")
    lite1 = replace(cfg, encoder="efficientnet_lite1")
    with pytest.raises(WarmStartError, match="reads efficientnet_lite0 tokens"):
        warm_start_head(build_model(lite1, NAMES, tr.schema), root / "probe")


def test_a_transformer_head_of_another_depth_is_refused(tmp_path):
    tr, va, cfg = tiny_par_training(tmp_path, NAMES, epochs=1)
    one = replace(cfg, head=HeadConfig(kind="transformer", layers=1), unfreeze_top=False)
    train_par(tr, va, tr.paths + va.paths, one, out_dir=tmp_path / "one", log=lambda *_: None)
    two = replace(one, head=HeadConfig(kind="transformer", layers=2))
    with pytest.raises(WarmStartError, match="another layout"):
        warm_start_head(build_model(two, NAMES, tr.schema), tmp_path / "one")


def test_each_fold_starts_from_its_own_model(tmp_path):
    (tmp_path / "grid-mit").mkdir()
    with pytest.raises(WarmStartError, match="fold grid-mit: the head to start from must be the fold's own"):
        fold_model(tmp_path, "grid-mit", "head to start from", WarmStartError)
