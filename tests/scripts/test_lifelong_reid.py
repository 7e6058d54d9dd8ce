"""scripts/lifelong_reid.py: settings other than the defaults are given by name and typed, so
that a validation run can try them; a wrong name is refused before anything trains."""
from __future__ import annotations

import pytest
from script_testlib import load_script

script = load_script("scripts/lifelong_reid.py")


def test_settings_are_cast_to_their_fields_type():
    got = script.config_overrides(["attr_pull_weight=0", "kd_weight=2", "rehearsal_ids=100"])
    assert got == {"attr_pull_weight": 0.0, "kd_weight": 2.0, "rehearsal_ids": 100}
    assert isinstance(got["rehearsal_ids"], int) and isinstance(got["attr_pull_weight"], float)
    assert script.LifelongConfig(**got).to_dict()["attr_pull_weight"] == 0.0


@pytest.mark.parametrize("bad", ["kd_weigth=2", "kd_weight", "seed=3"])
def test_an_unknown_or_reserved_setting_is_refused(bad):
    with pytest.raises(SystemExit, match="KEY one of .*kd_weight"):
        script.config_overrides([bad])


def test_the_table_shows_a_spread_only_where_several_runs_were_averaged():
    one = {"stores_images": False, "runs": 1, "seen_avg_mAP": {"mean": 35.79, "std": 0.0},
           "gap_closure": {"mean": 0.704, "std": 0.0}}
    two = {"stores_images": True, "runs": 2, "seen_avg_mAP": {"mean": 30.0, "std": 1.5}}
    rows = script.markdown({"vladr_styles": one, "joint": two}, None).splitlines()
    assert rows[2] == "| vladr_styles | no | 35.8 / - | - / - | - | 0.70 | 1 |"
    assert rows[3] == "| joint | yes | 30.0 ± 1.5 / - | - / - | - | - | 2 |"
