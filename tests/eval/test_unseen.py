"""The unseen-cameras protocol: folds that really hold sub-datasets out, and the summary."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from personlens.eval.metrics import AttributeResult, PARMetrics
from personlens.eval.unseen import (CORE_ATTRIBUTES, FOLDS, VALIDATION_FOLD, core_mA, fold,
                                    fold_datasets, mean_text, summarise, write_unseen_report)

PETA_ROOT = Path(__file__).resolve().parents[3] / "shared" / "data" / "PETA"


def _metrics(ma, f1, n=10):
    return PARMetrics(mA=ma, accuracy=ma - 5, precision=f1, recall=f1, f1=f1, num_images=n,
                      per_attribute=())


def test_folds_are_disjoint_and_never_the_validation_fold():
    held = [s for f in FOLDS.values() for s in f.held_out]
    assert len(held) == len(set(held)) and len(FOLDS) >= 3
    assert not set(held) & set(VALIDATION_FOLD.held_out) and "TownCentre" not in held
    assert fold("cuhk") is VALIDATION_FOLD
    with pytest.raises(KeyError, match="unknown fold 'x'"):
        fold("x")


@pytest.mark.skipif(not PETA_ROOT.is_dir(), reason="needs ../shared/data/PETA")
def test_fold_datasets_keep_the_held_out_cameras_out_of_training():
    subset_of = {}
    with (PETA_ROOT / "identities.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            subset_of[f"{int(row['index']):05d}"] = row["subset"]
    f = FOLDS["grid-mit"]
    data = fold_datasets(PETA_ROOT, f)
    seen = {subset_of[p.stem] for k in ("train", "val", "test_seen") for p in data[k].paths}
    assert not seen & set(f.held_out)
    assert {subset_of[p.stem] for p in data["test_unseen"].paths} == set(f.held_out)
    train_ids = {s.pid for s in data["train"].samples}
    assert not train_ids & {s.pid for s in data["test_unseen"].samples}
    # validation images of the held-out cameras: only those sub-datasets, none of them a test image
    assert {subset_of[p.stem] for p in data["val_unseen"].paths} == set(f.held_out)
    assert not set(data["val_unseen"].paths) & set(data["test_unseen"].paths)
    assert data["val_seen"] is data["val"]


def test_summary_has_mean_std_and_the_gap(tmp_path):
    per_fold = {"grid-mit": {"test_unseen": _metrics(60, 50), "test_seen": _metrics(80, 70)},
                "viper-prid-sarc3d": {"test_unseen": _metrics(70, 60), "test_seen": _metrics(84, 76)}}
    s = summarise(per_fold)
    assert s["mean"]["test_unseen"]["mA"] == 65 and s["std"]["test_unseen"]["mA"] == 7.07   # sample std
    assert s["mean"]["gap_mA"] == 17
    assert s["folds"]["grid-mit"]["held_out"] == ["GRID", "MIT"]
    plot = write_unseen_report(s, tmp_path / "r.json", {"title": "t"})
    assert plot.is_file() and json.loads((tmp_path / "r.json").read_text())["protocol"] == "unseen-cameras"
    assert mean_text(s, "test_unseen") == "65.00 ± 7.07"
    assert mean_text(s, "test_seen", "f1", digits=1) == "73.0 ± 4.2"


def test_one_fold_is_not_given_a_std_of_zero():
    s = summarise({"viper-prid-sarc3d": {"val_unseen": _metrics(57.84, 55.27)}})
    assert mean_text(s, "val_unseen") == "57.84 (one fold)"
    assert mean_text(s, "val_unseen", "f1") == "55.27 (one fold)"


def test_evaluate_unseen_scores_each_fold_model(tmp_path, par_model_dir, monkeypatch):
    import shutil

    import numpy as np
    from cli_testlib import FIXTURE_ATTRIBUTES
    from crops_testlib import write_crops

    from personlens.data.base import PersonDataset, Sample
    from personlens.data.schema import PETA_SCHEMA
    from personlens.eval import unseen

    names = list(FIXTURE_ATTRIBUTES)
    rng = np.random.default_rng(0)
    paths = write_crops(tmp_path / "crops", 8)
    samples = [Sample(p, i, 0, rng.integers(0, 2, len(names)).astype(np.float32))
               for i, p in enumerate(paths)]
    ds = PersonDataset(samples, PETA_SCHEMA.subset(names))
    monkeypatch.setattr(unseen, "fold_datasets", lambda root, f, attributes, partition=0:
                        {"train": ds, "val": ds, "test_unseen": ds, "test_seen": ds,
                         "val_unseen": PersonDataset(samples[:5], ds.schema), "val_seen": ds})
    shutil.copytree(par_model_dir, tmp_path / "models" / "grid-mit")
    with pytest.raises(FileNotFoundError, match="no model for fold viper-prid-sarc3d"):
        unseen.evaluate_unseen(tmp_path / "models", None, ["viper-prid-sarc3d"], log=lambda *_: None)
    s = unseen.evaluate_unseen(tmp_path / "models", None, ["grid-mit"], log=lambda *_: None)
    fold = s["folds"]["grid-mit"]
    assert fold["test_unseen"]["images"] == 8 and fold["test_unseen"] == fold["test_seen"]
    only = unseen.evaluate_unseen(tmp_path / "models", None, ["grid-mit"], log=lambda *_: None,
                                  seen=False)
    assert "test_seen" not in only["folds"]["grid-mit"] and "gap_mA" not in only["mean"]
    # --split val: the held-out sub-datasets' validation images, no test image
    val = unseen.evaluate_unseen(tmp_path / "models", None, ["grid-mit"], log=lambda *_: None, split="val")
    assert set(val["folds"]["grid-mit"]) == {"held_out", "val_unseen", "val_seen"}
    assert val["folds"]["grid-mit"]["val_unseen"]["images"] == 5
    assert set(val["mean"]) == {"val_unseen", "val_seen", "gap_mA"}
    plot = unseen.write_unseen_report(val, tmp_path / "v.json", {"title": "t"})
    assert plot.is_file()
    with pytest.raises(ValueError, match="split"):
        unseen.evaluate_unseen(tmp_path / "models", None, ["grid-mit"], split="train")


def _with_attributes(ma_of: dict, positives_of: dict, n=10):
    per = tuple(AttributeResult(a, ma, 50, 50, 50, 50, positives_of.get(a, 3), 0.5) for a, ma in ma_of.items())
    return PARMetrics(mA=60, accuracy=50, precision=50, recall=50, f1=50, num_images=n, per_attribute=per)


def test_core_mA_averages_the_six_attributes_that_can_be_scored():
    ma_of = {a: 60.0 + i for i, a in enumerate(CORE_ATTRIBUTES)} | {"upperBodyRed": 99.0}
    assert core_mA(_with_attributes(ma_of, {})) == 62.5           # 60..65; other attributes ignored
    # shorts nobody wears, trousers everybody wears: no balanced accuracy, left out
    m = _with_attributes(ma_of, {"lowerBodyShorts": 0, "lowerBodyTrousers": 10})
    assert core_mA(m) == 61.5                                      # 60..63
    assert core_mA(_with_attributes({"upperBodyRed": 99.0}, {})) is None
    per_fold = {"grid-mit": {"test_unseen": _with_attributes(ma_of, {})},
                "viper-prid-sarc3d": {"test_unseen": m}}
    s = summarise(per_fold)
    assert s["folds"]["grid-mit"]["test_unseen"]["mA_core"] == 62.5
    assert s["mean"]["test_unseen"]["mA_core"] == 62.0 and s["std"]["test_unseen"]["mA_core"] == 0.71
    # a fold without the six (older metrics): no mean of them, the rest as before
    s = summarise({**per_fold, "ilids-caviar-3dpes": {"test_unseen": _metrics(70, 60)}})
    assert "mA_core" not in s["mean"]["test_unseen"] and s["mean"]["test_unseen"]["mA"] == 63.33


def test_the_fold_model_kept_on_a_rule_is_found_or_refused(tmp_path):
    import json as _json

    from personlens.eval.unseen import fold_model_dir

    def model(d, notes):
        d.mkdir(parents=True)
        (d / "config.json").write_text(_json.dumps({"notes": notes}))
        return d

    run = model(tmp_path / "new" / "grid-mit", {"selected_on": "val"})
    alt = model(run / "selected-new-persons", {"selected_on": "new-persons"})
    assert fold_model_dir(run, None) == run and fold_model_dir(run, "val") == run
    assert fold_model_dir(run, "new-persons") == alt
    old = model(tmp_path / "old" / "grid-mit", {"best_epoch": 10})        # before the rules: val
    assert fold_model_dir(old, "val") == old
    with pytest.raises(FileNotFoundError, match="no model whose epoch was kept on 'new-persons'"):
        fold_model_dir(old, "new-persons")
