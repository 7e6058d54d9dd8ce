"""WiSE-FT (``train.wise_ft``): weight-space mixes of a linear probe and the model fine-tuned
from it, and ``scripts/wise_ft.py``'s per-fold step (mix, thresholds fitted on val, scored)."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from crops_testlib import tiny_par_training
from personlens.data.images import load_image
from personlens.models.hub import read_config
from personlens.train.par import train_par
from personlens.train.warm_start import WarmStartError
from personlens.train.wise_ft import interpolate_states, wise_ft
from script_testlib import load_script

NAMES = ["personalMale", "carryingBackpack", "accessoryHat"]


def test_interpolate_states_mixes_floats_and_keeps_the_tuned_counters():
    a = {"w": torch.zeros(2), "n": torch.tensor(3)}
    b = {"w": torch.tensor([4.0, 8.0]), "n": torch.tensor(7)}
    mix = interpolate_states(a, b, 0.25)
    torch.testing.assert_close(mix["w"], torch.tensor([1.0, 2.0]))
    assert mix["n"].item() == 7
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        interpolate_states(a, b, 1.5)
    with pytest.raises(WarmStartError, match="other weights: x"):
        interpolate_states(a, {**b, "x": torch.zeros(1)}, 0.5)
    with pytest.raises(WarmStartError, match=r"w: shape \(2,\) against \(3,\)"):
        interpolate_states(a, {**b, "w": torch.zeros(3)}, 0.5)


@pytest.fixture(scope="module")
def ends(tmp_path_factory):
    """A linear probe and the model fine-tuned from it (LP-FT), on 8 tiny crops."""
    root = tmp_path_factory.mktemp("wise")
    tr, va, cfg = tiny_par_training(root, NAMES, epochs=1)
    quiet = dict(log=lambda *_: None)
    probe, _ = train_par(tr, va, tr.paths + va.paths, replace(cfg, unfreeze_top=False),
                         out_dir=root / "probe", **quiet)
    tuned, _ = train_par(tr, va, tr.paths + va.paths, replace(cfg, init_head=str(root / "probe"),
                                                              encoder_lr=0.05), out_dir=root / "tuned", **quiet)
    return tr, va, root, probe.eval(), tuned.eval()


def test_the_ends_of_the_mix_are_the_two_models_and_the_middle_neither(ends):
    tr, _, _, probe, tuned = ends
    x = torch.stack([tuned.encoder.preprocess(load_image(p)) for p in tr.paths[:3]])
    with torch.inference_mode():
        want0, want1 = probe(x), tuned(x)
        assert not torch.allclose(want0, want1, atol=1e-3)   # the top and head did move
        torch.testing.assert_close(wise_ft(probe, tuned, 0.0)(x), want0)
        torch.testing.assert_close(wise_ft(probe, tuned, 1.0)(x), want1)
        mid = wise_ft(probe, tuned, 0.5)(x)
    assert not torch.allclose(mid, want0, atol=1e-3) and not torch.allclose(mid, want1, atol=1e-3)
    assert wise_ft(probe, tuned, 0.5).config.notes["wise_ft"] == {"alpha": 0.5}
    assert tuned.config.notes.get("wise_ft") is None            # the input model is untouched


def test_the_script_writes_each_mix_with_thresholds_fitted_on_val(ends, tmp_path):
    _, va, _, probe, tuned = ends
    script = load_script("scripts/wise_ft.py")
    r = script.mix_fold(probe, tuned, tmp_path / "a0.50", 0.5,
                        {"val": va, "val_unseen": va}, "ma")
    cfg = read_config(tmp_path / "a0.50")
    assert cfg["notes"]["calibration"]["wise_ft_alpha"] == 0.5 and len(cfg["thresholds"]) == 3
    # the same images as val and as held-out val: the same scores at the same thresholds
    assert r["val_unseen"]["mA"] == r["val_seen"]["mA"] and r["val_unseen"]["images"] == len(va)
