"""scripts/ablate_par_heads.py: runs banked in the committed JSON are read back, so the
ablation goes on across machines whose runs/ folder is gone, and no head drops out of it."""
from __future__ import annotations

import json
import shutil

import numpy as np
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


def test_a_fold_trains_without_its_cameras_and_tests_on_theirs(tmp_path):
    from heads_testlib import fake_peta

    root = fake_peta(tmp_path / "peta")          # images 1-10 VIPeR, 11-16 CUHK
    p0 = script.split_datasets(str(root), None)
    cuhk = script.split_datasets(str(root), "cuhk")
    stems = {s: [int(p.stem) for p in d.paths] for s, d in cuhk.items()}
    assert stems == {"train": list(range(1, 9)), "val": [9, 10], "test": list(range(12, 17))}
    # the fold's rows come out of p0's token cache, in the fold's order, with their labels
    all_paths = [str(p) for s in ("train", "val", "test") for p in p0[s].paths]
    tokens = np.arange(len(all_paths), dtype=np.float16)[:, None, None, None] * np.ones((1, 2, 3, 4), np.float16)
    got = script.rows_of(tokens, all_paths, [str(p) for p in cuhk["test"].paths])
    assert got.shape == (5, 2, 3, 4) and list(got[:, 0, 0, 0]) == [11, 12, 13, 14, 15]
    assert np.array_equal(cuhk["test"].labels, p0["test"].labels)
    val = script.rows_of(tokens, all_paths, [str(p) for p in cuhk["val"].paths])
    assert list(val[:, 1, 2, 3]) == [8, 9] and np.array_equal(cuhk["val"].labels, p0["val"].labels[:2])
    with pytest.raises(KeyError, match="no cached tokens"):
        script.rows_of(tokens, all_paths[:-1], all_paths)


def test_a_fold_needs_an_encoder_that_never_saw_its_cameras(capsys):
    for argv in (["--root", "x", "--fold", "grid-mit"],                       # the shipped par-peta
                 ["--root", "x", "--fold", "grid-mit", "--imagenet", "--ship-best", "d"],
                 ["--root", "x", "--fold", "nowhere", "--imagenet"]):
        with pytest.raises(SystemExit) as e:
            script.main(argv)
        assert e.value.code == 2
    err = capsys.readouterr().err
    assert "never saw the fold's cameras" in err and "grid-mit" in err and "invalid choice" in err


def _fold_json(path, name, mas):
    path.write_text(json.dumps({"fold": name, "encoder": "frozen", "epochs": 6, "heads": {
        k: {"test_calibrated": {"mA": {"mean": ma}, "f1": {"mean": ma - 2}}} for k, ma in mas.items()}}))
    return path


def test_the_fold_table_keeps_heads_every_fold_has(tmp_path, capsys):
    a = _fold_json(tmp_path / "a.json", "grid-mit", {"linear": 50.0, "vim": 56.0, "hybrid": 60.0})
    b = _fold_json(tmp_path / "b.json", "viper-prid-sarc3d", {"linear": 54.0, "vim": 58.0})
    out = tmp_path / "t.json"
    assert script.main(["--root", "x", "--fold-table", str(a), str(b), "--json", str(out)]) == 0
    t = json.loads(out.read_text())
    assert t["folds"] == ["grid-mit", "viper-prid-sarc3d"] and list(t["heads"]) == ["linear", "vim"]
    assert t["heads"]["linear"]["mean"] == {"mA": 52.0, "f1": 50.0}
    assert t["heads"]["vim"]["std"]["mA"] == pytest.approx(1.41, abs=0.01)      # sample std
    assert "| vim | 56.00 | 58.00 | 57.00 ± 1.41 |" in capsys.readouterr().out
    whole = tmp_path / "whole.json"
    whole.write_text(json.dumps({"heads": {}}))
    with pytest.raises(SystemExit):
        script.main(["--root", "x", "--fold-table", str(whole), "--json", str(out)])


def test_a_json_made_otherwise_is_refused_before_any_work(tmp_path, capsys):
    path = tmp_path / "a.json"
    shutil.copy(COMMITTED, path)
    before = path.read_text()
    for extra in (["--epochs", "7"], ["--imagenet", "--fold", "grid-mit"]):
        with pytest.raises(SystemExit) as e:
            script.main(["--root", "x", "--json", str(path), *extra])
        assert e.value.code == 2
    assert "made otherwise" in capsys.readouterr().err and path.read_text() == before
    with pytest.raises(SystemExit):                       # a table needs to be told where it goes
        script.main(["--root", "x", "--fold-table", str(path)])
    assert "--fold-table needs --json" in capsys.readouterr().err


def _summary(kind_to_mas: dict) -> dict:
    return {k: script.summarise([_report(k, i, ma) for i, ma in enumerate(mas)])
            for k, mas in kind_to_mas.items()}


def test_a_difference_is_called_real_only_beyond_two_standard_deviations():
    got = {(c["head"], c["against"]): c for c in script.compare(_summary({
        "linear": [70.0, 70.2, 69.8], "vim": [77.0, 77.4, 76.6],
        "transformer": [77.5, 76.7, 77.9], "hybrid": [78.5]}))}
    assert set(got) == {("vim", "linear"), ("vim", "transformer"), ("hybrid", "linear"),
                        ("hybrid", "transformer"), ("hybrid", "vim")}   # pairs whose heads ran
    gain = got[("vim", "linear")]
    assert gain["difference"] == pytest.approx(7.0) and gain["std"] == pytest.approx(np.hypot(0.2, 0.4), abs=0.01)
    assert gain["real"] and gain["seeds"] == 3
    assert not got[("vim", "transformer")]["real"]                   # -0.37 within 2 x 0.72
    assert not got[("hybrid", "linear")]["real"]                     # +8.5, but one seed of hybrid
    assert got[("hybrid", "linear")]["seeds"] == 1


def test_the_table_of_a_finished_ablation_prints_its_instance_metrics(tmp_path, capsys):
    path = REPO / "docs/results/par_heads_ablation_imagenet.json"
    hybrid = json.loads(path.read_text())["heads"]["hybrid"]
    assert script.main(["--root", str(tmp_path), "--table", str(path)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines()
               if line.startswith("| hybrid |") and line.count("±") == 8)
    cells = [c.strip() for c in row.strip("|").split("|")[1:]]
    want = [hybrid[s][k] for s in ("test_fixed", "test_calibrated") for k in ("accuracy", "precision", "recall", "f1")]
    assert cells == [f"{m['mean']:.2f} ± {m['std']:.2f}" for m in want]
    with pytest.raises(SystemExit):
        script.main(["--root", str(tmp_path), "--table", str(tmp_path / "missing.json")])
    assert "--table" in capsys.readouterr().err
