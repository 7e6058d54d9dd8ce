"""``personlens index / search / similar`` end to end on a temporary folder of crops."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cli_testlib import invoke, make_runner
from crops_testlib import crop_image, write_crops

from personlens.cli import main

N = 8



@pytest.fixture()
def folder(tmp_path) -> Path:
    """N good crops (some in a subfolder) and two bad files."""
    root = tmp_path / "crops"
    write_crops(root, N // 2)
    write_crops(root / "cam2" / "day1", N - N // 2, start=N // 2)
    (root / "cam2" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (root / "empty.png").write_bytes(b"")
    (root / "notes.txt").write_text("not an image extension: ignored")
    return root


@pytest.fixture()
def runner():
    return make_runner()


_run = invoke   # personlens ARGS... (cli_testlib)


@pytest.fixture()
def db(runner, folder, tmp_path, shared_pipeline, par_model_dir) -> Path:
    db = tmp_path / "db"
    r = _run(runner, "index", folder, "--db", db, "--weights", par_model_dir, "--batch-size", 3,
             "--camera", "lobby", "--no-progress")
    assert r.exit_code == 1, r.output
    return db


def test_index_reports_bad_files_and_keeps_the_rest(runner, folder, db, shared_pipeline):
    from personlens.store import SQLiteStore

    # (the db fixture ran: personlens index FOLDER --db DB ...)
    with SQLiteStore(db / "personlens.sqlite") as s:
        assert s.count() == N
        assert {r.camera for r in s.iterate()} == {"lobby"}
    r = _run(runner, "index", folder, "--db", db, "--no-progress")   # the library remembers its model
    assert r.exit_code == 1
    assert r.stdout.strip() == f"0 added, {N} already indexed, 0 re-embedded, 2 failed; {N} people in {db}"
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert sorted(errors) == sorted([
        f"error: {folder / 'cam2' / 'broken.jpg'}: not an image (unrecognised format)",
        f"error: {folder / 'empty.png'}: empty file (0 bytes)",
        f"error: 2 of {N + 2} images could not be read"])


def test_index_json_and_progress_bar(runner, folder, tmp_path, shared_pipeline, par_model_dir):
    good = sorted(folder.glob("*.png"))[:2]
    r = _run(runner, "index", *good, "--db", tmp_path / "db2", "--weights", par_model_dir, "--json")
    assert r.exit_code == 0
    out = json.loads(r.stdout)
    assert out == {"db": str(tmp_path / "db2"), "added": 2, "skipped_existing": 0, "reembedded": 0,
                   "total": 2, "stale": 0, "failed": []}
    assert "indexing" in r.stderr  # the tqdm bar


def test_search_json_shape(runner, db):
    r = _run(runner, "search", "a man carrying a backpack", "--db", db, "--top-k", 5, "--json")
    assert r.exit_code == 0, r.stderr
    hits = json.loads(r.stdout)
    assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    for h in hits:
        assert list(h) == ["id", "rank", "score", "path", "attributes", "present", "camera",
                           "timestamp", "timestamp_iso", "track_id", "description",
                           "model_version"]   # crops: no "track"
        assert h["camera"] == "lobby" and h["timestamp"] is None and h["track_id"] is None
        assert h["timestamp_iso"] is None
        assert Path(h["path"]).is_absolute() and Path(h["path"]).is_file()   # the stored path
        assert isinstance(h["score"], float)
        assert set(h["attributes"]) == {"personalMale", "accessoryHat", "carryingBackpack",
                                        "upperBodyBlack"}                  # every probability
        assert all(0 <= p <= 1 for p in h["attributes"].values())
        assert h["present"] == sorted(h["present"], key=lambda a: -h["attributes"][a])
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)


def test_search_table(runner, db):
    r = _run(runner, "search", "a man", "--db", db, "--top-k", 3)
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    assert len(lines) == 12      # per hit: rank/score/image, attributes, camera (and time), description
    assert lines[2].strip() == "camera lobby"
    rank, score, image = lines[0].split()
    assert rank == "1" and 0 < float(score) <= 1 and Path(image).is_file()
    assert "personalMale" in lines[1]
    assert lines[3].strip().startswith("a person")   # the fixture model's rendered attributes


def test_search_where_filters(runner, db):
    def ids(*where):
        args = [a for w in where for a in ("--where", w)]
        r = _run(runner, "search", "a person", "--db", db, "--top-k", 50, "--json", *args)
        assert r.exit_code == 0, r.stderr
        return {h["id"]: h for h in json.loads(r.stdout)}

    everyone = ids()
    assert len(everyone) == N
    for attr in ("carryingBackpack", "upperBodyBlack"):
        yes, no = ids(f"{attr}=yes"), ids(f"{attr}=no")
        assert set(yes) | set(no) == set(everyone) and not set(yes) & set(no)
        assert all(attr in h["present"] for h in yes.values())
        assert all(attr not in h["present"] for h in no.values())
    both = ids("personalMale=yes", "accessoryHat=no")
    assert all("personalMale" in h["present"] and "accessoryHat" not in h["present"]
               for h in both.values())


def test_search_unknown_attribute_is_a_clear_error(runner, db):
    r = _run(runner, "search", "x", "--db", db, "--where", "accessoryhat=yes")
    assert r.exit_code == 2 and r.stdout == ""
    assert "unknown attribute 'accessoryhat' (did you mean 'accessoryHat'?)" in r.stderr
    assert "Traceback" not in r.stderr
    r = _run(runner, "search", "x", "--db", db, "--where", "accessoryHat")
    assert r.exit_code == 2 and "ATTRIBUTE=yes or ATTRIBUTE=no" in r.stderr


def test_contradictory_where_is_a_usage_error(runner, db, folder):
    for cmd in (["search", "a man"], ["similar", min(folder.glob("*.png"))]):
        r = _run(runner, *cmd, "--db", db, "--where", "personalMale=yes", "--where", "personalMale=no")
        assert r.exit_code == 2 and r.stdout == "" and "Traceback" not in r.stderr
        assert r.stderr.startswith("error: --where personalMale ") and "both" in r.stderr
    r = _run(runner, "search", "a man", "--db", db, "--where", "personalMale=yes",
             "--where", "personalMale=yes", "--json")  # the same condition twice is fine
    assert r.exit_code == 0, r.output


def test_similar_json_shape_and_bad_query(runner, db, folder, tmp_path):
    query = tmp_path / "q.jpg"
    crop_image(5).save(query, quality=85)
    r = _run(runner, "similar", query, folder / "empty.png", "--db", db, "--top-k", 3, "--json")
    assert r.exit_code == 1
    out = json.loads(r.stdout)
    assert [o["query"] for o in out] == [str(query)]
    res = out[0]["results"]
    assert [h["rank"] for h in res] == [1, 2, 3]
    assert set(res[0]) == {"rank", "path", "score", "attributes", "present", "id", "description",
                           "camera", "timestamp", "timestamp_iso", "track_id", "model_version"}
    assert Path(res[0]["path"]).name == "crop005.png"
    assert f"error: {folder / 'empty.png'}: empty file (0 bytes)" in r.stderr


def test_similar_table(runner, db, folder):
    q = sorted(folder.glob("*.png"))[1]
    r = _run(runner, "similar", q, "--db", db, "--top-k", 2)
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    assert lines[0] == str(q) and lines[1].split()[0] == "1" and len(lines) == 9   # + a camera line a hit


def test_similar_camera_centring(runner, db, folder, tmp_path, par_model_dir):
    query = tmp_path / "q.jpg"
    crop_image(5).save(query, quality=85)
    r = _run(runner, "similar", query, "--db", db, "--top-k", 3, "--camera-centring",
             "--query-camera", "lobby", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)[0]["results"]
    assert [h["rank"] for h in res] == [1, 2, 3] and Path(res[0]["path"]).name == "crop005.png"
    plain = tmp_path / "plain"                                     # indexed without --camera
    _run(runner, "index", *sorted(folder.glob("*.png"))[:2], "--db", plain, "--weights",
         par_model_dir, "--no-progress")
    r = _run(runner, "similar", query, "--db", plain, "--camera-centring")
    assert r.exit_code == 2 and "index them with `personlens index PATH --camera NAME`" in r.stderr


def test_missing_library_is_an_error(runner, tmp_path):
    for cmd in (["search", "x"], ["similar", str(tmp_path)]):
        r = _run(runner, *cmd, "--db", tmp_path / "nope")
        assert r.exit_code == 2 and "no personlens library" in r.stderr
    assert not (tmp_path / "nope").exists()


def test_default_db_is_personlens_db_in_cwd(runner, folder, shared_pipeline, par_model_dir, tmp_path):
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        r = _run(runner, "index", *sorted(folder.glob("*.png"))[:2], "--weights", par_model_dir,
                 "--no-progress")
        assert r.exit_code == 0 and (tmp_path / "personlens-db" / "personlens.sqlite").is_file()
        r = _run(runner, "search", "a man", "--json")
        assert r.exit_code == 0 and len(json.loads(r.stdout)) == 2
    finally:
        os.chdir(cwd)


def test_descriptions_by_default_and_no_descriptions_remembered(tmp_path):
    """The shipped models: each record gets a description, unless the library was told not to."""
    from personlens.library import PersonLibrary

    crops = tmp_path / "crops"
    write_crops(crops, 2)
    runner = make_runner()
    for db, extra, described in ((tmp_path / "with", [], True),
                                 (tmp_path / "without", ["--no-descriptions"], False)):
        r = runner.invoke(main, ["index", str(crops), "--db", str(db), "--no-progress", *extra],
                          catch_exceptions=False)
        assert r.exit_code == 0, r.output
        lib = PersonLibrary(db, create=False)
        try:
            texts = [rec.description for rec in lib.store.iterate()]
            assert len(texts) == 2
            if described:
                assert all(t.startswith("The image shows ") for t in texts)
                assert lib.models["describer"] == "default"
            else:
                assert texts == [None, None] and lib.models["describer"] == "baseline"
        finally:
            lib.close()
