"""Helpers for the service tests: a fake (gated, instant) pipeline, tiny crops, a live server.

Run as a script it starts a real ``personlens serve`` process on the fake pipeline (used by the
shutdown test and the fault benchmark, where a real SIGTERM must reach a real process)::

    python tests/serve/serve_testlib.py --db DIR --port-file FILE [--delay 0.5] [--token T]
        [--queue redis://... --store postgresql://... --schema S --stream NAME]
    python tests/serve/serve_testlib.py --worker --queue ... --store ... [--schema S] [--delay 0.1]
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from personlens.inference.records import PersonRecord

NAMES = ["personalMale", "accessoryHat", "carryingBackpack", "upperBodyBlack"]
TOKEN = "test-token-0123456789"


def crop_png(i: int, size=(24, 56)) -> bytes:
    """A tiny, distinct PNG crop."""
    rng = np.random.default_rng(500 + i)
    arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _unit(seed: bytes, dim: int) -> np.ndarray:
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(seed).digest()[:8], "little"))
    v = rng.normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


class FakePipeline:
    """Quacks like ``PersonPipeline`` for the service: instant, deterministic, no torch.

    ``gate`` (threading.Event) blocks every batch until set; ``delay`` sleeps per batch;
    ``entered`` is set when a batch starts; ``batches`` lists the ids of every batch run.
    """

    names = NAMES
    model_version = "fake-v1"
    search_dim = 8
    reid_dim = 8

    def __init__(self, delay: float = 0.0, gate: threading.Event | None = None):
        self.delay = delay
        self.gate = gate
        self.entered = threading.Event()
        self.batches: list[list[str]] = []
        self.lock = threading.Lock()

    def describe(self) -> dict:
        return {"model_version": self.model_version, "fake": True}

    def encode_query(self, text: str) -> np.ndarray:
        if not text.strip():
            raise ValueError("the query is empty")
        return _unit(text.encode(), self.search_dim)

    def reid_embeddings(self, images) -> np.ndarray:
        """A new image's re-ID embedding (search by photo): deterministic in its pixels."""
        return np.stack([_unit(np.asarray(im.convert("RGB")).tobytes() + b"r", self.reid_dim)
                         for im in images])

    @property
    def processed(self) -> list[str]:
        return [i for b in self.batches for i in b]

    def process_cameras(self, images, sources, cameras, **kw):
        """No adaptation here: one forward for the batch, as the real pipeline does then."""
        records = self.process(images, sources, **kw)
        for r, c in zip(records, cameras):
            r.camera = c
        return records

    def process(self, images, sources, *, ids=None, camera=None, timestamps=None, track_ids=None):
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(30), "test gate never opened"
        if self.delay:
            time.sleep(self.delay)
        with self.lock:
            self.batches.append(list(ids))
        n = len(images)
        timestamps = timestamps or [None] * n
        track_ids = track_ids or [None] * n
        out = []
        for i, (img, src, cid) in enumerate(zip(images, sources, ids)):
            mean = np.asarray(img, np.float32).mean() / 255.0
            probs = {"personalMale": 0.9, "accessoryHat": 0.1,
                     "carryingBackpack": round(float(mean), 4), "upperBodyBlack": 0.2}
            present = [k for k, p in probs.items() if p >= 0.5]
            out.append(PersonRecord(id=cid, path=src, attributes=probs, present=present,
                                    search_embedding=_unit(cid.encode(), 8),
                                    reid_embedding=_unit(cid.encode() + b"r", 8),
                                    model_version=self.model_version, camera=camera,
                                    timestamp=timestamps[i], track_id=track_ids[i]))
        return out


def free_socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    return s


@contextlib.contextmanager
def live_server(config, pipeline, token=TOKEN, **build_kw):
    """A real uvicorn server on 127.0.0.1 (random port) in a thread; yields (url, server, service)."""
    from personlens.serve.server import build, make_server

    config.auth = token is not None
    config.token = token
    app, service, _ = build(config, pipeline=pipeline, announce=lambda *_: None, **build_kw)
    sock = free_socket()
    port = sock.getsockname()[1]
    server = make_server(app, service, config, log_level="warning")
    t = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    t.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not t.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", server, service
    finally:
        server.should_exit = True
        t.join(30)
        sock.close()


def auth(token=TOKEN) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _main(argv=None) -> None:
    import argparse

    from personlens.serve.config import ServeConfig
    from personlens.serve.server import build, make_server

    ap = argparse.ArgumentParser()
    ap.add_argument("--db")
    ap.add_argument("--port-file")
    ap.add_argument("--worker", action="store_true", help="run a scale-out worker instead")
    ap.add_argument("--queue")
    ap.add_argument("--store")
    ap.add_argument("--schema", default="public")
    ap.add_argument("--stream", default="personlens:crops")
    ap.add_argument("--claim-idle-s", type=float, default=30)
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--token", default=TOKEN)
    ap.add_argument("--queue-size", type=int, default=256)
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--max-wait-ms", type=float, default=20)
    ap.add_argument("--drain-timeout", type=float, default=30)
    ap.add_argument("--timeout", type=float, default=30, help="per-request deadline (s)")
    ap.add_argument("--limit-concurrency", type=int, default=64, help="connections served at once")
    a = ap.parse_args(argv)
    if a.worker:
        from personlens.serve.redisq import Worker

        Worker(a.queue, a.store, FakePipeline(delay=a.delay), stream=a.stream, store_schema=a.schema,
               max_batch=a.max_batch, max_wait_s=a.max_wait_ms / 1000,
               claim_idle_s=a.claim_idle_s).run_forever()
        return
    cfg = ServeConfig(db=Path(a.db), queue_size=a.queue_size, max_batch=a.max_batch,
                      max_wait_ms=a.max_wait_ms, drain_timeout_s=a.drain_timeout, token=a.token,
                      request_timeout_s=a.timeout, limit_concurrency=a.limit_concurrency,
                      queue_url=a.queue, store_url=a.store, store_schema=a.schema, stream=a.stream)
    factory = None
    if a.store:
        from personlens.serve.backend import StoreBackend
        from personlens.store.postgres import PostgresStore

        factory = lambda: StoreBackend(PostgresStore(a.store, schema=a.schema), FakePipeline())  # noqa: E731
    app, service, _ = build(cfg, pipeline=FakePipeline(delay=a.delay), announce=lambda *_: None,
                            backend_factory=factory)
    sock = free_socket()
    server = make_server(app, service, cfg, log_level="warning")
    Path(a.port_file + ".tmp").write_text(str(sock.getsockname()[1]))
    Path(a.port_file + ".tmp").rename(a.port_file)
    server.run(sockets=[sock])


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    _main()
