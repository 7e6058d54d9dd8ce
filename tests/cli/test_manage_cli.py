"""Camera and time on the command line: ``index --manifest / --timestamp / --timestamps-from``,
``--camera/--after/--before`` on ``search``, ``similar`` and ``list``, ``similar --id`` and
``--other-cameras``, ``export`` and ``delete``."""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest
from cli_testlib import invoke, make_runner
from crops_testlib import crop_image, write_crops
from PIL import Image

from personlens.cli import main
from personlens.store import SQLiteStore

T0 = 1_700_000_000                       # 2023-11-14T22:13:20Z
ISO = "2023-11-14T22:13:20Z"
KEYS = ["id", "path", "attributes", "present", "camera", "timestamp", "timestamp_iso", "track_id",
        "description", "model_version"]



@pytest.fixture()
def runner():
    return make_runner()


def records(db: Path) -> dict[str, object]:
    """Stored records by file name."""
    with SQLiteStore(db / "personlens.sqlite") as s:
        return {Path(r.path).name: r for r in s.iterate()}


@pytest.fixture()
def indexed(runner, tmp_path, shared_pipeline, par_model_dir):
    """6 crops indexed from a CSV manifest (cameras, times, a track id) with two bad rows."""
    crops = write_crops(tmp_path / "crops", 6)
    manifest = tmp_path / "crops" / "manifest.csv"
    manifest.write_text(
        "path,camera,timestamp,track\n"
        "crop000.png,gate,2023-11-14T22:13:20Z,\n"                 # line 2
        "crop001.png,gate,1700000010,t-1\n"
        "crop002.png,lobby,2023-11-14T22:13:40,\n"
        "crop003.png,lobby,,\n"
        "crop004.png,,2023-11-14T22:14:00+00:00,\n"
        "crop005.png,gate,yesterday,\n"                             # line 7: bad time
        ",gate,,\n")                                                # line 8: no path
    db = tmp_path / "db"
    r = invoke(runner, "index", "--manifest", manifest, "--db", db, "--weights", par_model_dir,
               "--no-progress", "--json")
    assert r.exit_code == 1, r.output
    assert f"error: {manifest}:7: timestamp 'yesterday': expected an ISO 8601 time" in r.stderr
    assert f"error: {manifest}:8: no path" in r.stderr
    out = json.loads(r.stdout)
    assert out["added"] == 5 and len(out["manifest_errors"]) == 2
    return db, crops


def test_manifest_rows_keep_camera_time_and_track(indexed):
    db, _ = indexed
    recs = records(db)
    assert sorted(recs) == [f"crop00{i}.png" for i in range(5)]
    got = {n: (r.camera, r.timestamp, r.track_id) for n, r in recs.items()}
    assert got == {"crop000.png": ("gate", T0, None), "crop001.png": ("gate", T0 + 10, "t-1"),
                   "crop002.png": ("lobby", T0 + 20, None), "crop003.png": ("lobby", None, None),
                   "crop004.png": (None, T0 + 40, None)}


def test_jsonl_manifest_and_command_line_defaults(runner, tmp_path, shared_pipeline, par_model_dir):
    write_crops(tmp_path / "m" / "sub", 3)
    manifest = tmp_path / "m" / "list.jsonl"
    manifest.write_text("\n".join([
        json.dumps({"path": "sub/crop000.png", "camera": "c1", "timestamp": T0, "track": 7}),
        json.dumps({"path": str((tmp_path / "m" / "sub" / "crop001.png").resolve())}),
        "{not json",
        json.dumps({"path": "sub/crop002.png", "timestamp": True}),
        json.dumps({"path": "sub/missing.png"}),
        ""]))
    db = tmp_path / "db"
    r = invoke(runner, "index", "--manifest", manifest, "--db", db, "--weights", par_model_dir,
               "--camera", "default-cam", "--timestamp", "2024-01-01", "--no-progress")
    assert r.exit_code == 1
    assert f"{manifest}:3: " in r.stderr and f"{manifest}:4: timestamp True" in r.stderr
    assert "missing.png" in r.stderr                                 # reported by the loader
    got = {n: (r.camera, r.timestamp, r.track_id) for n, r in records(db).items()}
    assert got == {"crop000.png": ("c1", T0, "7"), "crop001.png": ("default-cam", 1704067200.0, None)}
    r = invoke(runner, "index", "--manifest", tmp_path / "m" / "list.txt", "--db", db, "--no-progress")
    assert r.exit_code == 1 and "a manifest is a .csv or .jsonl file" in r.stderr


def test_index_timestamp_options(runner, tmp_path, shared_pipeline, par_model_dir):
    d = tmp_path / "t"
    d.mkdir()
    exif = Image.Exif()
    exif.get_ifd(0x8769)[36867] = "2024:01:02 03:04:05"
    crop_image(0).save(d / "a.jpg", exif=exif.tobytes())
    crop_image(1).save(d / "b.png")
    os.utime(d / "b.png", (T0, T0))
    args = ["--weights", par_model_dir, "--no-progress"]
    r = invoke(runner, "index", d, "--db", tmp_path / "exif", "--timestamps-from", "exif", *args)
    assert r.exit_code == 0, r.output
    assert {n: x.timestamp for n, x in records(tmp_path / "exif").items()} == {"a.jpg": 1704164645.0,
                                                                             "b.png": None}
    r = invoke(runner, "index", d / "b.png", "--db", tmp_path / "mtime", "--timestamps-from", "mtime", *args)
    assert r.exit_code == 0 and records(tmp_path / "mtime")["b.png"].timestamp == T0
    r = invoke(runner, "index", d, "--db", tmp_path / "one", "--timestamp", "2023-11-14T23:13:20+01:00", *args)
    assert r.exit_code == 0 and {x.timestamp for x in records(tmp_path / "one").values()} == {T0}
    r = invoke(runner, "index", d, "--db", tmp_path / "x", "--timestamp", ISO, "--timestamps-from", "exif", *args)
    assert r.exit_code == 2 and "exclude each other" in r.stderr
    r = invoke(runner, "index", d, "--db", tmp_path / "x", "--timestamp", "noon", *args)
    assert r.exit_code == 2 and "--timestamp" in r.stderr and "Traceback" not in r.stderr
    r = invoke(runner, "index", "--db", tmp_path / "x", *args)
    assert r.exit_code == 2 and "--manifest" in r.stderr


def test_list_filters_pages_and_json(runner, indexed):
    db, _ = indexed

    def listed(*args):
        r = invoke(runner, "list", "--db", db, "--json", *args)
        assert r.exit_code == 0, r.output
        return [Path(x["path"]).name for x in json.loads(r.stdout)]

    assert listed() == [f"crop00{i}.png" for i in (4, 3, 2, 1, 0)]       # newest first
    assert listed("--limit", 2, "--offset", 1) == ["crop003.png", "crop002.png"]
    assert listed("--camera", "gate") == ["crop001.png", "crop000.png"]
    assert listed("--camera", "gate", "--camera", "lobby") == [f"crop00{i}.png" for i in (3, 2, 1, 0)]
    assert listed("--camera", "nope") == []
    assert listed("--after", "2023-11-14T22:13:30Z") == ["crop004.png", "crop002.png", "crop001.png"]
    assert listed("--before", "2023-11-14T22:13:30") == ["crop000.png"]          # exclusive
    assert listed("--after", ISO, "--before", "2023-11-14T22:13:40Z", "--camera", "gate") == \
        ["crop001.png", "crop000.png"]
    r = invoke(runner, "list", "--db", db, "--json", "--limit", 1)
    (x,) = json.loads(r.stdout)
    assert list(x) == KEYS and x["timestamp_iso"] == "2023-11-14T22:14:00Z"
    r = invoke(runner, "list", "--db", db, "--camera", "gate")
    assert r.exit_code == 0
    assert "camera gate, 2023-11-14T22:13:30Z" in r.stdout and r.stdout.rstrip().endswith("1-2 of 2")
    r = invoke(runner, "list", "--db", db, "--after", "last week")
    assert r.exit_code == 2 and "--after" in r.stderr and "ISO 8601" in r.stderr


def test_search_filters(runner, indexed):
    db, _ = indexed

    def found(*args):
        r = invoke(runner, "search", "a person", "--db", db, "--json", "--top-k", 50, *args)
        assert r.exit_code == 0, r.output
        return sorted(Path(h["path"]).name for h in json.loads(r.stdout))

    assert len(found()) == 5
    assert found("--camera", "lobby") == ["crop002.png", "crop003.png"]
    assert found("--after", "2023-11-14T22:13:30Z", "--camera", "lobby") == ["crop002.png"]
    assert found("--before", "2023-11-14T22:13:21Z") == ["crop000.png"]


def test_similar_by_id_and_other_cameras(runner, indexed):
    db, crops = indexed
    pid = records(db)["crop000.png"].id                      # camera gate

    def similar(*args, code=0):
        r = invoke(runner, "similar", "--db", db, "--json", "--top-k", 50, *args)
        assert r.exit_code == code, r.output
        return r, json.loads(r.stdout)

    _, out = similar("--id", pid)
    assert out[0]["query"] == pid
    names = sorted(Path(h["path"]).name for h in out[0]["results"])
    assert names == [f"crop00{i}.png" for i in (1, 2, 3, 4)]                  # itself left out
    _, by_image = similar(crops[0])
    assert [h["id"] for h in by_image[0]["results"]] == [h["id"] for h in out[0]["results"]]
    _, other = similar("--id", pid, "--other-cameras")
    assert sorted(h["camera"] or "" for h in other[0]["results"]) == ["", "lobby", "lobby"]
    _, other_img = similar(crops[0], "--other-cameras")                        # stored: its camera
    assert [h["id"] for h in other_img[0]["results"]] == [h["id"] for h in other[0]["results"]]
    _, cam = similar("--id", pid, "--camera", "lobby", "--after", ISO)
    assert [Path(h["path"]).name for h in cam[0]["results"]] == ["crop002.png"]
    r, out = similar("--id", "0" * 64, "--id", pid, code=1)
    assert f"no person with id '{'0' * 64}'" in r.stderr and [o["query"] for o in out] == [pid]
    r = invoke(runner, "similar", "--db", db)
    assert r.exit_code == 2 and "--id" in r.stderr
    r = invoke(runner, "similar", "--id", pid, "--db", db, "--top-k", 2)      # the table
    assert r.exit_code == 0 and r.stdout.splitlines()[0] == pid


def test_export_csv_and_jsonl(runner, indexed, tmp_path):
    db, _ = indexed
    out = tmp_path / "people.csv"
    r = invoke(runner, "export", "--db", db, "--format", "csv", "--out", out)
    assert r.exit_code == 0, r.output
    assert r.stdout == "" and f"exported 5 people to {out}" in r.stderr
    rows = list(csv.DictReader(out.read_text().splitlines()))
    header = out.read_text().splitlines()[0].split(",")
    assert header == ["id", "path", "camera", "timestamp_iso", "track_id", "present", "description",
                      "personalMale", "accessoryHat", "carryingBackpack", "upperBodyBlack"]
    assert [Path(x["path"]).name for x in rows] == [f"crop00{i}.png" for i in range(5)]  # as added
    recs = records(db)
    first = rows[1]
    rec = recs["crop001.png"]
    assert (first["id"], first["camera"], first["timestamp_iso"], first["track_id"]) == \
        (rec.id, "gate", "2023-11-14T22:13:30Z", "t-1")
    assert first["present"].split(";") == rec.top_present() and first["path"] == rec.path
    assert float(first["carryingBackpack"]) == pytest.approx(rec.attributes["carryingBackpack"], abs=1e-6)
    assert rows[3]["timestamp_iso"] == "" and rows[4]["camera"] == ""
    r = invoke(runner, "export", "--db", db, "--format", "jsonl", "--camera", "lobby")
    assert r.exit_code == 0
    lines = [json.loads(x) for x in io.StringIO(r.stdout)]
    assert [Path(x["path"]).name for x in lines] == ["crop002.png", "crop003.png"] and list(lines[0]) == KEYS
    r = invoke(runner, "export", "--db", db, "--where", "accessoryHat=yes", "--format", "csv")
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 1 + sum(
        "accessoryHat" in x.present for x in recs.values())


def test_delete_asks_reports_unknown_and_removes(runner, indexed):
    db, crops = indexed
    recs = records(db)
    a, b = recs["crop000.png"].id, recs["crop001.png"].id
    r = runner.invoke(main, ["delete", a, "--db", str(db)], input="n\n")
    assert r.exit_code == 1 and "Delete 1 person" in r.stderr
    assert a in {x.id for x in records(db).values()}                 # not confirmed: kept
    r = runner.invoke(main, ["delete", a, "--db", str(db)], input="y\n")
    assert r.exit_code == 0 and r.stdout.strip() == f"1 deleted; 4 people in {db}"
    r = invoke(runner, "delete", b, "0" * 64, "nope", "--db", db, "--yes")
    assert r.exit_code == 1
    assert f"error: no person with id {'0' * 64} in {db}" in r.stderr and "nope" in r.stderr
    assert r.stdout.strip() == f"1 deleted; 3 people in {db}"
    assert sorted(records(db)) == ["crop002.png", "crop003.png", "crop004.png"]
    assert all(p.exists() for p in crops)                            # the user's files stay
    r = invoke(runner, "search", "a person", "--db", db, "--json", "--top-k", 50)
    assert {h["id"] for h in json.loads(r.stdout)}.isdisjoint({a, b})
