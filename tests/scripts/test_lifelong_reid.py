"""scripts/lifelong_reid.py: settings other than the defaults are given by name and typed, so
that a validation run can try them; a wrong name is refused before anything trains. The
summary accumulates runs across invocations, keeping only those made with the same settings."""
from __future__ import annotations

import argparse

import pytest
from script_testlib import load_script

script = load_script("scripts/lifelong_reid.py")


def test_settings_are_cast_to_their_fields_type():
    got = script.config_overrides(["attr_pull_weight=0", "kd_weight=2", "rehearsal_ids=100"])
    assert got == {"attr_pull_weight": 0.0, "kd_weight": 2.0, "rehearsal_ids": 100}
    assert isinstance(got["rehearsal_ids"], int) and isinstance(got["attr_pull_weight"], float)
    assert script.LifelongConfig(**got).to_dict()["attr_pull_weight"] == 0.0


def test_a_switch_is_read_as_true_or_false_and_a_bad_value_refused():
    assert script.config_overrides(["style_rectify=False"]) == {"style_rectify": False}
    assert script.config_overrides(["style_rectify=true"]) == {"style_rectify": True}
    assert script.config_overrides(["style_distill=relation"]) == {"style_distill": "relation"}
    with pytest.raises(SystemExit, match="give true or false"):
        script.config_overrides(["style_rectify=1"])
    with pytest.raises(SystemExit, match="'two' is not a float"):
        script.config_overrides(["kd_weight=two"])


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


def _record(name, order, seed, **cfg):
    config = script.run_config(name, order, script.LifelongConfig(seed=seed, **cfg))
    return {"strategy": name, "order": order, "seed": seed, "config": config.to_dict(), "stage": 14,
            "summary": {"seen_avg_mAP": 30.0}}


def test_earlier_runs_with_the_same_settings_are_kept_and_others_dropped():
    args = argparse.Namespace(iterations=script.LifelongConfig.iterations, stage=14, split="test")
    prior = {"runs": {
        "large-to-small-s0": {"joint": _record("joint", "large-to-small", 0),
                              "lwf": _record("lwf", "large-to-small", 0),
                              "vladr_styles": _record("vladr_styles", "large-to-small", 0, kd_weight=7.0),
                              "gone": {"order": "large-to-small", "seed": 0}},
        "small-to-large-s1": {"lwf": _record("lwf", "small-to-large", 1)}}}
    this = {("large-to-small", 0): {"lwf": {"summary": {}}}}          # made now: not replaced
    kept = script.kept_runs(prior, this, {}, args)
    assert kept == {("large-to-small", 0): {"joint": prior["runs"]["large-to-small-s0"]["joint"]},
                    ("small-to-large", 1): {"lwf": prior["runs"]["small-to-large-s1"]["lwf"]}}
    # run with kd_weight=7 the other way round: only that record is kept
    kept = script.kept_runs(prior, {}, {"kd_weight": 7.0}, args)
    assert kept == {("large-to-small", 0): {"vladr_styles": prior["runs"]["large-to-small-s0"]["vladr_styles"]}}
    assert script.kept_runs(prior, {}, {}, argparse.Namespace(**{**vars(args), "stage": 12})) == {}


def test_the_commands_behind_the_summary_stay_while_their_runs_do():
    rec = _record("lwf", "large-to-small", 0)
    prior = {"commands": ["run A"], "runs": {"large-to-small-s0": {"lwf": rec}}}
    assert script.merged_commands(prior, {("large-to-small", 0): {"lwf": rec}}, "run B") == ["run A", "run B"]
    assert script.merged_commands(prior, {("large-to-small", 0): {"lwf": dict(rec)}}, "run B") == ["run B"]
    assert script.merged_commands(prior, {("large-to-small", 0): {"lwf": rec}}, "run A") == ["run A"]
    assert script.merged_commands({"command": "old"}, {}, "new") == ["new"]


def test_the_bounds_are_kept_beside_a_variant_of_a_setting_they_never_read():
    """finetune and joint read no style setting: a --set style variant reads their runs back
    (for its gap closure) and drops only the style strategy's record of other settings."""
    args = argparse.Namespace(iterations=script.LifelongConfig.iterations, stage=14, split="test")
    prior = {"runs": {"small-to-large-s0": {
        "finetune": _record("finetune", "small-to-large", 0),
        "joint": _record("joint", "small-to-large", 0),
        "vladr_styles": _record("vladr_styles", "small-to-large", 0)}}}
    kept = script.kept_runs(prior, {}, {"style_id_weight": 0.5}, args)
    assert sorted(kept[("small-to-large", 0)]) == ["finetune", "joint"]
    # a setting a strategy never reads is recorded at the value it had before it existed
    assert script.run_config("lwf", "small-to-large", script.LifelongConfig(style_id_weight=0.5)) \
        == script.LifelongConfig(style_id_weight=0.0)
    assert script.run_config("vladr_styles", "small-to-large",
                             script.LifelongConfig(style_id_weight=0.5)).style_id_weight == 0.5
    # joint reads no style setting either, whatever today's default (style_id_weight is 1 by
    # default now; its record, made before the setting existed, must still match)
    joint = script.run_config("joint", "small-to-large", script.LifelongConfig())
    assert joint.style_id_weight == 0.0 and joint.iterations == 4 * script.LifelongConfig.iterations
    assert "style_id_weight" not in joint.to_dict()
    # lwf reads the distillation balance, finetune does not
    assert script.run_config("lwf", "small-to-large", script.LifelongConfig(kd_balance_power=0.5)) \
        .kd_balance_power == 0.5
    assert script.run_config("finetune", "small-to-large",
                             script.LifelongConfig(kd_balance_power=0.5)).kd_balance_power == 0.0
