"""scripts/unseen_recipes.py: recipes compared on the folds they share, gains on the same folds."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from script_testlib import load_script


@pytest.fixture(scope="module")
def script():
    return load_script("scripts/unseen_recipes.py")


def _report(path: Path, split: str, folds: dict) -> str:
    path.write_text(json.dumps({"protocol": "unseen-cameras", "folds": {
        f: {f"{split}_unseen": {"mA": ma, "f1": ma - 1, **({"mA_core": core} if core else {})}}
        for f, (ma, core) in folds.items()}}))
    return str(path)


def test_gains_are_over_the_folds_every_recipe_has(script, tmp_path):
    a = _report(tmp_path / "a.json", "val", {"grid-mit": (58.0, 60.0), "viper-prid-sarc3d": (57.0, 62.0)})
    a3 = _report(tmp_path / "a3.json", "val", {"ilids-caviar-3dpes": (59.0, 61.0)})
    b = _report(tmp_path / "b.json", "val", {"grid-mit": (61.0, 63.0), "viper-prid-sarc3d": (58.0, None)})
    recipes = dict(script.read_recipe(s, "val") for s in (f"base={a},{a3}", f"new={b}"))
    table = script.compare(recipes)
    assert table["common_folds"] == ["grid-mit", "viper-prid-sarc3d"]      # ilids: only the base has it
    assert table["recipes"]["base"]["mean"]["mA"] == 57.5
    new = table["recipes"]["new"]
    assert new["mean"]["mA"] == 59.5 and new["gain_over_first"]["mA"] == 2.0
    assert new["mean"]["f1"] == 58.5 and new["gain_over_first"]["f1"] == 2.0
    assert new["mean"]["mA_core"] is None and new["gain_over_first"]["mA_core"] is None   # one fold lacks it
    script.plot(table, "val", tmp_path / "t.png")
    assert (tmp_path / "t.png").stat().st_size > 0


def test_bad_specs_and_reports_are_refused(script, tmp_path):
    t = _report(tmp_path / "t.json", "test", {"grid-mit": (58.0, None)})
    with pytest.raises(SystemExit, match="no val_unseen"):
        script.read_recipe(f"x={t}", "val")
    with pytest.raises(SystemExit, match="expected NAME=REPORT"):
        script.read_recipe(t, "test")
    with pytest.raises(SystemExit, match="in two reports"):
        script.read_recipe(f"x={t},{t}", "test")
    (tmp_path / "o.json").write_text(json.dumps({"protocol": "other", "folds": {}}))
    with pytest.raises(SystemExit, match="not an unseen-cameras report"):
        script.read_recipe(f"x={tmp_path / 'o.json'}", "test")
