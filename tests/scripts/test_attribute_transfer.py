"""scripts/attribute_transfer.py: folds' per-attribute AUCs combined into new_cameras.json."""
from __future__ import annotations

import json

import pytest
from script_testlib import load_script

from personlens.models.transfer import read_transfer

script = load_script("scripts/attribute_transfer.py")


def _fold(**rows):
    return {"attribute_auc": {n: {"val": v, "unseen": u, "unseen_positives": p} for n, (v, u, p) in rows.items()}}


def test_folds_are_weighted_by_their_held_out_positives(tmp_path):
    report = {"folds": {"a": _fold(hairLong=(0.9, 0.8, 30), muffler=(0.95, 0.1, 2), rare=(0.9, None, 0)),
                        "b": _fold(hairLong=(0.8, 0.6, 10), muffler=(0.97, 0.7, 38), rare=(0.9, None, 0))}}
    got = script.combine(report)
    assert got["hairLong"] == {"auc_seen": 0.85, "auc_new_cameras": 0.75, "positives": 40}
    # the fold with 2 mufflers barely moves it (a plain mean would say 0.40)
    assert got["muffler"]["auc_new_cameras"] == pytest.approx((0.1 * 2 + 0.7 * 38) / 40, abs=1e-3)
    assert "rare" not in got                         # never positive on a held-out camera

    src = tmp_path / "report.json"
    src.write_text(json.dumps(report))
    assert script.main([str(src), "--out", str(tmp_path)]) == 0
    r = read_transfer(tmp_path)
    assert r.attributes["hairLong"].rating == "holds" and r.attributes["muffler"].rating == "weak"
    assert "attribute_transfer.py" in r.command and "a, b" in r.measured_on


def test_a_report_without_aucs_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no per-attribute AUC"):
        script.combine({"folds": {"a": {"rules": {}}}})
