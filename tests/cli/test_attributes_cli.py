"""``personlens attributes / info / eval attributes`` end to end on a small untrained model."""
from __future__ import annotations

import json

import numpy as np
import pytest
from cli_testlib import FIXTURE_ATTRIBUTES, FIXTURE_THRESHOLDS, SHARED_DATA, invoke, noise_image



_run = invoke   # personlens ARGS... (cli_testlib)


def _check_prediction(item: dict) -> None:
    assert set(item) == {"image", "attributes", "present"}
    assert list(item["attributes"]) == FIXTURE_ATTRIBUTES
    for name, p in item["attributes"].items():
        assert isinstance(p, float) and 0.0 <= p <= 1.0
        th = np.float32(FIXTURE_THRESHOLDS[FIXTURE_ATTRIBUTES.index(name)])
        assert (p >= th) == (name in item["present"]), (name, p, th, item["present"])
    assert item["present"] == [n for n in FIXTURE_ATTRIBUTES if n in item["present"]]  # schema order
    assert "personalMale" in item["present"] and "accessoryHat" not in item["present"]


# ---------------------------------------------------------------- attributes: good inputs

def test_table_output(runner, par_model_dir, good_images):
    r = _run(runner, "attributes", "--weights", par_model_dir, *good_images)
    assert r.exit_code == 0, r.output
    assert r.stderr == ""
    lines = r.stdout.splitlines()
    assert lines[0] == str(good_images[0]) and lines[2] == str(good_images[1])
    assert len(lines) == 4
    for row in (lines[1], lines[3]):
        assert row.startswith("    ") and "personalMale" in row and "accessoryHat" not in row


def test_table_top_limits_attributes_shown(runner, par_model_dir, good_images):
    r = _run(runner, "attributes", "--weights", par_model_dir, "--top-k", "1", good_images[0])
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[1].count(",") == 0


def test_json_output(runner, par_model_dir, good_images):
    r = _run(runner, "attributes", "--json", "--weights", par_model_dir, *good_images)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert isinstance(out, list) and [o["image"] for o in out] == [str(p) for p in good_images]
    for item in out:
        _check_prediction(item)
    # two different images, two different predictions
    assert out[0]["attributes"] != out[1]["attributes"]


def test_folder_expands_recursively(runner, par_model_dir, tmp_path):
    root = tmp_path / "crops"
    (root / "cam1" / "day2").mkdir(parents=True)
    wanted = [root / "a.png", root / "cam1" / "b.JPG", root / "cam1" / "day2" / "c.jpeg"]
    for i, p in enumerate(wanted):
        noise_image(10 + i).save(p, format="PNG" if p.suffix == ".png" else "JPEG")
    (root / "cam1" / "readme.txt").write_text("not an image")  # ignored: not an image suffix
    (root / "cam1" / "day2" / "empty_dir.png").mkdir()          # ignored: a directory
    r = _run(runner, "attributes", "--json", "--weights", par_model_dir, root)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert sorted(o["image"] for o in out) == sorted(str(p) for p in wanted)
    for item in out:
        _check_prediction(item)


def test_batch_size_option_gives_same_json(runner, par_model_dir, good_images):
    outs = []
    for bs in ("1", "32"):
        r = _run(runner, "attributes", "--json", "--batch-size", bs, "--weights", par_model_dir,
                 *good_images)
        assert r.exit_code == 0, r.output
        outs.append(json.loads(r.stdout))
    for a, b in zip(*outs):
        assert a["image"] == b["image"]
        # bf16 is the default path: batch composition may move values slightly
        np.testing.assert_allclose(list(a["attributes"].values()), list(b["attributes"].values()),
                                   atol=0.03)


# ---------------------------------------------------------------- attributes: bad inputs

EXPECTED_REASON = {
    "truncated_png": "corrupt image",
    "truncated_jpeg": "corrupt image",
    "text": "not an image",
    "empty": "empty file",
    "huge": "image too large",
    "missing": "no such file",
}


def _mixed(good_images, bad_images):
    """good, bad..., good: bad files between the good ones."""
    return [good_images[0], *bad_images.values(), good_images[1]]


def _error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.strip()]


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "table"])
def test_bad_files_reported_one_line_each_and_good_ones_kept(runner, par_model_dir, good_images,
                                                             bad_images, as_json):
    args = ["attributes", "--weights", par_model_dir, *_mixed(good_images, bad_images)]
    r = _run(runner, *(args + ["--json"] if as_json else args))
    assert r.exit_code != 0
    errors = _error_lines(r.stderr)
    # one line per bad file, in input order, then a one-line summary
    assert len(errors) == len(bad_images) + 1, r.stderr
    for line, (kind, path) in zip(errors, bad_images.items()):
        assert line.startswith("error: ") and str(path) in line, line
        assert EXPECTED_REASON[kind] in line, (kind, line)
        assert "Traceback" not in line
    assert f"{len(bad_images)} of {len(bad_images) + 2} images" in errors[-1]
    if as_json:
        out = json.loads(r.stdout)  # stdout is still valid JSON holding the good files
        assert [o["image"] for o in out] == [str(p) for p in good_images]
        for item in out:
            _check_prediction(item)
    else:
        assert [ln for ln in r.stdout.splitlines() if not ln.startswith(" ")] == \
            [str(p) for p in good_images]
        assert not any(str(p) in r.stdout for p in bad_images.values())


def test_only_bad_files(runner, par_model_dir, bad_images):
    r = _run(runner, "attributes", "--json", "--weights", par_model_dir, bad_images["missing"])
    assert r.exit_code == 1
    assert json.loads(r.stdout) == []
    assert str(bad_images["missing"]) in r.stderr


def test_unusable_weights_is_a_clean_error(runner, tmp_path, good_images):
    r = _run(runner, "attributes", "--weights", tmp_path, good_images[0])
    assert r.exit_code == 2
    assert r.stderr.startswith("error: cannot load model:") and "config.json" in r.stderr
    assert len(_error_lines(r.stderr)) == 1


@pytest.mark.skipif(not (SHARED_DATA / "PETA" / "images").is_dir(),
                    reason="real PETA crops not found beside the repository")
def test_real_peta_crops(runner, par_model_dir):
    crops = sorted((SHARED_DATA / "PETA" / "images").glob("0000[1-2].*"))[:2]
    assert len(crops) == 2
    r = _run(runner, "attributes", "--json", "--weights", par_model_dir, *crops)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert [o["image"] for o in out] == [str(p) for p in crops]
    for item in out:
        _check_prediction(item)


# ---------------------------------------------------------------- info

def test_info_json(runner, par_model_dir):
    r = _run(runner, "info", "--json", "--weights", par_model_dir)
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    a = data["attributes_model"]
    assert a["attributes"] == FIXTURE_ATTRIBUTES
    assert a["head"] == "cross_attention" and a["encoder"] == "efficientnet_lite0"
    assert a["encoder_parameters"] > 0 and a["head_parameters"] > 0
    assert a["total_parameters"] == a["encoder_parameters"] + a["head_parameters"] > 0
    assert "efficientnet_lite0" in data["image_encoders"] and "minilm" in data["text_encoders"]
    assert {"vim", "vim_text", "hybrid", "transformer", "cross_attention"} <= set(data["attribute_heads"])
    assert data["runtime"]["precision"] in ("fp32", "bf16") and data["runtime"]["encoder"] in ("onnx", "torch")
    assert data["version"]


def test_info_table(runner, par_model_dir):
    r = _run(runner, "info", "--weights", par_model_dir)
    assert r.exit_code == 0, r.output
    assert "4 attributes" in r.stdout and "cross_attention head" in r.stdout


def test_info_shows_which_attributes_hold_on_new_cameras(runner, par_model_dir, tmp_path):
    """With new_cameras.json the table names the attributes not to rely on; without it, or
    with one for other attributes, it says "not measured"; a broken one is named, not fatal."""
    import shutil

    from personlens.models.transfer import write_transfer

    r = _run(runner, "info", "--weights", par_model_dir)
    assert "on cameras never seen: not measured" in r.stdout
    d = tmp_path / "model"
    shutil.copytree(par_model_dir, d)
    aucs = {"personalMale": 0.75, "accessoryHat": 0.64, "carryingBackpack": 0.52, "upperBodyBlack": 0.7}
    write_transfer(d, {"attributes": {n: {"auc_new_cameras": a, "positives": 40} for n, a in aucs.items()}})
    r = _run(runner, "info", "--weights", d)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert any(ln.strip().startswith("near chance") and "carryingBackpack 0.52" in ln for ln in lines)
    assert any(ln.strip().startswith("holds") and "personalMale 0.75" in ln and "upperBodyBlack" in ln
               for ln in lines)
    data = json.loads(_run(runner, "info", "--json", "--weights", d).stdout)["new_cameras"]
    assert data["by_rating"]["weak"] == ["accessoryHat"]
    assert data["attributes"]["carryingBackpack"]["rating"] == "near chance"

    write_transfer(d, {"attributes": {"personalMale": {"auc_new_cameras": 0.75, "positives": 40}}})
    assert json.loads(_run(runner, "info", "--json", "--weights", d).stdout)["new_cameras"] is None
    (d / "new_cameras.json").write_text("[1, 2")
    r = _run(runner, "info", "--weights", d)
    assert r.exit_code == 0 and "unreadable measurement" in r.stdout


def test_table_marks_attributes_near_chance_on_new_cameras(runner, par_model_dir, good_images, tmp_path):
    """personalMale (threshold 0.02: present on every crop) rated near chance is marked with
    a legend; the JSON output is unchanged; without a measurement nothing is marked."""
    import shutil

    from personlens.models.transfer import write_transfer

    plain = _run(runner, "attributes", "--weights", par_model_dir, *good_images)
    assert plain.exit_code == 0 and "(?)" not in plain.stdout
    d = tmp_path / "model"
    shutil.copytree(par_model_dir, d)
    write_transfer(d, {"attributes": {n: {"auc_new_cameras": 0.5 if n == "personalMale" else 0.8,
                                          "positives": 40} for n in FIXTURE_ATTRIBUTES}})
    r = _run(runner, "attributes", "--weights", d, *good_images)
    assert r.exit_code == 0, r.output
    rows = [ln for ln in r.stdout.splitlines() if ln.startswith("    ")]
    assert rows and all("personalMale" in ln and " (?)" in ln for ln in rows)
    assert r.stdout.count("(?)") == len(rows) + 1 and "near chance on cameras" in r.stdout.splitlines()[-1]
    j = _run(runner, "attributes", "--json", "--weights", d, *good_images)
    assert "(?)" not in j.stdout and json.loads(j.stdout)[0]["present"]
    (d / "new_cameras.json").write_text("{")
    bad = _run(runner, "attributes", "--weights", d, *good_images)
    assert bad.exit_code == 0 and "(?)" not in bad.stdout and "not readable JSON" in bad.output


# ---------------------------------------------------------------- eval attributes

def test_eval_attributes_on_fake_peta(runner, par_model_dir, fake_peta_root, tmp_path):
    out = tmp_path / "report" / "eval.json"
    r = _run(runner, "eval", "attributes", "--root", fake_peta_root, "--weights", par_model_dir,
             "--attributes", ",".join(FIXTURE_ATTRIBUTES), "--precision", "fp32", "--out", out)
    assert r.exit_code == 0, r.output
    rep = json.loads(out.read_text())
    for k in ("mA", "accuracy", "precision", "recall", "f1"):
        assert 0.0 <= rep[k] <= 100.0, (k, rep[k])
        assert 0.0 <= rep["fixed_0.5"][k] <= 100.0
    assert rep["num_images"] == 5 and rep["split"] == "test" and rep["partition"] == 0
    assert list(rep["per_attribute"]) == FIXTURE_ATTRIBUTES
    for name, a in rep["per_attribute"].items():
        assert 0.0 <= a["ma"] <= 100.0
        assert a["threshold"] == pytest.approx(FIXTURE_THRESHOLDS[FIXTURE_ATTRIBUTES.index(name)])
    assert rep["per_attribute"]["personalMale"]["positive_recall"] == 100.0  # threshold 0.02
    png = out.with_suffix(".png")
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "calibrated" in r.stdout and str(out) in r.stdout


def test_eval_attribute_missing_from_model(runner, par_model_dir, fake_peta_root, tmp_path):
    out = tmp_path / "eval.json"
    r = _run(runner, "eval", "attributes", "--root", fake_peta_root, "--weights", par_model_dir,
             "--attributes", "personalMale,upperBodyRed", "--out", out)
    assert r.exit_code == 2
    assert "upperBodyRed" in r.stderr and "not trained on" in r.stderr
    assert len(_error_lines(r.stderr)) == 1
    assert not out.exists()


@pytest.mark.parametrize("attrs, message", [
    ("personalMale,wearingCape", "unknown attribute 'wearingCape'"),
    ("standard", "not trained on"),  # the fixture model has 4 of the 35
])
def test_eval_bad_attribute_choice(runner, par_model_dir, fake_peta_root, tmp_path, attrs, message):
    r = _run(runner, "eval", "attributes", "--root", fake_peta_root, "--weights", par_model_dir,
             "--attributes", attrs, "--out", tmp_path / "e.json")
    assert r.exit_code == 2
    assert message in r.stderr and "Traceback" not in r.output


def test_eval_root_without_peta_mat(runner, par_model_dir, tmp_path):
    r = _run(runner, "eval", "attributes", "--root", tmp_path, "--weights", par_model_dir,
             "--out", tmp_path / "e.json")
    assert r.exit_code == 2
    assert "PETA.mat" in r.stderr and len(_error_lines(r.stderr)) == 1


def test_train_attributes_passes_the_generalisation_settings(monkeypatch, tmp_path):
    """--augment-views, --mixstyle and --average-last reach every fold's TrainConfig."""
    import personlens.train.unseen as unseen
    from cli_testlib import make_runner
    from personlens.cli import main

    seen = {}

    def fake_train(root, out, cfg, folds, attributes, resume, log):
        seen.update(cfg=cfg, folds=folds)
        return {}

    monkeypatch.setattr(unseen, "train_unseen_folds", fake_train)
    r = make_runner().invoke(main, ["train", "attributes", "--protocol", "unseen-cameras", "--root",
                                    str(tmp_path), "--out", str(tmp_path / "o"), "--fold", "cuhk",
                                    "--augment-views", "2", "--mixstyle", "0.5", "--average-last", "0.25"])
    assert r.exit_code == 0, r.output
    cfg = seen["cfg"]
    assert (cfg.augment_views, cfg.mixstyle, cfg.average_last) == (2, 0.5, 0.25)
    assert seen["folds"] == ["cuhk"]
    r = make_runner().invoke(main, ["train", "attributes", "--protocol", "unseen-cameras", "--root",
                                    str(tmp_path), "--out", str(tmp_path / "o"), "--mixstyle", "1.5"])
    assert r.exit_code == 2 and "1.5" in r.output


def test_eval_unseen_prints_the_fold_spread_only_for_several_folds(monkeypatch, tmp_path):
    """The printed line and the JSON of `eval attributes --protocol unseen-cameras`: mean ± std
    over folds; one fold scored says so instead of showing a std of 0."""
    import personlens.eval.unseen as unseen
    from cli_testlib import make_runner
    from personlens.cli import main
    from personlens.eval.metrics import PARMetrics

    def metrics(ma, f1):
        return PARMetrics(mA=ma, accuracy=40.0, precision=f1, recall=f1, f1=f1, num_images=9,
                          per_attribute=())

    folds = {"grid-mit": {"val_unseen": metrics(60.0, 50.0)},
             "viper-prid-sarc3d": {"val_unseen": metrics(57.84, 55.2)}}

    def fake_evaluate(weights, root, names, precision, log, **kw):
        return unseen.summarise({n: folds[n] for n in names})

    monkeypatch.setattr(unseen, "evaluate_unseen", fake_evaluate)
    base = ["eval", "attributes", "--protocol", "unseen-cameras", "--split", "val", "--root",
            str(tmp_path), "--weights", str(tmp_path), "--no-seen"]
    r = make_runner().invoke(main, [*base, "--fold", "viper-prid-sarc3d", "--out", str(tmp_path / "one.json")])
    assert r.exit_code == 0, r.output
    assert "unseen cameras (val): mA 57.84 (one fold)  F1 55.20 (one fold)" in r.output
    assert json.loads((tmp_path / "one.json").read_text())["mean"]["val_unseen"]["mA"] == 57.84
    r = make_runner().invoke(main, [*base, "--fold", "grid-mit", "--fold", "viper-prid-sarc3d",
                                    "--out", str(tmp_path / "two.json")])
    assert r.exit_code == 0, r.output
    assert "unseen cameras (val): mA 58.92 ± 1.53  F1 52.60 ± 3.68" in r.output


def test_train_attributes_unlabelled_crops_need_a_teacher(monkeypatch, tmp_path):
    """--unlabelled and --teacher reach the TrainConfig together; one without the other, or a
    fold teacher that is not a fold model, is a usage error."""
    import personlens.train.unseen as unseen
    from cli_testlib import make_runner
    from personlens.cli import main

    seen = {}

    def fake_train(root, out, cfg, folds, attributes, resume, log):
        seen.update(cfg=cfg)
        unseen.fold_model(cfg.teacher, folds[0])   # what the real run checks first
        return {}

    monkeypatch.setattr(unseen, "train_unseen_folds", fake_train)
    (tmp_path / "crops").mkdir()
    (tmp_path / "teacher").mkdir()
    base = ["train", "attributes", "--protocol", "unseen-cameras", "--root", str(tmp_path),
            "--out", str(tmp_path / "o"), "--fold", "cuhk"]
    r = make_runner().invoke(main, [*base, "--unlabelled", str(tmp_path / "crops")])
    assert r.exit_code == 2 and "--teacher" in r.output and not seen
    r = make_runner().invoke(main, [*base, "--unlabelled", str(tmp_path / "crops"),
                                    "--teacher", str(tmp_path / "teacher"), "--unlabelled-weight", "0.5"])
    assert r.exit_code == 2 and "fold cuhk: the teacher must be the fold's own model" in r.output
    cfg = seen["cfg"]
    assert (cfg.unlabelled, cfg.teacher, cfg.unlabelled_weight) == \
        (str(tmp_path / "crops"), str(tmp_path / "teacher"), 0.5)


def test_train_attributes_init_head_reaches_each_fold_as_its_own_model(monkeypatch, tmp_path):
    """--init-head (LP-FT) reaches the TrainConfig; with --protocol unseen-cameras a folder
    without the fold's model is a usage error, not a traceback."""
    import personlens.train.unseen as unseen
    from cli_testlib import make_runner
    from personlens.cli import main
    from personlens.train.warm_start import WarmStartError

    seen = {}

    def fake_train(root, out, cfg, folds, attributes, resume, log):
        seen.update(cfg=cfg)
        unseen.fold_model(cfg.init_head, folds[0], "head to start from", WarmStartError)
        return {}

    monkeypatch.setattr(unseen, "train_unseen_folds", fake_train)
    (tmp_path / "probe").mkdir()
    r = make_runner().invoke(main, ["train", "attributes", "--protocol", "unseen-cameras", "--root",
                                    str(tmp_path), "--out", str(tmp_path / "o"), "--fold", "cuhk",
                                    "--init-head", str(tmp_path / "probe")])
    assert r.exit_code == 2 and "fold cuhk: the head to start from must be the fold's own model" in r.output
    assert seen["cfg"].init_head == str(tmp_path / "probe")


def test_train_attributes_background_masks_reach_the_augmentation(monkeypatch, tmp_path):
    """--background-masks needs --augment-views; with them the recipe's PixelAugment re-backs
    (--background-p); a mask folder that cannot serve is a usage error, not a traceback."""
    import personlens.train.unseen as unseen
    from cli_testlib import make_runner
    from personlens.cli import main
    from personlens.data.background import BackgroundMasksError

    seen = {}

    def fake_train(root, out, cfg, folds, attributes, resume, log):
        seen.update(cfg=cfg)
        raise BackgroundMasksError("background swap needs person masks of at least 2 training crops")

    monkeypatch.setattr(unseen, "train_unseen_folds", fake_train)
    (tmp_path / "masks").mkdir()
    base = ["train", "attributes", "--protocol", "unseen-cameras", "--root", str(tmp_path),
            "--out", str(tmp_path / "o"), "--fold", "cuhk", "--background-masks", str(tmp_path / "masks")]
    r = make_runner().invoke(main, base)
    assert r.exit_code == 2 and "--augment-views" in r.output and not seen
    r = make_runner().invoke(main, [*base, "--augment-views", "2", "--background-p", "0.5"])
    assert r.exit_code == 2 and "at least 2 training crops" in r.output
    assert seen["cfg"].augment == {"background_p": 0.5, "masks": str(tmp_path / "masks")}
