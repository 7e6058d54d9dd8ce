"""Scale-out mode: a Redis Streams queue between the API and ``personlens worker`` processes.

API side (``RedisIngestQueue``): validated crops are added to the stream ``STREAM`` (bytes,
content id, where the crop was saved, camera/timestamp/track, an absolute deadline and the
request's reply list) by one Lua script that refuses the whole request when the stream already
holds ``queue_size`` entries (-> 503 + Retry-After). The request then waits on its reply list
(``BLPOP``) until every crop is answered or its deadline passes (-> 504).

Worker side (``Worker``): ``XREADGROUP`` in the consumer group ``workers`` (up to ``max_batch``
entries, waiting up to ``max_wait_s`` to fill a batch), one pipeline forward per batch, one
store transaction (upsert keyed by content hash: writing twice is harmless), and only then
``XACK`` + ``XDEL`` and the replies. Entries whose deadline passed are acknowledged without
inference. A worker that dies leaves its entries pending; any live worker takes them over with
``XAUTOCLAIM`` once they have been idle ``claim_idle_s``; a crop already stored by the current
model is not computed again. An entry delivered ``max_deliveries`` times is moved to the
``STREAM:dead`` stream and answered with an error (poison message).

Stream length = crops waiting + crops being processed (entries are deleted once acknowledged).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import time
import uuid

from ..data.images import ImageLoadError, decode_image
from .batcher import DeadlineExceeded, QueueFull

log = logging.getLogger("personlens.worker")

GROUP = "workers"
REPLY_TTL_S = 300
SOCKET_TIMEOUT_S = 15.0    # above every blocking call we make (BLPOP <= 2 s, XREADGROUP <= block_s)


class QueueUnavailable(Exception):
    """Redis cannot be reached (answer 503)."""

# KEYS[1] stream; ARGV[1] max length, ARGV[2] number of entries, ARGV[3] fields per entry,
# then the entries' field/value pairs. Returns the stream length after, or -1 when full.
_ADD_LUA = """
local n = tonumber(ARGV[2])
local len = redis.call('XLEN', KEYS[1])
if len + n > tonumber(ARGV[1]) then return -1 end
local per = tonumber(ARGV[3])
local pos = 4
for i = 1, n do
  local args = {}
  for j = 1, per do args[j] = ARGV[pos]; pos = pos + 1 end
  redis.call('XADD', KEYS[1], '*', unpack(args))
end
return len + n
"""


def _ensure_group(r, stream: str) -> None:
    import redis

    try:
        r.xgroup_create(stream, GROUP, id="0", mkstream=True)
    except redis.ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise


class RedisIngestQueue:
    """The API's side of the queue (asyncio)."""

    def __init__(self, url: str, stream: str = "personlens:crops", queue_size: int = 256):
        self.url = url
        self.stream = stream
        self.queue_size = int(queue_size)
        self._r = None
        self._waiting = 0
        self._depth = 0

    async def start(self) -> None:
        import redis
        import redis.asyncio as aredis

        sync = redis.Redis.from_url(self.url, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=5)
        try:
            _ensure_group(sync, self.stream)
        finally:
            sync.close()
        self._r = aredis.Redis.from_url(self.url, socket_timeout=SOCKET_TIMEOUT_S,
                                        socket_connect_timeout=5)
        self._add = self._r.register_script(_ADD_LUA)
        self._depth = await self._r.xlen(self.stream)

    async def stop(self) -> None:
        if self._r is not None:
            await self._r.aclose()
            self._r = None

    @property
    def depth(self) -> int:
        """Stream length when last looked at (crops waiting + being processed)."""
        return self._depth

    async def refresh(self) -> int:
        import redis

        try:
            self._depth = await self._r.xlen(self.stream)
        except (redis.ConnectionError, redis.TimeoutError):
            pass  # keep the last value; /healthz and ingest report the outage
        return self._depth

    @property
    def idle(self) -> bool:
        return self._waiting == 0

    async def ping(self, timeout_s: float = 2.0) -> None:
        """Raise if Redis does not answer within ``timeout_s``."""
        await asyncio.wait_for(self._r.ping(), timeout_s)

    async def submit(self, crops, deadline: float) -> list[str]:
        """Queue crops (all or none) and wait for the workers; returns their ids when stored."""
        import redis

        try:
            return await self._submit(crops, deadline)
        except (redis.ConnectionError, redis.TimeoutError) as e:
            raise QueueUnavailable(f"the queue is unavailable ({type(e).__name__})") from None

    async def _submit(self, crops, deadline: float) -> list[str]:
        remaining = deadline - time.monotonic()
        wall_deadline = time.time() + remaining
        reply = f"{self.stream}:reply:{uuid.uuid4().hex}"
        fields = []
        for c in crops:
            entry = {"id": c.id, "data": c.data, "path": c.path or f"upload:{c.id}",
                     "camera": c.camera or "", "timestamp": "" if c.timestamp is None else repr(c.timestamp),
                     "track_id": c.track_id or "", "deadline": repr(wall_deadline), "reply": reply,
                     "camera_set": "1" if c.camera is not None else "",
                     "track_set": "1" if c.track_id is not None else ""}
            for k, v in entry.items():
                fields += [k, v]
        per = len(fields) // len(crops)
        n = await self._add(keys=[self.stream], args=[self.queue_size, len(crops), per, *fields])
        if n == -1:
            self._depth = await self._r.xlen(self.stream)
            raise QueueFull(f"the queue is full ({self._depth} of {self.queue_size} crops)")
        self._depth = int(n)
        self._waiting += 1
        try:
            done: dict[str, str | None] = {}
            while len(done) < len(crops):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DeadlineExceeded("the request's deadline passed")
                got = await self._r.blpop([reply], timeout=max(0.01, min(left, 2.0)))
                if got is None:
                    continue
                msg = json.loads(got[1])
                done[msg["id"]] = msg.get("error")
            errors = {e for e in done.values() if e}
            if "expired" in errors:
                raise DeadlineExceeded("the request's deadline passed in the queue")
            if errors:
                raise RuntimeError(f"workers failed: {sorted(errors)[0]}")
            return [c.id for c in crops]
        finally:
            self._waiting -= 1
            await self._r.delete(reply)
            self._depth = await self._r.xlen(self.stream)


class Worker:
    """A worker process's loop: read a batch, run the pipeline, store, acknowledge."""

    def __init__(self, queue_url: str, store_url: str | None, pipeline, *, name: str | None = None,
                 stream: str = "personlens:crops", max_batch: int = 32, max_wait_s: float = 0.05,
                 claim_idle_s: float = 30.0, block_s: float = 1.0, max_deliveries: int = 5,
                 store=None, store_schema: str = "public"):
        import redis

        self.block_ms = max(1, int(block_s * 1000))
        self.r = redis.Redis.from_url(queue_url, socket_timeout=SOCKET_TIMEOUT_S + block_s,
                                      socket_connect_timeout=5)
        self.stream = stream
        _ensure_group(self.r, stream)
        if store is None:
            from ..store.postgres import PostgresStore

            store = PostgresStore(store_url, schema=store_schema)
        self.store = store
        self.pipeline = pipeline
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.max_batch = int(max_batch)
        self.max_wait_s = float(max_wait_s)
        self.claim_idle_ms = int(claim_idle_s * 1000)
        self.max_deliveries = int(max_deliveries)
        self.stopping = False
        self._last_claim = 0.0
        self.stats = {"batches": 0, "stored": 0, "skipped": 0, "expired": 0, "claimed": 0, "dead": 0}
        self.store.set_meta("pipeline", pipeline.describe())

    # ------------------------------------------------------------------ reading
    def _read(self, count: int, block_ms: int | None):
        kw = {"block": block_ms} if block_ms is not None else {}
        res = self.r.xreadgroup(GROUP, self.name, {self.stream: ">"}, count=count, **kw)
        return [e for _, entries in (res or []) for e in entries if e[1]]

    def _claim(self) -> list:
        """Entries other (dead) workers took and never acknowledged, idle long enough."""
        now = time.monotonic()
        if now - self._last_claim < min(5.0, self.claim_idle_ms / 2000):
            return []
        self._last_claim = now
        res = self.r.xautoclaim(self.stream, GROUP, self.name, self.claim_idle_ms, "0-0",
                                count=self.max_batch)
        entries = [e for e in res[1] if e and e[1]]
        out = []
        for eid, fields in entries:
            info = self.r.xpending_range(self.stream, GROUP, min=eid, max=eid, count=1)
            times = info[0]["times_delivered"] if info else 1
            if times > self.max_deliveries:
                self._dead_letter(eid, fields, f"delivered {times} times")
            else:
                out.append((eid, fields))
        self.stats["claimed"] += len(out)
        return out

    def next_batch(self) -> list:
        batch = self._claim()
        if len(batch) < self.max_batch:
            batch += self._read(self.max_batch - len(batch), None if batch else self.block_ms)
        if batch and len(batch) < self.max_batch and self.max_wait_s > 0:
            end = time.monotonic() + self.max_wait_s
            while len(batch) < self.max_batch:
                left_ms = int((end - time.monotonic()) * 1000)
                if left_ms < 1:
                    break
                batch += self._read(self.max_batch - len(batch), left_ms)
        return batch

    # ------------------------------------------------------------------ processing
    def _finish(self, done: list[tuple[bytes, dict, str | None]]) -> None:
        """Acknowledge + delete the entries, then answer their requests."""
        if not done:
            return
        p = self.r.pipeline(transaction=True)
        ids = [eid for eid, _, _ in done]
        p.xack(self.stream, GROUP, *ids)
        p.xdel(self.stream, *ids)
        for _, f, err in done:
            reply = f[b"reply"].decode()
            p.rpush(reply, json.dumps({"id": f[b"id"].decode(), "error": err}))
            p.expire(reply, REPLY_TTL_S)
        p.execute()

    def _dead_letter(self, eid, fields, reason: str) -> None:
        self.r.xadd(f"{self.stream}:dead", {**{k: v for k, v in fields.items() if k != b"data"},
                                            b"reason": reason, b"entry": eid})
        self.stats["dead"] += 1
        self._finish([(eid, fields, f"failed: {reason}")])

    def process(self, batch: list) -> None:
        now = time.time()
        done, todo = [], []
        for eid, f in batch:
            if float(f[b"deadline"]) < now:
                self.stats["expired"] += 1
                done.append((eid, f, "expired"))
            else:
                todo.append((eid, f))
        mv = self.pipeline.model_version
        stored = self._existing([f[b"id"].decode() for _, f in todo])
        fresh: dict[str, tuple] = {}
        for eid, f in todo:
            cid = f[b"id"].decode()
            if stored.get(cid) == mv or cid in fresh:
                self.stats["skipped"] += stored.get(cid) == mv
                continue
            try:
                img = decode_image(f[b"data"], cid)
            except ImageLoadError as e:
                done.append((eid, f, f"bad image: {e.reason}"))
                continue
            fresh[cid] = (f, img)
        if fresh:
            ids = list(fresh)
            fs = [fresh[i][0] for i in ids]

            def opt(f, key, flag):
                return f[key].decode() if f.get(flag) else None

            records = self.pipeline.process(
                [fresh[i][1] for i in ids], [f[b"path"].decode() for f in fs], ids=ids,
                timestamps=[float(f[b"timestamp"]) if f[b"timestamp"] else None for f in fs],
                track_ids=[opt(f, b"track_id", b"track_set") for f in fs])
            for r, f in zip(records, fs):
                r.camera = opt(f, b"camera", b"camera_set")
            self.store.put(records)              # stored before anything is acknowledged
            self.stats["stored"] += len(records)
        failed = {eid for eid, _, _ in done}
        done += [(eid, f, None) for eid, f in todo if eid not in failed]
        self._finish(done)
        self.stats["batches"] += 1

    def _existing(self, ids):
        many = getattr(self.store, "model_versions_of", None)
        if many is not None:
            return many(ids)
        return {i: v for i in ids if (v := self.store.model_version_of(i)) is not None}

    # ------------------------------------------------------------------ loop
    def step(self) -> int:
        batch = self.next_batch()
        if batch:
            self.process(batch)
        return len(batch)

    def run_forever(self) -> None:
        def stop(sig, frame):
            log.info("worker %s: stopping after the current batch", self.name)
            self.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        log.info("worker %s: reading %s (batch %d, wait %.0f ms)", self.name, self.stream,
                 self.max_batch, self.max_wait_s * 1000)
        while not self.stopping:
            try:
                self.step()
            except Exception:
                log.exception("worker %s: batch failed; its entries stay pending and will be retried",
                              self.name)
                time.sleep(1.0)
        self.close()

    def close(self) -> None:
        self.r.close()
        self.store.close()
