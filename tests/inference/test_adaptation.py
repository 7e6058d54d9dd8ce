"""inference.adaptation: an ``Adaptation``'s files (round trip, identity, refusals, removal)
and ``AttributePredictor.set_adaptation`` switching statistics and thresholds."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from personlens.inference.adapt import AdaptSettings, bn_layers
from personlens.inference.adaptation import (ADAPTATION_FILE, STATS_FILE, Adaptation, AdaptationError,
                                             CameraAdaptation)

NAMES = ["personalMale", "accessoryHat", "carryingBackpack"]
ODD = "cam 1/é"


def _adaptation() -> Adaptation:
    bn = {"0.running_mean": torch.tensor([0.5, -1.25]), "0.running_var": torch.tensor([1.5, 2.0]),
          "layer.3.running_mean": torch.arange(3.0), "layer.3.running_var": torch.ones(3) * 0.25}
    return Adaptation(
        model="abc123", names=list(NAMES), settings=AdaptSettings(bn_prior=4.0, max_shift=1.0),
        cameras={"*": CameraAdaptation(60, np.array([0.1, 0.5, 0.9], np.float32),
                                       np.array([0.2, 0.3, 0.4], np.float32), bn, "2024-01-01T00:00:00Z"),
                 ODD: CameraAdaptation(70, np.array([0.25, 0.45, 0.65], np.float32),
                                       np.array([0.6, 0.1, 0.5], np.float32), None, "2024-01-02T00:00:00Z")})


def test_save_load_round_trip(tmp_path):
    a = _adaptation()
    a.save(tmp_path)
    assert (tmp_path / ADAPTATION_FILE).is_file() and (tmp_path / STATS_FILE).is_file()
    b = Adaptation.load(tmp_path)
    assert (b.model, b.names, b.settings) == ("abc123", NAMES, a.settings)
    assert list(b.cameras) == ["*", ODD]
    for cam, e in a.cameras.items():
        f = b.cameras[cam]
        assert (f.crops, f.created) == (e.crops, e.created)
        np.testing.assert_allclose(f.thresholds, e.thresholds, atol=1e-6)
        np.testing.assert_allclose(f.priors, e.priors, atol=1e-6)
    assert b.cameras[ODD].bn is None
    assert set(b.cameras["*"].bn) == set(a.cameras["*"].bn)
    for k, t in a.cameras["*"].bn.items():
        assert torch.equal(b.cameras["*"].bn[k], t)
    assert b.id == a.id                       # reopening a library keeps its model version
    assert Adaptation.load(tmp_path / "nothing-here") is None


def test_id_follows_thresholds_and_statistics():
    a = _adaptation()
    before = a.id
    a.cameras[ODD].thresholds[1] += 0.01
    after = a.id
    assert after != before
    a.cameras["*"].bn["0.running_var"][0] += 0.5
    assert a.id not in (before, after)


def test_entry_falls_back_to_all_cameras_then_none():
    a = _adaptation()
    assert a.entry(ODD) is a.cameras[ODD]
    assert a.entry("another") is a.cameras["*"] and a.entry(None) is a.cameras["*"]
    del a.cameras["*"]
    assert a.entry("another") is None and a.entry(None) is None and a.entry(ODD) is a.cameras[ODD]


def test_check_refuses_another_model_or_other_names():
    a = _adaptation()
    a.check("abc123", list(NAMES))
    with pytest.raises(AdaptationError, match="another attribute model"):
        a.check("other", list(NAMES))
    with pytest.raises(AdaptationError, match="--reset"):
        a.check("abc123", list(reversed(NAMES)))


def test_unreadable_files_name_the_reset(tmp_path):
    _adaptation().save(tmp_path)
    (tmp_path / STATS_FILE).unlink()
    with pytest.raises(AdaptationError, match="missing.*--reset"):
        Adaptation.load(tmp_path)
    (tmp_path / ADAPTATION_FILE).write_text("{not json")
    with pytest.raises(AdaptationError, match="unreadable.*--reset"):
        Adaptation.load(tmp_path)
    raw = _adaptation()._json()
    del raw["cameras"][0]["thresholds"]
    (tmp_path / ADAPTATION_FILE).write_text(json.dumps(raw))
    with pytest.raises(AdaptationError, match="--reset"):
        Adaptation.load(tmp_path)


def test_remove_deletes_both_files(tmp_path):
    _adaptation().save(tmp_path)
    assert Adaptation.remove(tmp_path) is True
    assert not (tmp_path / ADAPTATION_FILE).exists() and not (tmp_path / STATS_FILE).exists()
    assert Adaptation.remove(tmp_path) is False


# ---------------------------------------------------------------- the predictor
def _bn_buffers(predictor) -> dict[str, torch.Tensor]:
    return {f"{n}.{b}": getattr(m, b).clone() for n, m in bn_layers(predictor.model.encoder).items()
            for b in ("running_mean", "running_var")}


def test_predictor_switches_adaptation_and_restores_the_model(par_model_dir):
    from personlens.inference.predict import AttributePredictor

    p = AttributePredictor(par_model_dir)
    base_th, base_bn = p.thresholds.copy(), _bn_buffers(p)
    n = len(p.names)
    bn = {k: v * 0.5 + 1.0 for k, v in base_bn.items()}
    entry = CameraAdaptation(60, np.full(n, 0.3, np.float32), np.full(n, 0.5, np.float32), bn)
    p.set_adaptation(entry)
    assert p.adapted is entry
    np.testing.assert_array_equal(p.thresholds, entry.thresholds)
    assert p.threshold_map == {name: pytest.approx(0.3) for name in p.names}
    now = _bn_buffers(p)
    assert all(torch.equal(now[k], bn[k]) for k in bn)
    p.set_adaptation(CameraAdaptation(60, np.full(n, 0.7, np.float32), entry.priors, None))
    assert all(torch.equal(v, base_bn[k]) for k, v in _bn_buffers(p).items())   # no statistics: the model's
    np.testing.assert_array_equal(p.thresholds, np.full(n, 0.7, np.float32))
    p.set_adaptation(entry)
    p.set_adaptation(None)
    np.testing.assert_array_equal(p.thresholds, base_th)
    assert p.threshold_map == dict(zip(p.names, base_th.tolist()))
    assert all(torch.equal(v, base_bn[k]) for k, v in _bn_buffers(p).items())
    with pytest.raises(ValueError, match="adapted thresholds"):
        p.set_adaptation(CameraAdaptation(60, np.full(n + 1, 0.3, np.float32), np.zeros(n + 1), None))
