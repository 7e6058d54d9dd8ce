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
