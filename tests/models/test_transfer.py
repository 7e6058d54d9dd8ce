"""``new_cameras.json``: per-attribute transfer to cameras never seen, its ratings and the
shipped model's copy (which must be what its command writes)."""
from __future__ import annotations

import json

import pytest
from script_testlib import REPO, load_script

from personlens.models import hub
from personlens.models.transfer import (
    CHANCE_AUC,
    HOLDS_AUC,
    MIN_POSITIVES,
    AttributeTransfer,
    TransferReport,
    read_transfer,
    write_transfer,
)


def _report(**aucs) -> dict:
    return {"measured_on": "test", "command": "none",
            "attributes": {n: {"auc_seen": 0.9, "auc_new_cameras": a, "positives": 50}
                           for n, a in aucs.items()}}


@pytest.mark.parametrize("auc,positives,rating", [
    (HOLDS_AUC, 50, "holds"), (0.95, 50, "holds"), (HOLDS_AUC - 0.001, 50, "weak"),
    (CHANCE_AUC, 50, "weak"), (CHANCE_AUC - 0.001, 50, "near chance"), (0.3, 50, "near chance"),
    (0.95, MIN_POSITIVES - 1, "too few examples"), (0.5, MIN_POSITIVES, "near chance")])
def test_ratings_follow_the_cut_offs(auc, positives, rating):
    assert AttributeTransfer("x", 0.9, auc, positives).rating == rating


def test_round_trip_and_grouping_in_the_callers_order(tmp_path):
    write_transfer(tmp_path, _report(hairLong=0.76, accessoryNothing=0.48, lowerBodyJeans=0.67))
    r = read_transfer(tmp_path)
    assert r.attributes["hairLong"].to_dict() == {"auc_seen": 0.9, "auc_new_cameras": 0.76,
                                                  "positives": 50, "rating": "holds"}
    g = r.by_rating(["lowerBodyJeans", "accessoryNothing", "hairLong", "unknownName"])
    assert g == {"holds": ["hairLong"], "weak": ["lowerBodyJeans"], "near chance": ["accessoryNothing"],
                 "too few examples": []}
    assert json.loads((tmp_path / hub.TRANSFER_FILE).read_text())["measured_on"] == "test"


def test_a_report_for_other_attributes_is_not_shown(tmp_path):
    write_transfer(tmp_path, _report(hairLong=0.76, personalMale=0.75))
    assert read_transfer(tmp_path, ["hairLong", "personalMale"]) is not None
    assert read_transfer(tmp_path, ["hairLong"]) is None                   # a subset model
    assert read_transfer(tmp_path, ["hairLong", "personalMale", "x"]) is None
    assert read_transfer(tmp_path / "nothing-here") is None


@pytest.mark.parametrize("bad,match", [
    ({"attributes": {"a": {"auc_new_cameras": 1.5}}}, "outside"),
    ({"attributes": {"a": {"auc_new_cameras": "nan"}}}, "outside"),
    ({"attributes": {"a": {"positives": 3}}}, "malformed"),
    ({"attributes": {"a": {"auc_new_cameras": "high"}}}, "malformed"),
    ({"attributes": ["a"]}, "no 'attributes'"),
    ([], "no 'attributes'")])
def test_malformed_reports_are_refused_and_not_written(tmp_path, bad, match):
    with pytest.raises(ValueError, match=match):
        TransferReport.from_dict(bad)
    with pytest.raises(ValueError, match=match):
        write_transfer(tmp_path, bad)
    assert not (tmp_path / hub.TRANSFER_FILE).exists()
    (tmp_path / hub.TRANSFER_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="not readable JSON"):
        read_transfer(tmp_path)


def test_the_shipped_file_is_what_its_command_writes(tmp_path):
    """par-peta's new_cameras.json covers its 35 attributes and equals a re-run of the
    command written in it, on the report in docs/results/ (the number's source)."""
    shipped = hub.shipped("par-peta")
    if not shipped.present:
        pytest.skip("this build holds no shipped weights")
    names = json.loads((shipped.path / hub.CONFIG_FILE).read_text())["attributes"]
    report = read_transfer(shipped.path, names)
    assert report is not None and len(report.attributes) == len(names) == 35
    stored = json.loads((shipped.path / hub.TRANSFER_FILE).read_text())
    src = REPO / stored["source"]
    script = load_script("scripts/attribute_transfer.py")
    assert script.main([str(src), "--out", str(tmp_path)]) == 0
    again = json.loads((tmp_path / hub.TRANSFER_FILE).read_text())
    assert again["attributes"] == stored["attributes"]
    g = report.by_rating(names)
    # what docs/results.md states: gender and shorts carry over, V-neck and the age band 31-45 do not
    assert {"personalMale", "lowerBodyShorts"} <= set(g["holds"])
    assert {"upperBodyVNeck", "personalLess45", "accessoryNothing"} <= set(g["near chance"])
