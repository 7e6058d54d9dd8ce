"""Video on the command line with the shipped models and detector, on a 12-frame clip of
TUD-Campus: ``track`` (MOT file), ``index VIDEO`` (one record per track, files beside,
idempotent, recovering a killed run), ``search`` showing tracks, ``eval tracking``, and bad
inputs refused with one line and no change to the library."""
from __future__ import annotations

import json
import re
import shutil
import sqlite3
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import pytest
from video_testlib import write_clip
from cli_testlib import invoke, make_runner

from personlens.library import PersonLibrary
from personlens.store import SQLiteStore

VIDEO_DATA = Path(__file__).resolve().parents[2].parent / "shared/data/video"
CAMPUS = VIDEO_DATA / "TUD-Campus"
pytestmark = pytest.mark.skipif(not (CAMPUS / "TUD-Campus.mp4").is_file(),
                                reason="needs ../shared/data/video/TUD-Campus")

N_FRAMES = 12
START = "2026-11-29T14:00:00Z"
START_S = datetime.fromisoformat(START).timestamp()


@pytest.fixture(scope="module")
def campus_frames() -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(CAMPUS / "TUD-Campus.mp4"))
    frames = []
    for _ in range(N_FRAMES):
        ok, img = cap.read()
        assert ok
        frames.append(img)
    cap.release()
    return frames


@pytest.fixture(scope="module")
def clip(tmp_path_factory, campus_frames) -> Path:
    """The first N_FRAMES frames of TUD-Campus as an mp4, and gt.txt cut to them (gt.txt)."""
    d = tmp_path_factory.mktemp("clip")
    frames = campus_frames
    gt = [ln for ln in (CAMPUS / "gt.txt").read_text().splitlines()
          if ln.strip() and int(float(ln.split(",")[0])) <= N_FRAMES]
    (d / "gt.txt").write_text("\n".join(gt) + "\n")
    return write_clip(d / "campus.mp4", frames)


@pytest.fixture(scope="module")
def shipped():
    """The shipped models, loaded once for the module: every library opened by a command
    with the default models gets this pipeline (loading takes seconds)."""
    import personlens.inference.pipeline as mod

    real = mod.PersonPipeline
    pipe = real()
    with pytest.MonkeyPatch.context() as mp:
        def factory(par_dir=None, search_head=None, reid_head=None, **kw):
            if par_dir is None and search_head in (None, mod.DEFAULT_HEAD) \
                    and reid_head in (None, mod.DEFAULT_HEAD) and kw.get("describer") in (None, mod.DEFAULT_HEAD):
                return pipe
            return real(par_dir, search_head, reid_head, text_encoder=pipe.text_encoder, **kw)

        mp.setattr(mod, "PersonPipeline", factory)
        yield pipe


@pytest.fixture()
def runner():
    return make_runner()


def index_args(video, db, *extra):
    return ("index", video, "--db", db, "--camera", "cam", "--start", START, "--json", "--no-progress", *extra)


@pytest.fixture(scope="module")
def indexed(shipped, clip, tmp_path_factory):
    """``personlens index CLIP --db D --camera cam --start START --json``, run once."""
    db = tmp_path_factory.mktemp("video-lib") / "db"
    r = invoke(make_runner(), *index_args(clip, db))
    assert r.exit_code == 0, r.output + r.stderr
    return db, json.loads(r.stdout)


def records(db: Path):
    with SQLiteStore(db / "personlens.sqlite") as s:
        return list(s.iterate())


# -- track -----------------------------------------------------------------------------------

def test_track_writes_mot_lines(runner, clip, tmp_path):
    out = tmp_path / "out" / "f.txt"
    r = invoke(runner, "track", clip, "--mot-out", out, "--no-progress", "--json")
    assert r.exit_code == 0, r.output + r.stderr
    summary = json.loads(r.stdout)
    assert summary["frames"] == N_FRAMES and not summary["stopped_early"]
    lines = out.read_text().splitlines()
    assert len(lines) == summary["boxes"] >= 3 * N_FRAMES        # several people, every frame
    rows = [ln.split(",") for ln in lines]
    assert all(len(f) == 10 for f in rows)
    frames = [int(f[0]) for f in rows]
    assert min(frames) == 1 and max(frames) <= N_FRAMES
    assert set(frames) == set(range(1, N_FRAMES + 1))
    assert frames == sorted(frames)
    assert all(f[7:] == ["-1", "-1", "-1"] for f in rows)
    assert all(float(f[4]) > 0 and float(f[5]) > 0 and 0 < float(f[6]) <= 1 for f in rows)
    assert len({int(f[1]) for f in rows}) == summary["tracks"] >= 3


def test_track_refuses_bad_input(runner, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x13" * 4000)
    for video in (bad, tmp_path / "missing.mp4"):
        out = tmp_path / "f.txt"
        r = invoke(runner, "track", video, "--mot-out", out, "--no-progress")
        assert r.exit_code == 1
        assert r.stderr.startswith(f"error: {video}: ") and len(r.stderr.splitlines()) == 1
        assert not out.exists()
    r = invoke(runner, "track", bad, "--mot-out", tmp_path / "f.txt", "--tiles", "2x")
    assert r.exit_code == 2


# -- index -----------------------------------------------------------------------------------

def test_index_adds_one_record_per_track(indexed, clip):
    from personlens.library.video import video_digest

    db, out = indexed
    (v,) = out["videos"]
    assert out["videos_failed"] == []
    assert v["tracks"] >= 3 and v["added"] == v["tracks"] == out["total"]
    assert v["frames"] == N_FRAMES and not v["stopped_early"] and not v["already_indexed"]
    digest = video_digest(clip)[:16]
    folder = db / "video" / digest
    assert re.fullmatch(r"[0-9a-f]{16}", digest) and folder.is_dir()
    recs = records(db)
    assert len(recs) == v["tracks"]
    assert len({r.id for r in recs}) == len(recs)
    jsons = sorted(folder.glob("track-*.json"))
    assert len(jsons) == len(recs)
    assert all(re.fullmatch(r"track-\d{4}\.json", p.name) for p in jsons)
    assert all(re.fullmatch(r"track-\d{4}-\d\.jpg", p.name) for p in folder.glob("*.jpg"))
    assert not list(folder.glob(".*"))                     # no temporary files left
    for r in recs:
        assert r.camera == "cam"
        p = Path(r.path)
        assert p.parent == folder.resolve() and p.suffix == ".jpg" and p.is_file()
        assert cv2.imread(str(p)) is not None
        video_hash, track_no = r.track_id.split("/")
        assert video_hash == digest
        meta = json.loads((folder / f"track-{int(track_no):04d}.json").read_text())
        assert meta["camera"] == "cam" and meta["video_sha256"].startswith(digest)
        assert meta["track"] == int(track_no)
        first_time = meta["boxes"][0][1]
        assert r.timestamp == pytest.approx(START_S + first_time)   # start + the track's start
        assert meta["start"] == pytest.approx(r.timestamp)
        assert START_S <= meta["start"] <= meta["end"] <= START_S + N_FRAMES / 25
        assert meta["frames"] == len(meta["boxes"]) >= 3
        assert 1 <= len(meta["crop_files"]) <= 4
        assert all((folder / f).is_file() for f in meta["crop_files"])
        assert Path(r.path).name == meta["crop_files"][0]
        assert r.description


def test_index_again_adds_nothing(indexed, clip, runner):
    db, first = indexed
    before = sorted(r.id for r in records(db))
    r = invoke(runner, *index_args(clip, db))
    assert r.exit_code == 0, r.stderr
    (v,) = json.loads(r.stdout)["videos"]
    assert v["already_indexed"] and v["added"] == 0 and v["tracks"] == first["videos"][0]["tracks"]
    assert sorted(r.id for r in records(db)) == before


def test_a_killed_run_is_completed_without_duplicates(indexed, clip, runner, tmp_path):
    db0, _ = indexed
    db = tmp_path / "db"
    shutil.copytree(db0, db)
    recs = records(db)
    gone = recs[len(recs) // 2]
    with PersonLibrary(db, create=False) as lib:
        assert lib.delete([gone.id]) == 1
    # the copy's records point at the crops of the original library: not the copy's to delete
    assert Path(gone.path).is_file() and not str(gone.path).startswith(str(db))
    with sqlite3.connect(db / "personlens.sqlite") as con:        # as if killed before the end
        n = con.execute("DELETE FROM meta WHERE key LIKE 'video:%'").rowcount
    assert n == 1
    r = invoke(runner, *index_args(clip, db))
    assert r.exit_code == 0, r.stderr
    (v,) = json.loads(r.stdout)["videos"]
    assert not v["already_indexed"]
    assert v["added"] == 1 and v["skipped_existing"] == len(recs) - 1
    after = records(db)
    assert sorted(r.id for r in after) == sorted(r.id for r in recs)
    back = next(r for r in after if r.id == gone.id)
    assert (back.track_id, back.timestamp, back.camera) == (gone.track_id, gone.timestamp, gone.camera)
    assert Path(back.path).name == Path(gone.path).name
    # and done now
    r = invoke(runner, *index_args(clip, db))
    assert json.loads(r.stdout)["videos"][0]["already_indexed"]


def test_search_shows_the_tracks(indexed, runner):
    db, first = indexed
    r = invoke(runner, "search", "a person walking", "--db", db, "--json", "--top-k", 50)
    assert r.exit_code == 0, r.stderr
    hits = json.loads(r.stdout)
    assert len(hits) == first["total"]
    for h in hits:
        assert h["camera"] == "cam" and h["track_id"] and h["timestamp"] >= START_S
        t = h["track"]
        assert t["start"] == pytest.approx(h["timestamp"]) and t["end"] >= t["start"]
        assert t["frames"] >= 3 and isinstance(t["uncertain"], list)
        assert t["video"].endswith("campus.mp4")
        assert set(t) == {"video", "start", "end", "frames", "uncertain"}       # the one schema
        assert h["timestamp_iso"].startswith("2026-11-29T14:00")
        p = Path(h["path"])                                      # the best crop, beside its track file
        assert p.is_file() and p.parent.parent.resolve() == (db / "video").resolve()
        meta = json.loads(p.with_name(p.name.rsplit("-", 1)[0] + ".json").read_text())
        assert meta["crop_files"][0] == p.name and 1 <= len(meta["crop_files"]) <= 4
    r = invoke(runner, "search", "a person walking", "--db", db, "--top-k", 1)
    assert r.exit_code == 0
    assert "camera cam, 2026-11-29T14:00" in r.stdout and "frames" in r.stdout


def test_delete_a_track_removes_its_files_and_indexing_again_brings_it_back(shipped, clip, runner,
                                                                             tmp_path):
    db = tmp_path / "db"
    assert invoke(runner, *index_args(clip, db)).exit_code == 0
    recs = records(db)
    gone = recs[0]
    crop = Path(gone.path)
    track = crop.with_name(crop.name.rsplit("-", 1)[0] + ".json")
    files = [crop.with_name(f) for f in json.loads(track.read_text())["crop_files"]] + [track]
    assert all(f.is_file() for f in files)
    r = invoke(runner, "delete", gone.id, "--db", db, "--yes")
    assert r.exit_code == 0, r.stderr
    assert not any(f.exists() for f in files)
    others = [Path(r.path) for r in recs[1:]]
    assert all(p.is_file() for p in others)                  # other tracks' files stay
    r = invoke(runner, *index_args(clip, db))
    (v,) = json.loads(r.stdout)["videos"]
    assert not v["already_indexed"] and v["added"] == 1 and v["skipped_existing"] == len(recs) - 1
    assert all(f.is_file() for f in files)
    assert sorted(x.id for x in records(db)) == sorted(x.id for x in recs)


def test_index_refuses_bad_video_and_changes_nothing(shipped, runner, tmp_path):
    db = tmp_path / "db"
    missing = tmp_path / "gone.mp4"
    r = invoke(runner, *index_args(missing, db))
    assert r.exit_code == 1
    errors = r.stderr.splitlines()
    assert errors[0] == f"error: {missing}: no such file or folder"
    assert all(ln.startswith("error: ") for ln in errors)
    assert records(db) == [] and not (db / "video").exists()
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 30_000, dtype=np.uint8).tobytes())
    r = invoke(runner, *index_args(corrupt, db))
    assert r.exit_code == 1
    assert r.stderr.startswith(f"error: {corrupt}: ")
    assert json.loads(r.stdout)["videos_failed"][0]["video"] == str(corrupt)
    assert records(db) == []


@pytest.mark.parametrize("option", [("--start", "notatime"), ("--tiles", "0x1"), ("--tiles", "5x5"),
                                    ("--every", "0"), ("--detector", "nope")])
def test_index_usage_errors(shipped, clip, runner, tmp_path, option):
    db = tmp_path / "db"
    args = [a for a in index_args(clip, db) if a not in ("--start", START)]
    r = invoke(runner, *args, *option)
    assert r.exit_code == 2
    assert option[0] in r.stderr
    assert not (db / "video").exists() and (not (db / "personlens.sqlite").exists() or records(db) == [])


def test_video_with_no_people(shipped, runner, tmp_path):
    black = write_clip(tmp_path / "black.mp4", [np.zeros((240, 320, 3), np.uint8)] * 10)
    db = tmp_path / "db"
    r = invoke(runner, *index_args(black, db))
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    (v,) = out["videos"]
    assert (v["tracks"], v["added"], v["frames"], out["total"]) == (0, 0, 10, 0)
    assert records(db) == []


@pytest.fixture(scope="module")
def folder_indexed(shipped, campus_frames, tmp_path_factory):
    """``index FOLDER --frames --fps 5 --every 2``: the clip as JPEG frames at 5 frames/s."""
    d = tmp_path_factory.mktemp("frames-lib")
    frames = d / "campus-frames"
    frames.mkdir()
    for i, img in enumerate(campus_frames):
        assert cv2.imwrite(str(frames / f"{i:06d}.jpg"), img)
    db = d / "db"
    r = invoke(make_runner(), *index_args(frames, db, "--frames", "--fps", 5, "--every", 2))
    assert r.exit_code == 0, r.output + r.stderr
    return frames, db, json.loads(r.stdout)


def test_index_a_folder_of_frames(folder_indexed):
    frames, db, out = folder_indexed
    (v,) = out["videos"]
    assert v["video"] == str(frames) and v["frames"] == N_FRAMES // 2
    assert v["tracks"] >= 2 and v["added"] == v["tracks"] == len(records(db))
    for r in records(db):
        meta = json.loads(Path(r.path).with_name(Path(r.path).name.rsplit("-", 1)[0] + ".json").read_text())
        assert meta["video"] == str(frames.resolve())
        assert [b[0] for b in meta["boxes"]] == list(range(meta["boxes"][0][0], 2 * len(meta["boxes"])
                                                           + meta["boxes"][0][0], 2))   # every 2nd frame


def test_index_a_folder_of_frames_honours_fps(folder_indexed):
    _, db, _ = folder_indexed
    for r in records(db):
        meta = json.loads(Path(r.path).with_name(Path(r.path).name.rsplit("-", 1)[0] + ".json").read_text())
        assert meta["fps"] == 5
        first, last = meta["boxes"][0], meta["boxes"][-1]
        assert meta["end"] - meta["start"] == pytest.approx((last[0] - first[0]) / 5, abs=1e-3)


# -- eval tracking ---------------------------------------------------------------------------

def test_eval_tracking_writes_json_and_png(runner, clip, tmp_path):
    out = tmp_path / "r.json"
    r = invoke(runner, "eval", "tracking", "--video", clip, "--gt", clip.parent / "gt.txt",
               "--out", out, "--no-progress")
    assert r.exit_code == 0, r.output + r.stderr
    data = json.loads(out.read_text())
    s = data["sequences"]["campus"]
    for k in ("mota", "idf1", "precision", "recall", "num_switches"):
        assert k in s
    assert s["recall"] > 30 and s["precision"] > 50 and s["mota"] > 0 and s["idf1"] > 30
    assert data["detector"] == "ssdlite"
    png = out.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "campus: MOTA" in r.stdout


def test_eval_tracking_needs_one_gt_per_video(runner, clip, tmp_path):
    r = invoke(runner, "eval", "tracking", "--video", clip, "--video", clip, "--gt", clip.parent / "gt.txt",
               "--out", tmp_path / "r.json", "--no-progress")
    assert r.exit_code == 2
    assert "2 --video but 1 --gt" in r.stderr
    assert not (tmp_path / "r.json").exists()
