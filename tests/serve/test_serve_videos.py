"""Video jobs over HTTP: ``POST /v1/videos`` (a path under ``--video-dir`` or an upload) ->
202 + job; ``GET /v1/videos/{id}`` until done; one record per track, searchable, with its
time span and thumbnail; the same video again adds nothing; refusals are 4xx, never 5xx;
a full job queue is 503 + Retry-After; a restarted server reads unfinished jobs as
``interrupted``; a failing job does not take the job thread with it.

The indexing tests run the shipped models and detector on a 24-frame clip of TUD-Campus
(skipped without ``../shared/data/video``); the rest run on a fake pipeline with
``index_video`` replaced, on a small synthetic clip.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from video_testlib import write_clip
from fastapi.testclient import TestClient
from serve_testlib import FakePipeline

import personlens.library.video as library_video
import personlens.models.factory as model_factory
from personlens.data.video import VideoError
from personlens.library.video import VideoIndexSummary
from personlens.serve.app import create_app
from personlens.serve.config import ServeConfig
from personlens.serve.service import PersonService
from personlens.serve.videos import JOBS_DIR, ServiceSink, VideoJobs

VIDEO_DATA = Path(__file__).resolve().parents[2].parent / "shared/data/video"
CAMPUS = VIDEO_DATA / "TUD-Campus" / "TUD-Campus.mp4"
needs_campus = pytest.mark.skipif(not CAMPUS.is_file(), reason="needs ../shared/data/video/TUD-Campus")

START = "2026-11-29T14:00:00Z"
START_S = datetime.fromisoformat(START).timestamp()
CLIP_FRAMES, FPS = 24, 25.0
UNFINISHED = ("queued", "running")


# ---------------------------------------------------------------------- helpers
def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wait(client, job_id: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        r = client.get(f"/v1/videos/{job_id}")
        assert r.status_code == 200, r.text
        job = r.json()["job"]
        if job["state"] not in UNFINISHED:
            return job
        assert time.monotonic() < deadline, f"job still {job['state']}: {job}"
        time.sleep(0.1)


def submit_path(client, path, **fields):
    body = json.dumps({"path": str(path), **fields})      # Infinity and NaN as Python writes them
    return client.post("/v1/videos", content=body, headers={"content-type": "application/json"})


def upload(client, data: bytes, name="clip.mp4", ctype="video/mp4", **fields):
    return client.post("/v1/videos", files=[("file", (name, data, ctype))],
                       data={k: str(v) for k, v in fields.items()})


def uploads_dir(client) -> Path:
    return Path(client.service.config.db) / "uploads" / "videos"


def stored_uploads(client) -> list[str]:
    d = uploads_dir(client)
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


@contextlib.contextmanager
def serve(db: Path, pipeline=None, **cfg):
    """A service on ``db`` (auth off) behind a TestClient; the client carries ``.service``."""
    service = PersonService(ServeConfig(db=db, auth=False, **cfg), pipeline=pipeline or FakePipeline())
    with TestClient(create_app(service, None)) as c:
        c.service = service
        yield c


@pytest.fixture()
def fake_indexer(monkeypatch):
    """``index_video`` and the detector replaced (before a job thread starts, which is when
    the job thread looks them up): ``script`` lists what each call does in turn, an
    exception to raise or a function ``(sink, path, kw) -> summary``; by default a summary
    of two tracks."""
    state = SimpleNamespace(calls=[], script=[], entered=threading.Event())

    def index_video(sink, path, **kw):
        state.calls.append((sink, path, kw))
        state.entered.set()
        action = state.script.pop(0) if state.script else None
        if isinstance(action, BaseException):
            raise action
        if callable(action):
            return action(sink, path, kw)
        return VideoIndexSummary(video=str(path), camera=kw.get("camera"), tracks=2, added=2, frames=4)

    monkeypatch.setattr(library_video, "index_video", index_video)
    monkeypatch.setattr(model_factory, "create_detector", lambda *a, **k: object())
    return state


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def allowed(tmp_path_factory) -> Path:
    """The server's video folder: a small synthetic clip (noise.mp4) and a text file; beside
    it, outside, a copy of the clip (elsewhere/noise.mp4)."""
    root = tmp_path_factory.mktemp("video-root")
    d = root / "videos"
    d.mkdir()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8) for _ in range(6)]
    write_clip(d / "noise.mp4", frames)
    (d / "gt.txt").write_text("1,1,10,10,20,40,1,-1,-1,-1\n")
    (root / "elsewhere").mkdir()
    (root / "elsewhere" / "noise.mp4").write_bytes((d / "noise.mp4").read_bytes())
    return d


@pytest.fixture(scope="module")
def campus(allowed) -> SimpleNamespace:
    """Two 24-frame clips of TUD-Campus in the video folder: a (frames 1-24, indexed by
    path) and b (frames 25-48, uploaded)."""
    if not CAMPUS.is_file():
        pytest.skip("needs ../shared/data/video/TUD-Campus")
    cap = cv2.VideoCapture(str(CAMPUS))
    frames = []
    for _ in range(2 * CLIP_FRAMES):
        ok, img = cap.read()
        assert ok
        frames.append(img)
    cap.release()
    return SimpleNamespace(a=write_clip(allowed / "campus-a.mp4", frames[:CLIP_FRAMES]),
                           b=write_clip(allowed / "campus-b.mp4", frames[CLIP_FRAMES:]))


@pytest.fixture(scope="module")
def shipped_client(tmp_path_factory, allowed, campus):
    """A service on the shipped models that may read videos from ``allowed``."""
    from personlens.inference.pipeline import PersonPipeline

    db = tmp_path_factory.mktemp("serve-videos") / "db"
    with serve(db, PersonPipeline(), video_dirs=(allowed,)) as c:
        yield c


@pytest.fixture(scope="module")
def indexed_a(shipped_client, campus) -> tuple[dict, dict]:
    """Clip a submitted by path: (the 202 answer with its Location, the finished job)."""
    r = submit_path(shipped_client, campus.a, camera="campus", start=START, every=3)
    assert r.status_code == 202, r.text
    first = {"status": r.status_code, "location": r.headers.get("location"), "job": r.json()["job"]}
    return first, wait(shipped_client, first["job"]["id"])


@pytest.fixture(scope="module")
def fake_client(tmp_path_factory, allowed):
    """A service on the fake pipeline that may read videos from ``allowed`` (for refusals)."""
    with serve(tmp_path_factory.mktemp("serve-fake") / "db", video_dirs=(allowed,)) as c:
        yield c


# ---------------------------------------------------------------------- indexing (shipped models)
@needs_campus
def test_path_job_indexes_tracks(shipped_client, campus, indexed_a):
    first, job = indexed_a
    assert first["status"] == 202
    jid = first["job"]["id"]
    assert first["location"] == f"/v1/videos/{jid}"
    assert first["job"]["state"] in ("queued", "running") and first["job"]["every"] == 3
    assert job["state"] == "done", job
    assert job["error"] is None and job["video"] == str(campus.a.resolve())
    assert (job["camera"], job["start"], job["every"]) == ("campus", START_S, 3)
    assert job["frames_done"] == job["frames_total"] == CLIP_FRAMES // 3 and job["progress"] == 1.0
    s = job["summary"]
    assert s["tracks"] >= 1 and s["added"] == s["tracks"] and s["skipped_existing"] == 0
    assert s["frames"] == CLIP_FRAMES // 3 and not s["already_indexed"] and not s["stopped_early"]
    assert shipped_client.get("/v1/info").json()["records"] == s["tracks"]
    # the job is kept on disk
    on_disk = json.loads((Path(shipped_client.service.config.db) / JOBS_DIR / f"{jid}.json").read_text())
    assert on_disk["state"] == "done" and on_disk["summary"]["added"] == s["added"]


@needs_campus
def test_tracks_are_searchable_with_their_time_span_and_thumbnail(shipped_client, campus, indexed_a):
    tracks = indexed_a[1]["summary"]["tracks"]
    r = shipped_client.get("/v1/search", params={"q": "a person", "top_k": 100})
    assert r.status_code == 200, r.text
    results = [x for x in r.json()["results"] if x["camera"] == "campus"]     # clip a's
    assert len(results) == tracks
    digest16 = sha256(campus.a)[:16]
    clip_end = START_S + CLIP_FRAMES / FPS
    for rec in results:
        assert rec["camera"] == "campus"
        assert rec["track_id"].startswith(f"{digest16}/")
        t = rec["track"]
        assert "crops" not in t and isinstance(t["uncertain"], list)
        assert t["video"] == campus.a.name          # outside the library: the file name only
        assert rec["path"].startswith(f"video/{digest16}/track-")   # inside it: relative
        assert START_S <= t["start"] <= t["end"] <= clip_end + 1e-6
        assert rec["timestamp"] == pytest.approx(t["start"])
        assert t["frames"] >= 1
        assert rec["description"]
    # the same records when browsing, and one by id
    got = shipped_client.get(f"/v1/persons/{results[0]['id']}").json()
    assert got["track"] == results[0]["track"] and got["track_id"] == results[0]["track_id"]
    img = shipped_client.get(results[0]["image_url"])
    assert img.status_code == 200 and img.headers["content-type"] == "image/jpeg"
    assert img.content[:3] == b"\xff\xd8\xff" and len(img.content) > 500


@needs_campus
def test_upload_job_stores_the_video_by_content(shipped_client, campus, indexed_a):
    before = shipped_client.get("/v1/info").json()["records"]
    data = campus.b.read_bytes()
    r = upload(shipped_client, data, name="Campus B.MP4", camera="campus-up", start=START, every=3)
    assert r.status_code == 202, r.text
    assert r.headers["location"] == f"/v1/videos/{r.json()['job']['id']}"
    job = wait(shipped_client, r.json()["job"]["id"])
    assert job["state"] == "done", job
    stored = uploads_dir(shipped_client) / f"{hashlib.sha256(data).hexdigest()}.mp4"
    assert stored.is_file() and stored.read_bytes() == data
    assert Path(job["video"]) == stored.resolve() or Path(job["video"]) == stored
    assert (job["camera"], job["start"], job["every"]) == ("campus-up", START_S, 3)
    s = job["summary"]
    assert s["tracks"] >= 1 and s["added"] == s["tracks"] and not s["already_indexed"]
    assert shipped_client.get("/v1/info").json()["records"] == before + s["tracks"]
    assert [p for p in stored_uploads(shipped_client) if p.startswith(".")] == []   # no temporary left
    cams = {x["camera"] for x in shipped_client.get("/v1/search", params={"top_k": 100}).json()["results"]}
    assert cams == {"campus", "campus-up"}


@needs_campus
def test_the_same_video_again_adds_nothing(shipped_client, campus, indexed_a):
    tracks = indexed_a[1]["summary"]["tracks"]
    before = shipped_client.get("/v1/info").json()["records"]
    ids_before = {x["id"] for x in shipped_client.get("/v1/search", params={"top_k": 100}).json()["results"]}
    # by path, and by path spelt differently (through "..")
    for path in (campus.a, campus.a.parent / ".." / campus.a.parent.name / campus.a.name):
        r = submit_path(shipped_client, path, camera="campus", start=START, every=3)
        assert r.status_code == 202, r.text
        job = wait(shipped_client, r.json()["job"]["id"])
        assert job["state"] == "done", job
        assert job["summary"]["already_indexed"] is True
        assert job["summary"]["added"] == 0 and job["summary"]["tracks"] == tracks
    # uploaded: the same bytes under another name are the same video
    data = campus.a.read_bytes()
    r = upload(shipped_client, data, name="copy.mp4", camera="campus", start=START, every="3")
    assert r.status_code == 202, r.text
    job = wait(shipped_client, r.json()["job"]["id"])
    assert job["state"] == "done", job
    assert job["summary"]["already_indexed"] is True and job["summary"]["added"] == 0
    assert (uploads_dir(shipped_client) / f"{hashlib.sha256(data).hexdigest()}.mp4").is_file()
    # under another camera name it is tracked again, but every track is already stored
    r = submit_path(shipped_client, campus.a, camera="campus-2", start=START, every=3)
    job = wait(shipped_client, r.json()["job"]["id"])
    assert job["state"] == "done", job
    assert job["summary"]["added"] == 0 and job["summary"]["skipped_existing"] == tracks
    assert shipped_client.get("/v1/info").json()["records"] == before
    ids_after = {x["id"] for x in shipped_client.get("/v1/search", params={"top_k": 100}).json()["results"]}
    assert ids_after == ids_before


# ---------------------------------------------------------------------- refusals (fake pipeline)
def test_paths_outside_the_video_folders_are_forbidden(fake_client, allowed):
    outside = allowed.parent / "elsewhere" / "noise.mp4"
    assert outside.is_file()
    r = submit_path(fake_client, outside)
    assert r.status_code == 403, r.text
    assert "video-dir" in r.json()["detail"]
    # ".." that leaves the folder
    r = submit_path(fake_client, f"{allowed}/../elsewhere/noise.mp4")
    assert r.status_code == 403, r.text
    r = submit_path(fake_client, allowed / ".." / ".." / ".." / "etc" / "passwd")
    assert r.status_code == 403, r.text
    # a folder whose name merely starts with the allowed one's
    twin = allowed.parent / f"{allowed.name}-twin"
    twin.mkdir(exist_ok=True)
    (twin / "noise.mp4").write_bytes(outside.read_bytes())
    assert submit_path(fake_client, twin / "noise.mp4").status_code == 403
    # a symbolic link inside the folder to a file outside it
    link = allowed / "link-out.mp4"
    if not link.exists():
        link.symlink_to(outside)
    assert submit_path(fake_client, link).status_code == 403
    # the same file inside the folder is fine
    r = submit_path(fake_client, allowed / "noise.mp4")
    assert r.status_code == 202, r.text
    wait(fake_client, r.json()["job"]["id"])


def test_a_server_without_video_folders_takes_no_paths(tmp_path, allowed):
    with serve(tmp_path / "db") as c:
        for p in (allowed / "noise.mp4", "/etc/passwd", "relative.mp4"):
            r = submit_path(c, p)
            assert r.status_code == 403, r.text
            assert "upload" in r.json()["detail"]
        assert list((tmp_path / "db" / JOBS_DIR).glob("*.json")) == []


def test_files_that_are_not_usable_videos(fake_client, allowed):
    # a text file, a missing file, a folder, inside the allowed folder
    for p in (allowed / "gt.txt", allowed / "missing.mp4", allowed):
        r = submit_path(fake_client, p)
        assert r.status_code == 422, (p, r.status_code, r.text)
    for bad in ("", None, 5, ["a.mp4"], "x" * 5000):
        r = fake_client.post("/v1/videos", json={"path": bad})
        assert r.status_code == 422, (bad, r.text)
    before = stored_uploads(fake_client)
    # random bytes named .mp4: refused and not kept
    blob = np.random.default_rng(1).bytes(20_000)
    r = upload(fake_client, blob, name="random.mp4")
    assert r.status_code == 422, r.text
    assert r.json()["detail"]
    assert not (uploads_dir(fake_client) / f"{hashlib.sha256(blob).hexdigest()}.mp4").exists()
    # a real video named .txt, and one with no name
    data = (allowed / "noise.mp4").read_bytes()
    assert upload(fake_client, data, name="noise.txt", ctype="text/plain").status_code == 422
    assert upload(fake_client, data, name="noise").status_code == 422
    # a form without the file
    r = fake_client.post("/v1/videos", data={"camera": "c"}, files=[("other", ("a.mp4", data, "video/mp4"))])
    assert r.status_code == 422, r.text
    assert stored_uploads(fake_client) == before
    assert fake_client.service.videos.depth == 0


@pytest.mark.parametrize("fields,multipart", [
    ({"every": 0}, True), ({"every": "x"}, True), ({"every": -3}, True), ({"every": 101}, True),
    ({"every": "2.5"}, True), ({"every": 2.5}, False), ({"every": True}, False),
    ({"every": float("inf")}, False), ({"every": float("nan")}, False), ({"every": "1e999"}, True),
    ({"start": "yesterday"}, True), ({"start": "2026-13-45T00:00:00Z"}, True), ({"start": "nan"}, True),
    ({"start": [1, 2]}, False), ({"camera": 7}, False), ({"camera": "c" * 1000}, True)])
def test_bad_fields_are_422(fake_client, allowed, fields, multipart):
    jobs = len(list((Path(fake_client.service.config.db) / JOBS_DIR).glob("*.json")))
    stored = stored_uploads(fake_client)
    r = submit_path(fake_client, allowed / "noise.mp4", **fields)
    assert r.status_code == 422, (fields, r.status_code, r.text)
    if multipart:      # the same field in an upload
        r = upload(fake_client, (allowed / "noise.mp4").read_bytes(), **fields)
        assert r.status_code == 422, (fields, r.status_code, r.text)
    assert len(list((Path(fake_client.service.config.db) / JOBS_DIR).glob("*.json"))) == jobs
    assert stored_uploads(fake_client) == stored


def test_good_fields_are_read(fake_client, allowed):
    r = submit_path(fake_client, allowed / "noise.mp4", every="7", start=1700000000.5, camera="door")
    assert r.status_code == 202, r.text
    job = r.json()["job"]
    assert (job["every"], job["start"], job["camera"]) == (7, 1700000000.5, "door")
    wait(fake_client, job["id"])


def test_malformed_requests_are_4xx_never_5xx(fake_client):
    def post(body: bytes, ctype: str | None = "application/json"):
        headers = {"content-type": ctype} if ctype else {}
        return fake_client.post("/v1/videos", content=body, headers=headers)

    for body in (b"{not json", b"", b"\xff\xfe\x00", b"[" * 5000, b'{"path": ' * 5000,
                 b'{"path": "a.mp4"' + b"}" * 3,
                 b"[" * 50 + b"]" * 50):             # valid JSON, but nested deeper than 32
        r = post(body)
        assert r.status_code == 400, (body[:20], r.status_code, r.text)
    for body in (b"[]", b'"a.mp4"', b"null", b"3", b'{"a": 1e999999}', b"[" * 20 + b"]" * 20):
        r = post(body)
        assert r.status_code == 422, (body[:20], r.status_code, r.text)
    for ctype in ("text/plain", "application/octet-stream", "video/mp4", None):
        r = post(b'{"path": "x.mp4"}', ctype)
        assert r.status_code == 415, (ctype, r.status_code, r.text)
    # a multipart body that does not parse
    r = post(b"--xyz\r\nnonsense", "multipart/form-data; boundary=xyz")
    assert 400 <= r.status_code < 500, r.text
    r = post(b"whatever", "multipart/form-data")          # no boundary
    assert 400 <= r.status_code < 500, r.text


def test_unknown_jobs_are_404(fake_client):
    for jid in ("0" * 32, "f" * 32, "abc", "0" * 31 + "g", "0" * 33, "..%2f..%2fetc"):
        r = fake_client.get(f"/v1/videos/{jid}")
        assert r.status_code == 404, (jid, r.status_code)


# ---------------------------------------------------------------------- the job queue
def test_a_full_queue_is_503_with_retry_after(tmp_path, allowed, fake_indexer):
    release = threading.Event()

    def slow(sink, path, kw):
        kw["on_frame"](2, 8)                   # progress, then wait
        release.wait(30)
        return VideoIndexSummary(str(path), None)

    fake_indexer.script = [slow]
    video = allowed / "noise.mp4"
    with serve(tmp_path / "db", video_dirs=(allowed,), max_video_jobs=1) as c:
        try:
            r1 = submit_path(c, video)
            assert r1.status_code == 202, r1.text
            assert fake_indexer.entered.wait(30), "the first job never started"
            running = c.get(f"/v1/videos/{r1.json()['job']['id']}").json()["job"]
            assert running["state"] == "running"
            assert (running["frames_done"], running["frames_total"], running["progress"]) == (2, 8, 0.25)
            r2 = submit_path(c, video)                      # waits in the queue (one place)
            assert r2.status_code == 202, r2.text
            assert c.get(f"/v1/videos/{r2.json()['job']['id']}").json()["job"]["state"] == "queued"
            for r in (submit_path(c, video), upload(c, video.read_bytes())):
                assert r.status_code == 503, r.text
                assert int(r.headers["retry-after"]) >= 1
            assert len(list((tmp_path / "db" / JOBS_DIR).glob("*.json"))) == 2   # refused jobs are not kept
        finally:
            release.set()
        assert wait(c, r1.json()["job"]["id"])["state"] == "done"
        assert wait(c, r2.json()["job"]["id"])["state"] == "done"
        # room again
        r = submit_path(c, video)
        assert r.status_code == 202 and wait(c, r.json()["job"]["id"])["state"] == "done"
    assert len(fake_indexer.calls) == 3


def test_a_failing_job_does_not_stop_the_job_thread(tmp_path, allowed, fake_indexer):
    fake_indexer.script = [RuntimeError("disk on fire"), VideoError("noise.mp4", "cannot decode frame 3"),
                           None]
    video = allowed / "noise.mp4"
    with serve(tmp_path / "db", video_dirs=(allowed,)) as c:
        ids = []
        for every in (1, 2, 3):
            r = submit_path(c, video, camera="gate", start=START, every=every)
            assert r.status_code == 202, r.text
            ids.append(r.json()["job"]["id"])
        jobs = [wait(c, i) for i in ids]
        thread = c.service.videos._thread
        assert thread is not None and thread.is_alive()
    assert [j["state"] for j in jobs] == ["failed", "failed", "done"]
    assert jobs[0]["error"] == "RuntimeError: disk on fire" and jobs[0]["summary"] is None
    assert jobs[1]["error"] == "cannot decode frame 3"
    assert jobs[2]["error"] is None and jobs[2]["summary"]["added"] == 2
    # what the job thread passed on
    for (sink, path, kw), every in zip(fake_indexer.calls, (1, 2, 3)):
        assert isinstance(sink, ServiceSink) and Path(path) == video.resolve()
        assert kw["camera"] == "gate" and kw["start"] == START_S and kw["settings"].every == every
    # and kept on disk
    for j in jobs:
        on_disk = json.loads((tmp_path / "db" / JOBS_DIR / f"{j['id']}.json").read_text())
        assert (on_disk["state"], on_disk["error"]) == (j["state"], j["error"])


def test_a_draining_server_takes_no_video(tmp_path, allowed, fake_indexer):
    with serve(tmp_path / "db", video_dirs=(allowed,)) as c:
        c.service.begin_drain()
        r = submit_path(c, allowed / "noise.mp4")
        assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
        c.service.draining = False
    assert fake_indexer.calls == []
    assert list((tmp_path / "db" / JOBS_DIR).glob("*.json")) == []


# ---------------------------------------------------------------------- restarts
def _job_file(db: Path, jid: str, state: str, **kw) -> None:
    d = db / JOBS_DIR
    d.mkdir(parents=True, exist_ok=True)
    doc = {"id": jid, "video": "/videos/x.mp4", "camera": "c", "start": None, "every": 1, "state": state,
           "frames_done": 3, "frames_total": 10, "summary": None, "error": None,
           "created": time.time() - 60, "updated": time.time() - 30, **kw}
    (d / f"{jid}.json").write_text(json.dumps(doc))


def test_unfinished_jobs_read_back_as_interrupted(tmp_path):
    db = tmp_path / "db"
    running, queued, done, failed = (f"{i:032x}" for i in range(1, 5))
    _job_file(db, running, "running")
    _job_file(db, queued, "queued")
    _job_file(db, done, "done", summary={"tracks": 3, "added": 3})
    _job_file(db, failed, "failed", error="boom")
    stale = f"{9:032x}"
    _job_file(db, stale, "done", updated=time.time() - 8 * 24 * 3600)   # finished over a week ago
    (db / JOBS_DIR / "broken.json").write_text("{not json")
    (db / JOBS_DIR / "wrong.json").write_text(json.dumps({"id": "x", "surprise": 1}))

    jobs = VideoJobs(SimpleNamespace(config=SimpleNamespace(db=db)))
    assert jobs.get(stale) is None and not (db / JOBS_DIR / f"{stale}.json").exists()
    assert jobs.get(running).state == "interrupted" and "again" in jobs.get(running).error
    assert jobs.get(queued).state == "interrupted"
    assert jobs.get(done).state == "done" and jobs.get(done).summary == {"tracks": 3, "added": 3}
    assert jobs.get(failed).state == "failed" and jobs.get(failed).error == "boom"
    # written back, so the next start agrees
    assert json.loads((db / JOBS_DIR / f"{running}.json").read_text())["state"] == "interrupted"

    _job_file(db, running, "running")          # as if the server died again mid-job
    with serve(db) as c:
        job = c.get(f"/v1/videos/{running}").json()["job"]
        assert job["state"] == "interrupted" and job["error"]
        assert job["frames_done"] == 3 and job["progress"] == 0.3
        assert c.get(f"/v1/videos/{done}").json()["job"]["state"] == "done"
        assert c.get(f"/v1/videos/{'9' * 32}").status_code == 404


def test_a_stopped_server_leaves_queued_jobs_to_be_submitted_again(tmp_path, allowed, fake_indexer):
    """Stopping: the running job finishes, the queued one does not start; the next server
    reports it ``interrupted``."""
    release = threading.Event()
    fake_indexer.script = [lambda sink, path, kw: (release.wait(30), VideoIndexSummary(str(path), None))[1]]
    db = tmp_path / "db"
    with serve(db, video_dirs=(allowed,), max_video_jobs=2) as c:
        first = submit_path(c, allowed / "noise.mp4").json()["job"]["id"]
        assert fake_indexer.entered.wait(30)
        second = submit_path(c, allowed / "noise.mp4").json()["job"]["id"]
        videos = c.service.videos
        # let the running job end only once the server is stopping
        threading.Thread(target=lambda: (videos._stopping.wait(30), release.set()), daemon=True).start()
    release.set()
    assert len(fake_indexer.calls) == 1
    on_disk = {j: json.loads((db / JOBS_DIR / f"{j}.json").read_text())["state"] for j in (first, second)}
    assert on_disk == {first: "done", second: "queued"}
    with serve(db, video_dirs=(allowed,)) as c:
        assert c.get(f"/v1/videos/{first}").json()["job"]["state"] == "done"
        assert c.get(f"/v1/videos/{second}").json()["job"]["state"] == "interrupted"
    assert len(fake_indexer.calls) == 1


def test_the_job_files_are_written_atomically(tmp_path, allowed, fake_indexer):
    with serve(tmp_path / "db", video_dirs=(allowed,)) as c:
        jid = submit_path(c, allowed / "noise.mp4").json()["job"]["id"]
        wait(c, jid)
    names = os.listdir(tmp_path / "db" / JOBS_DIR)
    assert names == [f"{jid}.json"]
