"""``personlens adapt`` (and ``info --db``, ``attributes --db/--camera``) through click."""
from __future__ import annotations

import functools
import json
import shutil

import numpy as np
import pytest
from cli_testlib import invoke, make_runner
from crops_testlib import write_crops

from personlens.inference.adaptation import ADAPTATION_FILE, STATS_FILE
from personlens.store import SQLiteStore


@pytest.fixture(scope="module")
def model_dir(par_model_dir, tmp_path_factory):
    """The fixture model with a val_scores.json (class-separating scores)."""
    from personlens.inference.adapt import score_statistics
    from personlens.models import hub

    d = shutil.copytree(par_model_dir, tmp_path_factory.mktemp("adapt-cli") / "model")
    rng = np.random.default_rng(0)
    labels = (rng.random((200, 4)) < 0.4).astype(int)
    labels[:2] = [[0] * 4, [1] * 4]
    probs = 1 / (1 + np.exp(-(2.0 * labels - 1 + rng.normal(size=labels.shape))))
    names = json.loads((d / hub.CONFIG_FILE).read_text())["attributes"]
    hub.write_scores(d, score_statistics(probs, labels, names, "val"))
    return d


@pytest.fixture()
def fast(monkeypatch, pipeline):
    """Fresh pipelines (adapting changes one) with the session's text encoder, and fewer
    crops scored for the thresholds than the default 600 (all 60 here)."""
    import personlens.inference.adapt as adapt_mod
    import personlens.inference.pipeline as pipe_mod

    real = pipe_mod.PersonPipeline
    monkeypatch.setattr(pipe_mod, "PersonPipeline",
                        lambda *a, **kw: real(*a, **{"text_encoder": pipeline.text_encoder, **kw}))
    monkeypatch.setattr(adapt_mod, "AdaptSettings", functools.partial(adapt_mod.AdaptSettings,
                                                                      threshold_crops=8))


@pytest.fixture()
def runner():
    return make_runner()


_run = invoke   # personlens ARGS... (cli_testlib)


@pytest.fixture()
def db(tmp_path, runner, model_dir, fast):
    crops = write_crops(tmp_path / "indexed", 2)
    db = tmp_path / "db"
    r = _run(runner, "index", *crops, "--db", db, "--weights", model_dir, "--no-progress")
    assert r.exit_code == 0, r.output
    return db


def _state(db):
    with SQLiteStore(db / "personlens.sqlite") as s:
        records = sorted((r.id, r.model_version) for r in s.iterate())
    return records, [(db / f).exists() for f in (ADAPTATION_FILE, STATS_FILE)]


def test_adapt_on_an_empty_folder_changes_nothing(runner, db, tmp_path):
    before = _state(db)
    (tmp_path / "empty").mkdir()
    r = _run(runner, "adapt", tmp_path / "empty", "--db", db, "--no-progress")
    assert r.exit_code == 2
    assert "cannot adapt: no crops given" in r.stderr and "nothing was changed" in r.stderr
    assert _state(db) == before and before[1] == [False, False]


def test_reset_without_adaptation_says_so(runner, db):
    r = _run(runner, "adapt", "--reset", "--db", db, "--no-progress")
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == f"{db} had no adaptation"


def test_usage_errors(runner, db, tmp_path):
    r = _run(runner, "adapt", "--db", db)
    assert r.exit_code == 2 and "give the folder(s) of crops" in r.stderr
    r = _run(runner, "adapt", tmp_path, "--reset", "--db", db)
    assert r.exit_code == 2 and "--reset takes no crops" in r.stderr
    img = write_crops(tmp_path / "one", 1)[0]
    r = _run(runner, "attributes", img, "--camera", "x")
    assert r.exit_code == 2 and "--camera needs --db" in r.stderr


def test_adapt_needs_a_library(runner, tmp_path):
    crops = write_crops(tmp_path / "crops", 2)
    (tmp_path / "not-a-db").mkdir()
    r = _run(runner, "adapt", *crops, "--db", tmp_path / "not-a-db", "--no-progress")
    assert r.exit_code == 2 and "no personlens library" in r.stderr
    assert list((tmp_path / "not-a-db").iterdir()) == []


def test_adapt_then_info_and_attributes(runner, db, tmp_path, model_dir):
    crops = write_crops(tmp_path / "adapt", 60, start=100)
    (records, _) = _state(db)
    r = _run(runner, "adapt", tmp_path / "adapt", "--db", db, "--no-progress", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert (out["camera"], out["crops"], out["reembedded"], out["replaced"]) == ("*", 60, 2, None)
    after, files = _state(db)
    assert files == [True, False]            # thresholds only by default: no statistics file
    assert [i for i, _ in after] == [i for i, _ in records]
    assert {v for _, v in after} == {out["model_version"]} != {v for _, v in records}

    r = _run(runner, "info", "--weights", model_dir, "--db", db, "--json")
    assert r.exit_code == 0, r.output
    lib = json.loads(r.stdout)["library"]
    assert (lib["records"], lib["searchable"], lib["stale"]) == (2, 2, 0)
    assert lib["model_version"] == out["model_version"]
    assert list(lib["adaptation"]["cameras"]) == ["*"]
    assert lib["adaptation"]["cameras"]["*"]["crops"] == 60
    assert lib["adaptation"]["cameras"]["*"]["normalisation"] is False

    r = _run(runner, "attributes", crops[0], "--db", db, "--camera", "lobby", "--json")
    assert r.exit_code == 0, r.output
    (pred,) = json.loads(r.stdout)
    assert pred["image"] == str(crops[0]) and len(pred["attributes"]) == 4

    r = _run(runner, "adapt", "--reset", "--db", db, "--no-progress")
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == f"adaptation removed from {db}; 2 records re-embedded"
    assert _state(db) == (records, [False, False])
