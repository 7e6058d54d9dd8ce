"""scripts/ablate_par_heads.py: runs banked in the committed JSON are read back, so the
ablation goes on across machines whose runs/ folder is gone, and no head drops out of it."""
from __future__ import annotations

import json
import shutil

import pytest
from script_testlib import REPO, load_script

script = load_script("scripts/ablate_par_heads.py")
COMMITTED = REPO / "docs/results/par_heads_ablation.json"


def _settings(d: dict) -> dict:
    return {k: d[k] for k in ("encoder", "loss", "epochs", "layers", "tokens")}


def _report(kind, seed, ma):
    m = {k: ma for k in script.METRICS}
    return {"run": {"kind": kind, "seed": seed}, "head_config": {"kind": kind}, "parameters": 10,
            "train_seconds": 60.0, "val_calibrated": m, "test_fixed": m, "test_calibrated": m}


def test_a_summary_only_json_gives_its_one_seed_heads_back_unchanged(tmp_path):
    old = json.loads(COMMITTED.read_text())
    path = tmp_path / "a.json"
    shutil.copy(COMMITTED, path)
    banked = script.banked_reports(path, _settings(old))
    one_seed = {k for k, s in old["heads"].items() if s["seeds"] == 1}
    assert set(banked) == one_seed and one_seed
    for kind, reps in banked.items():
        assert [r["run"]["seed"] for r in reps] == [0] and reps[0]["run"]["epochs"] == old["epochs"]
        again = script.summarise(reps)
        for split in script.SPLITS:
            for k in script.METRICS:
                assert again[split][k]["mean"] == pytest.approx(old["heads"][kind][split][k]["mean"])
    # made with other settings: nothing is read back
    assert script.banked_reports(path, {**_settings(old), "epochs": old["epochs"] + 1}) == {}
    assert script.banked_reports(tmp_path / "missing.json", _settings(old)) == {}


def test_collect_trains_only_what_neither_runs_nor_the_json_holds(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "vim-s1.json").write_text(json.dumps(_report("vim", 1, 70.0)))        # this machine's
    banked = {"linear": [_report("linear", 0, 60.0)],
              "vim": [_report("vim", 0, 80.0), _report("vim", 1, 1.0), _report("vim", 2, 82.0)]}
    trained = []

    def train(kind, seed):
        trained.append((kind, seed))
        return _report(kind, seed, 50.0)

    got = script.collect(["hybrid", "vim"], 2, runs, banked, train)
    assert trained == [("hybrid", 0), ("hybrid", 1)]
    assert list(got) == ["linear", "vim", "hybrid"]                  # ALL_HEADS' order
    assert [r["test_calibrated"]["mA"] for r in got["vim"]] == [80.0, 70.0, 82.0]   # runs/ wins; seed 2 kept
    assert got["linear"] == banked["linear"]                          # not asked for, not dropped
