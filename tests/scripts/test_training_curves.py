"""scripts/training_curves.py: the val-chosen epoch against each monitor's best."""
from __future__ import annotations

import json

import pytest

from script_testlib import load_script


@pytest.fixture(scope="module")
def script():
    return load_script("scripts/training_curves.py")


def _epoch(e, val, unseen):
    return {"epoch": e, "loss": 1.0, "val_mA": val, "val_f1": val, "val_unseen_mA": unseen,
            "val_unseen_f1": unseen, "val_unseen_auc": 60.0}


def test_the_cost_of_choosing_on_val_is_read_at_the_val_chosen_epoch(script, tmp_path):
    run = tmp_path / "grid-mit"
    run.mkdir()
    history = [_epoch(1, 70.0, 58.0), _epoch(2, 80.0, 61.0), _epoch(3, 82.0, 59.5)]
    history[0]["old_only_mA"] = 1.0            # a key not on every epoch is no monitor
    (run / "training.json").write_text(json.dumps({"history": history}))
    s = script.summarise(run)
    assert s["chosen_epoch"] == 3 and list(s["monitors"]) == ["val_unseen"]
    m = s["monitors"]["val_unseen"]
    assert m["best_epoch"] == 2 and m["at_chosen_epoch"]["mA"] == 59.5
    assert m["cost_of_choosing_on_val"] == 1.5
    script.plot([s], tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 0


def test_each_selection_rule_is_read_at_its_epoch_also_from_an_earlier_json(script, tmp_path):
    history = [_epoch(1, 70.0, 58.0), _epoch(2, 80.0, 61.0), _epoch(3, 82.0, 59.5)]
    for h, new in zip(history, (60.0, 75.0, 72.0)):
        h["val_new_persons_mA"] = h["val_new_persons_f1"] = new
        h["val_new_persons_auc"] = 80.0
    s = script.summarise("runs/x/grid-mit", history)
    assert s["rules"]["val"] == {"epoch": 3, "val_new_persons_mA": 72.0, "val_new_persons_f1": 72.0,
                                 "val_unseen_mA": 59.5, "val_unseen_f1": 59.5}
    assert s["rules"]["new-persons"]["epoch"] == 2 and s["rules"]["new-persons"]["val_unseen_mA"] == 61.0
    assert "new-persons" not in script.summarise("r", [_epoch(1, 70.0, 58.0)])["rules"]   # no such scores
    written = tmp_path / "curves.json"
    written.write_text(json.dumps({"runs": [s]}))
    assert script.histories(written) == [("runs/x/grid-mit", history)]
