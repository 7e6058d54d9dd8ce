"""Video jobs for the HTTP API: ``POST /v1/videos`` -> 202 + job id, ``GET /v1/videos/{id}``.

A video takes seconds to minutes, far beyond a request's deadline, so it is a job: queued
(bounded: a full queue is 503 + Retry-After), run one at a time on a job thread (detection
and tracking use every core already), its state and progress kept in memory and in
``DB/video-jobs/<id>.json`` so that a restarted server still answers for finished jobs. A
job that was queued or running when the server stopped is reported ``interrupted``;
submitting the video again finishes it without duplicates (tracks are keyed by content).

Store access goes through ``ServiceSink``: store calls run on the service's store thread, the
encoder under its inference lock, exactly like crops sent to ``POST /v1/persons``.
"""
from __future__ import annotations

import json
import os
import queue
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..fileperms import make_private_dirs, write_private
from ..library.video import LibrarySink

JOBS_DIR = "video-jobs"
UPLOADS_DIR = Path("uploads") / "videos"
STATES = ("queued", "running", "done", "failed", "interrupted")
KEEP_FINISHED_S = 7 * 24 * 3600      # finished jobs are answered for a week (across restarts)


class JobQueueFull(Exception):
    pass


@dataclass
class VideoJob:
    id: str
    video: str
    camera: str | None = None
    start: float | None = None
    every: int = 1
    state: str = "queued"
    frames_done: int = 0
    frames_total: int = 0
    summary: dict | None = None
    error: str | None = None
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["progress"] = round(self.frames_done / self.frames_total, 3) if self.frames_total else 0.0
        return d


class ServiceSink(LibrarySink):
    """``LibrarySink`` for a running service (local library or PostgreSQL store)."""

    def __init__(self, service):
        self.service = service
        self.db_dir = Path(service.config.db)

    def _store(self, fn, *args):
        return self.service._store_exec.submit(fn, *args).result()

    @property
    def pipeline(self):
        return self.service.backend.pipeline

    def get_meta(self, key):
        return self._store(self.service.backend.store.get_meta, key, None)

    def set_meta(self, key, value):
        self._store(self.service.backend.store.set_meta, key, value)

    def stored_version(self, rid):
        return self._store(self.service.backend.store.model_version_of, rid)

    def begin(self):
        pass   # the backend recorded its models when the service started

    def encode(self, *args):
        with self.service._infer_lock:
            return super().encode(*args)

    def commit(self, records):
        self._store(self.service.backend.add, records)

    def finish(self):
        lib = getattr(self.service.backend, "lib", None)
        if lib is not None:
            self._store(lib.save_indexes)


class VideoJobs:
    def __init__(self, service, max_queued: int = 8):
        self.service = service
        self.dir = Path(service.config.db) / JOBS_DIR
        make_private_dirs(self.dir)
        self._jobs: dict[str, VideoJob] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue(maxsize=max_queued)
        self._thread: threading.Thread | None = None
        self._detector = None
        self._stopping = threading.Event()
        self._load()

    # -------------------------------------------------------------- persistence
    def _load(self) -> None:
        old = time.time() - KEEP_FINISHED_S
        for f in self.dir.glob("*.json"):
            try:
                job = VideoJob(**json.loads(f.read_text()))
            except (OSError, ValueError, TypeError):
                continue
            if job.state not in ("queued", "running") and job.updated < old:
                f.unlink(missing_ok=True)     # finished long ago: forgotten
                continue
            if job.state in ("queued", "running"):
                job.state, job.error = "interrupted", "the server stopped before the job finished; submit it again"
                self._save(job)
            self._jobs[job.id] = job

    def _save(self, job: VideoJob) -> None:
        job.updated = time.time()
        tmp = self.dir / f".{job.id}.tmp"
        write_private(tmp, json.dumps(asdict(job)).encode())
        os.replace(tmp, self.dir / f"{job.id}.json")

    # -------------------------------------------------------------- API
    def submit(self, video: Path, camera: str | None, start: float | None, every: int) -> VideoJob:
        job = VideoJob(uuid.uuid4().hex, str(video), camera, start, every)
        with self._lock:
            try:
                self._queue.put_nowait(job.id)
            except queue.Full:
                raise JobQueueFull(f"{self._queue.maxsize} video jobs are already waiting") from None
            self._jobs[job.id] = job
            self._save(job)
        self._ensure_thread()
        return job

    def uses(self, video: Path) -> bool:
        """Does a queued or running job read this file?"""
        with self._lock:
            return any(j.video == str(video) and j.state in ("queued", "running") for j in self._jobs.values())

    def get(self, job_id: str) -> VideoJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="personlens-video", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """No new job starts; queued ones stay ``queued`` on disk and read ``interrupted`` on
        the next start."""
        self._stopping.set()
        try:
            self._queue.put_nowait(None)     # wake the thread if it waits
        except queue.Full:
            pass
        if self._thread is not None:
            self._thread.join(timeout)

    # -------------------------------------------------------------- the job thread
    def _run(self) -> None:
        from ..data.video import VideoError
        from ..library.video import index_video
        from ..models.factory import create_detector
        from ..video.runner import VideoSettings

        while True:
            job_id = self._queue.get()
            if job_id is None or self._stopping.is_set():
                return
            job = self.get(job_id)
            if job is None:
                continue
            job.state = "running"
            self._save(job)

            def progress(done, total, job=job):
                job.frames_done, job.frames_total = done, total

            try:
                settings = VideoSettings(every=job.every)
                if self._detector is None:
                    self._detector = create_detector(settings.detector)
                s = index_video(ServiceSink(self.service), job.video, camera=job.camera, start=job.start,
                                settings=settings, detector=self._detector, progress=False,
                                on_frame=progress)
                job.summary, job.state = s.to_dict(), "done"
                if s.stopped_early:
                    job.error = "decoding stopped before the stated end (truncated or damaged file)"
            except VideoError as e:
                job.state, job.error = "failed", e.reason
            except Exception as e:  # noqa: BLE001 - a job must never kill the job thread
                if self._stopping.is_set():
                    job.state, job.error = "interrupted", "the server stopped during the job; submit it again"
                else:
                    job.state, job.error = "failed", f"{type(e).__name__}: {e}"[:500]
            self._save(job)
