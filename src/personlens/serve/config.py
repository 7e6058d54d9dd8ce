"""``ServeConfig``: every knob of ``personlens serve`` / ``personlens worker`` in one place."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

MiB = 1024 * 1024


@dataclass
class ServeConfig:
    db: Path = Path("personlens-db")        # library directory (local mode), token file, uploads
    host: str = "127.0.0.1"
    port: int = 8000
    # dynamic batching and the worker pool
    max_batch: int = 32                     # crops per pipeline forward
    max_wait_ms: float = 50.0               # how long a batch waits to fill, from its oldest crop
    queue_size: int = 256                   # crops waiting for a worker; more -> 503 + Retry-After
    workers: int = 1                        # inference threads (local) taking batches
    request_timeout_s: float = 30.0         # per-request deadline (a client may ask for less)
    retry_after_s: int = 1                  # the Retry-After header of 503 answers
    drain_timeout_s: float = 30.0           # SIGTERM: how long in-flight work may take to finish
    # input limits
    max_body_bytes: int = 32 * MiB          # whole request body -> 413 beyond
    max_file_bytes: int = 10 * MiB          # one crop -> 413 beyond
    max_files: int = 64                     # crops in one request -> 413 beyond
    max_pixels: int = 16_000_000            # decoded size of one crop -> 422 beyond
    max_json_depth: int = 32                # JSON bodies: nesting -> 400 beyond
    max_json_items: int = 1024              # JSON bodies: items of one array / object -> 413 beyond
    # slow or hostile clients (uvicorn settings and the guard middleware)
    header_timeout_s: float = 10.0          # a request head must arrive within this (408, closed)
    body_timeout_s: float = 15.0            # the whole body must arrive within this (408, closed)
    timeout_keep_alive_s: float = 5.0       # an idle keep-alive connection is closed after this
    limit_concurrency: int = 64             # requests answered at once; more -> 503 + Retry-After
                                            # (open connections: uvicorn refuses beyond 4x this)
    max_header_bytes: int = 16 * 1024       # an unfinished request head over this -> 400
    max_parallel_bodies: int = 2            # large bodies (> 1 MiB) read + parsed at once
    body_slot_wait_s: float = 5.0           # a large body waits this long for a slot, then 503
    # auth
    auth: bool = True
    token: str | None = None                # default: $PERSONLENS_TOKEN, else DB/serve-token
    # models (local mode; default: what the library remembers, else the shipped model)
    par_dir: Path | None = None
    search_head: Path | None = None
    reid_head: Path | None = None
    precision: str = "auto"
    # scale-out mode
    queue_url: str | None = None            # redis://host:port/db -> Redis Streams queue
    store_url: str | None = None            # postgresql://... -> PostgreSQL store
    store_schema: str = "public"            # PostgreSQL schema of the tables
    stream: str = "personlens:crops"        # Redis stream (and consumer group "workers")
    keep_uploads: bool = True               # keep uploaded crop bytes (thumbnails for the page)
    # video jobs (POST /v1/videos)
    video_dirs: tuple = ()                  # server folders whose videos a job may name by path
    max_video_jobs: int = 8                 # jobs waiting; more -> 503 + Retry-After
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.db = Path(self.db)
        self.video_dirs = tuple(Path(d).resolve() for d in self.video_dirs)
        for name in ("max_batch", "queue_size", "workers", "max_files", "max_video_jobs",
                     "max_json_depth", "max_json_items", "limit_concurrency", "max_parallel_bodies"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_wait_ms < 0:
            raise ValueError("max_wait_ms must be >= 0")
        if self.request_timeout_s <= 0:
            raise ValueError("request_timeout_s must be > 0")
        for name in ("header_timeout_s", "body_timeout_s", "timeout_keep_alive_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")

    @property
    def max_wait_s(self) -> float:
        return self.max_wait_ms / 1000.0
