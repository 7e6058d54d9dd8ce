"""``PersonService``: what the HTTP layer calls, independent of HTTP.

It owns

* the backend (records + indexes), used only on one dedicated "store" thread;
* the ingest path: in local mode a ``DynamicBatcher`` whose workers run ONE pipeline forward
  per batch (``PersonPipeline.process``: attributes, search and re-ID embeddings together) and
  store the records; in scale-out mode a Redis Streams queue read by ``personlens worker``
  processes (see ``redisq.py``);
* draining: ``begin_drain`` makes the HTTP layer refuse new requests while what is in flight
  finishes.

Crops are validated and decoded before they are queued (a bad image never enters the queue),
identified by the SHA-256 of their bytes, and a crop already stored by the current model is
answered from the store without inference.
"""
from __future__ import annotations

import asyncio
import io
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from PIL import Image

from ..data.images import ImageLoadError, decode_image
from ..fileperms import make_private_dirs, write_private
from ..inference.records import PersonRecord, content_id
from .batcher import DeadlineExceeded, DynamicBatcher, QueueFull, ShuttingDown
from .config import ServeConfig
from .metrics import ServiceMetrics

log = logging.getLogger("personlens.serve")

UPLOADS = "uploads"
FORMAT_EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "BMP": "bmp", "GIF": "gif", "TIFF": "tif"}

__all__ = ["Crop", "PersonService", "QueueFull", "DeadlineExceeded", "ShuttingDown", "decode_crop"]


@dataclass(eq=False)
class Crop:
    """One validated upload: its bytes, the decoded RGB image and what the client said about it."""
    id: str
    data: bytes
    image: Image.Image | None
    ext: str
    filename: str | None = None
    camera: str | None = None
    timestamp: float | None = None
    track_id: str | None = None
    path: str | None = None        # set when the crop is saved (or given a placeholder)


def decode_crop(data: bytes, filename: str | None, max_pixels: int) -> Crop:
    """Validate and decode one upload (``ImageLoadError`` with a one-line reason)."""
    img = decode_image(data, filename or "<upload>", max_pixels=max_pixels)
    try:
        fmt = Image.open(io.BytesIO(data)).format or ""
    except Exception:  # pragma: no cover - decode_image already read it
        fmt = ""
    return Crop(id=content_id(data), data=data, image=img, ext=FORMAT_EXT.get(fmt, "img"),
                filename=filename)


def upload_path(db: Path, cid: str, ext: str) -> Path:
    return Path(db).resolve() / UPLOADS / cid[:2] / f"{cid}.{ext}"


def save_upload(db: Path, crop: Crop) -> str:
    """Write the crop's bytes under DB/uploads (content-addressed, atomic) and return the path."""
    path = upload_path(db, crop.id, crop.ext)
    if not path.exists():
        make_private_dirs(path.parent)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
        write_private(tmp, crop.data)
        os.replace(tmp, path)
    return str(path)


def record_json(r: PersonRecord, score: float | None = None, rank: int | None = None, *,
                root: str | Path | None = None) -> dict:
    """A record as the API answers it: the one result schema (``library.results.result_json``,
    ``path`` relative to the library directory ``root``, else the file name only) plus
    ``image_url``."""
    from ..library.results import result_json

    d = result_json(r, score=score, rank=rank, root=root)
    d["image_url"] = f"/v1/persons/{r.id}/image"
    return d


class PersonService:
    def __init__(self, config: ServeConfig, *, pipeline=None,
                 backend_factory: Callable[[], Any] | None = None,
                 metrics: ServiceMetrics | None = None, queue=None):
        """``backend_factory`` (called on the store thread) defaults to a ``LibraryBackend``
        on ``config.db`` (or a ``StoreBackend`` on ``config.store_url``); ``pipeline`` is the
        ``PersonPipeline`` to use (default: loaded from the library's models); ``queue`` an
        ingest queue object (default: the in-process batcher, or Redis for ``queue_url``)."""
        self.config = config
        self.metrics = metrics or ServiceMetrics()
        self._pipeline = pipeline
        self._backend_factory = backend_factory
        self.backend = None
        self._store_exec = ThreadPoolExecutor(1, thread_name_prefix="personlens-store")
        # One lock around every use of the pipeline: forwards already use all cores, and the
        # text encoder's (Rust) tokenizer must not be called from two threads at once.
        self._infer_lock = threading.Lock()
        self._queries: OrderedDict[str, object] = OrderedDict()   # query text -> embedding
        self._queries_lock = threading.Lock()
        self.queue = queue
        self.batcher: DynamicBatcher | None = None
        self.draining = False
        self.ready = False
        self.inflight = 0          # HTTP requests being answered (kept by the HTTP layer)
        self.videos = None         # video jobs (``serve.videos``), made on start
        # large request bodies read and parsed at once (``uploads.body_slot``)
        self.body_slots = asyncio.Semaphore(config.max_parallel_bodies)
        # new crops being computed now: content id -> future (True: stored, False: gave up),
        # so a concurrent duplicate waits for the first instead of computing it again
        self._computing: dict[str, asyncio.Future] = {}

    # ------------------------------------------------------------------ lifetime
    async def start(self) -> None:
        self.backend = await self.call(self._make_backend)
        if getattr(self.backend, "root", ...) is None:
            self.backend.root = self.config.db     # where its uploads are: deleted with records
        from .videos import VideoJobs

        self.videos = VideoJobs(self, max_queued=self.config.max_video_jobs)
        if self.queue is None and self.config.queue_url:
            from .redisq import RedisIngestQueue

            self.queue = RedisIngestQueue(self.config.queue_url, stream=self.config.stream,
                                          queue_size=self.config.queue_size)
        if self.queue is not None:
            await self.queue.start()
        else:
            self.batcher = DynamicBatcher(
                self._run_batch, max_batch=self.config.max_batch, max_wait_s=self.config.max_wait_s,
                queue_size=self.config.queue_size, workers=self.config.workers,
                on_batch=self._on_batch, on_expired=lambda n: self.metrics.error("deadline", n))
            await self.batcher.start()
        self.metrics.queue_depth.set_function(lambda: self.depth)
        self.metrics.running.set_function(lambda: self.batcher.running if self.batcher else 0)
        self.metrics.inflight.set_function(lambda: self.inflight)
        self.ready = True

    def _make_backend(self):
        if self._backend_factory is not None:
            return self._backend_factory()
        if self.config.store_url:
            from ..store.postgres import PostgresStore
            from .backend import StoreBackend

            pipe = self._pipeline or _load_pipeline(self.config)
            return StoreBackend(PostgresStore(self.config.store_url, schema=self.config.store_schema), pipe,
                                root=self.config.db)
        from ..library import PersonLibrary
        from .backend import LibraryBackend

        c = self.config
        lib = PersonLibrary(c.db, par_dir=c.par_dir, search_head=c.search_head, reid_head=c.reid_head,
                            pipeline=self._pipeline, precision=c.precision, create=True)
        return LibraryBackend(lib)

    async def stop(self) -> None:
        self.draining = True
        if self.batcher is not None:
            await self.batcher.stop(drain=True, timeout=self.config.drain_timeout_s)
        if self.queue is not None:
            await self.queue.stop()
        if self.videos is not None:     # a running job ends at its next store call at the latest
            await asyncio.to_thread(self.videos.stop)
        if self.backend is not None:
            await self.call(self.backend.close)
            self.backend = None
        self._store_exec.shutdown(wait=True)

    def begin_drain(self) -> None:
        """Refuse new requests from now on; what is in flight goes on."""
        self.draining = True

    @property
    def depth(self) -> int:
        if self.batcher is not None:
            return self.batcher.depth
        return self.queue.depth if self.queue is not None else 0

    @property
    def idle(self) -> bool:
        busy = (self.batcher is not None and not self.batcher.idle) or \
               (self.queue is not None and not self.queue.idle)
        return self.inflight == 0 and not busy

    async def check_dependencies(self, timeout_s: float = 2.0) -> dict[str, str]:
        """``{"store": "ok" | "error: ...", "queue": ...}`` for the servers this service needs.

        Checked off the store thread (a busy writer must not make the service look dead).
        """
        checks: dict[str, str] = {}

        async def check(name, coro):
            try:
                await asyncio.wait_for(coro, timeout_s + 0.5)
                checks[name] = "ok"
            except Exception as e:  # noqa: BLE001 - any failure means "not ready"
                checks[name] = f"error: {type(e).__name__}: {e}"[:200]

        store = getattr(self.backend, "store", None)
        if store is not None:
            await check("store", asyncio.to_thread(store.ping, timeout_s))
        if self.queue is not None and hasattr(self.queue, "ping"):
            await check("queue", self.queue.ping(timeout_s))
        return checks

    async def call(self, fn, *args, **kw):
        """Run ``fn`` on the store thread (the only thread that touches the backend)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._store_exec, lambda: fn(*args, **kw))

    # ------------------------------------------------------------------ queries
    def encode_query(self, text: str, cache: int = 512):
        """A sentence's search embedding (LRU-cached; ValueError for an empty one)."""
        key = text.strip()
        with self._queries_lock:
            if key in self._queries:
                self._queries.move_to_end(key)
                return self._queries[key]
        with self._infer_lock:
            vec = self.backend.pipeline.encode_query(key)
        with self._queries_lock:
            self._queries[key] = vec
            while len(self._queries) > cache:
                self._queries.popitem(last=False)
        return vec

    async def search(self, text: str, top_k: int, where: dict, **filters):
        """[(score, record)] for a sentence; ``filters``: cameras, after, before, offset."""
        vec = await asyncio.to_thread(self.encode_query, text)
        return await self.call(lambda: self.backend.search_vector(vec, top_k, where, **filters))

    def embed_image(self, image: Image.Image):
        """A new image's re-ID embedding (under the inference lock; the all-camera adaptation)."""
        with self._infer_lock:
            pipe = self.backend.pipeline
            if hasattr(pipe, "use_camera"):
                pipe.use_camera(None)
            return pipe.reid_embeddings([image])[0]

    async def search_image(self, crop: Crop, top_k: int, where: dict, **filters):
        """[(score, record)] for people who look like the person in an uploaded crop. A crop
        already stored by the current model uses its stored embedding and is itself left out
        (as ``personlens similar``); ``filters``: cameras, after, before, exclude_cameras."""
        stored = await self.call(self.backend.get, crop.id)
        if stored is not None and stored.model_version == self.backend.model_version:
            vec = stored.reid_embedding
        else:
            vec = await asyncio.to_thread(self.embed_image, crop.image)
        return await self.call(lambda: self.backend.similar_vector(vec, top_k, where,
                                                                   exclude={crop.id}, **filters))

    # ------------------------------------------------------------------ ingest
    async def ingest(self, crops: list[Crop], deadline: float) -> list[tuple[PersonRecord, bool]]:
        """(record, created) per crop, in order. Raises QueueFull, DeadlineExceeded, ShuttingDown.

        ``created`` is True exactly once per new crop: on its first occurrence in the request
        that computed it. A crop another request is computing now is waited for (its answer
        is ``created: false``); should that request fail (deadline, full queue), the waiting
        one computes it itself.
        """
        if self.draining:
            raise ShuttingDown("the server is shutting down")
        loop = asyncio.get_running_loop()
        unique = list({c.id: c for c in crops}.values())
        created: set[str] = set()
        made: dict[str, PersonRecord] = {}
        while unique:
            mine, waits = [], {}
            for c in unique:        # no await in this loop: claiming is atomic on the event loop
                fut = self._computing.get(c.id)
                if fut is not None:
                    waits[c.id] = (c, fut)
                else:
                    self._computing[c.id] = loop.create_future()
                    mine.append(c)
            new: dict[str, PersonRecord] = {}
            ok = False
            try:
                if mine:
                    new = await self._compute_new(mine, deadline)
                ok = True
            finally:        # stored now (computed, or found stored), or not: tell the waiters
                for c in mine:
                    self._computing.pop(c.id).set_result(ok)
            made.update(new)
            created.update(new)
            unique = []
            if waits:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DeadlineExceeded("the request's deadline passed")
                futs = [f for _, f in waits.values()]
                try:   # shielded: giving up here must not cancel what other requests wait on
                    done = await asyncio.wait_for(asyncio.shield(asyncio.gather(*futs)), remaining)
                except asyncio.TimeoutError:
                    raise DeadlineExceeded("the request's deadline passed") from None
                # the request computing these gave up (deadline, full queue): compute them here
                unique = [c for (c, _), stored in zip(waits.values(), done) if not stored]
        self.metrics.crops.labels("created").inc(len(created))
        self.metrics.crops.labels("existing").inc(len(crops) - len(created))
        old = [i for i in dict.fromkeys(c.id for c in crops) if i not in made]
        if old:
            made.update({r.id: r for r in await self.call(self.backend.get_many, old)})
        first: set[str] = set()
        out = []
        for c in crops:
            out.append((made[c.id], c.id in created and c.id not in first))
            first.add(c.id)
        return out

    async def _compute_new(self, crops: list[Crop], deadline: float) -> dict[str, PersonRecord]:
        """The records of the crops not yet stored by the current model, computed now
        (batcher or Redis queue); crops already stored are left out."""
        mv = self.backend.model_version
        stored = await self.call(self.backend.existing, [c.id for c in crops])
        todo = [c for c in crops if stored.get(c.id) != mv]
        if not todo:
            return {}
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceeded("the request's deadline passed before it was queued")
        if self.batcher is not None:
            futures = self.batcher.submit(todo, deadline)
            try:
                results = await asyncio.wait_for(asyncio.gather(*futures), remaining)
            except asyncio.TimeoutError:
                raise DeadlineExceeded("the request's deadline passed") from None
            return {r.id: r for r in results}
        for c in todo:
            c.path = save_upload(self.config.db, c) if self.config.keep_uploads else f"upload:{c.id}"
        ids = await self.queue.submit(todo, deadline)
        return {r.id: r for r in await self.call(self.backend.get_many, ids)}

    def _run_batch(self, crops: list[Crop]) -> list[PersonRecord]:
        """On a worker thread: one forward for the batch, then one store transaction."""
        uniq = list({c.id: c for c in crops}.values())
        for c in uniq:
            if c.path is None:
                c.path = save_upload(self.config.db, c) if self.config.keep_uploads else f"upload:{c.id}"
        pipe = self.backend.pipeline
        with self._infer_lock:
            # each camera's crops with its adaptation (``personlens adapt``), if the library has one
            records = pipe.process_cameras([c.image for c in uniq], [c.path for c in uniq],
                                           [c.camera for c in uniq], ids=[c.id for c in uniq],
                                           timestamps=[c.timestamp for c in uniq],
                                           track_ids=[c.track_id for c in uniq])
        self._store_exec.submit(self.backend.add, records).result()
        by_id = {r.id: r for r in records}
        return [by_id[c.id] for c in crops]

    def _on_batch(self, size: int, seconds: float) -> None:
        self.metrics.batch_size.observe(size)
        self.metrics.batch_seconds.observe(seconds)

    # ------------------------------------------------------------------ thumbnails
    def thumbnail(self, path: str, size: int) -> bytes | None:
        """JPEG thumbnail of a stored crop's file (None when the file is gone or unreadable)."""
        p = Path(path)
        try:
            if not p.is_file() or p.stat().st_size > self.config.max_file_bytes * 4:
                return None
            img = decode_image(p.read_bytes(), str(p), max_pixels=self.config.max_pixels)
        except (OSError, ImageLoadError):
            return None
        img.thumbnail((size, size * 2))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=85)
        return buf.getvalue()


def _load_pipeline(c: ServeConfig):
    from ..inference.pipeline import PersonPipeline

    return PersonPipeline(c.par_dir, c.search_head, c.reid_head, precision=c.precision)
