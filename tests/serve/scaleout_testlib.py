"""Real Redis / PostgreSQL for the scale-out tests: skipped cleanly when not reachable.

Set PERSONLENS_TEST_REDIS=redis://... and PERSONLENS_TEST_PG=postgresql://... (``eval "$(bash
.ci/services.sh)"`` starts both on 127.0.0.1 and prints them). Every test uses its own stream
name and PostgreSQL schema, removed afterwards.
"""
from __future__ import annotations

import os
import threading
import uuid

import pytest

REDIS_ENV, PG_ENV = "PERSONLENS_TEST_REDIS", "PERSONLENS_TEST_PG"


def redis_url_or_skip() -> str:
    url = os.environ.get(REDIS_ENV)
    if not url:
        pytest.skip(f"{REDIS_ENV} is not set (bash .ci/services.sh starts a redis-server)")
    try:
        import redis

        r = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        r.ping()
        r.close()
    except Exception as e:  # noqa: BLE001 - any failure means: not reachable
        pytest.skip(f"redis not reachable at {url}: {e}")
    return url


def pg_url_or_skip() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"{PG_ENV} is not set (bash .ci/services.sh starts PostgreSQL)")
    try:
        import psycopg

        psycopg.connect(url, connect_timeout=2).close()
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"postgres not reachable at {url}: {e}")
    return url


def fresh_schema(url: str) -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


def drop_schema(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as c:
        c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def drop_stream(url: str, stream: str) -> None:
    import redis

    r = redis.Redis.from_url(url)
    keys = [stream, f"{stream}:dead", *r.scan_iter(match=f"{stream}:reply:*")]
    r.delete(*keys)
    r.close()


class WorkerThread:
    """A ``Worker`` looping in a thread until ``stop()``."""

    def __init__(self, worker):
        self.worker = worker
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            while not self._stop.is_set():
                self.worker.step()
        except BaseException as e:  # surfaced by stop()
            self.error = e

    def stop(self):
        self._stop.set()
        self.thread.join(10)
        self.worker.close()
        if self.error:
            raise self.error
