"""``DynamicBatcher``: a bounded queue of work items, grouped into batches for a worker pool.

Requests put their (already validated) items in with ``submit``; a batcher task groups them
into batches of at most ``max_batch`` items, waiting at most ``max_wait_s`` (counted from the
oldest waiting item) for a batch to fill, and hands each batch to one of ``workers`` threads,
which runs ``run_batch(payloads) -> results`` (one pipeline forward for the whole batch).

Guarantees:

* The queue is bounded (``queue_size`` items): ``submit`` raises ``QueueFull`` at once, for the
  whole request, when its items do not fit. Nothing waits for room.
* A batch is formed only when a worker is free, so items queue (and batches grow) while every
  worker is busy, and an item whose deadline has passed, or whose request gave up (its future
  was cancelled), is dropped when a worker would take it: an expired item never takes a worker
  (its future gets ``DeadlineExceeded``).
* ``stop(drain=True)`` refuses new items (``ShuttingDown``), runs what is queued, and waits for
  the batches in flight; ``stop(drain=False)`` fails what is still queued.

Everything but ``run_batch`` runs on the event loop: ``submit`` must be called from it.
"""
from __future__ import annotations

import asyncio
import collections
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence


class QueueFull(Exception):
    """The queue has no room for the request's items (answer 503 with Retry-After)."""


class DeadlineExceeded(Exception):
    """The item's deadline passed before a worker took it (answer 504)."""


class ShuttingDown(Exception):
    """The batcher is stopping and takes no new items (answer 503)."""


@dataclass(eq=False)
class _Item:
    payload: Any
    future: asyncio.Future
    deadline: float
    enqueued: float
    queued: bool = True


@dataclass
class BatcherStats:
    batches: int = 0
    items: int = 0
    expired: int = 0
    rejected: int = 0
    sizes: list[int] = field(default_factory=list)   # the last 1000 batch sizes


class DynamicBatcher:
    def __init__(self, run_batch: Callable[[list], Sequence], *, max_batch: int = 32,
                 max_wait_s: float = 0.05, queue_size: int = 256, workers: int = 1,
                 executor: Executor | None = None,
                 on_batch: Callable[[int, float], None] | None = None,
                 on_expired: Callable[[int], None] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        if max_batch < 1 or queue_size < 1 or workers < 1:
            raise ValueError("max_batch, queue_size and workers must be at least 1")
        self.run_batch = run_batch
        self.max_batch = int(max_batch)
        self.max_wait_s = float(max_wait_s)
        self.queue_size = int(queue_size)
        self.workers = int(workers)
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(self.workers, thread_name_prefix="personlens-worker")
        self._on_batch = on_batch
        self._on_expired = on_expired
        self._clock = clock
        self._queue: collections.deque[_Item] = collections.deque()
        self._live = 0                     # queued items whose request still waits
        self._running = 0                  # items in batches on a worker
        self._tasks: set[asyncio.Task] = set()
        self._wake: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        self._loop_task: asyncio.Task | None = None
        self._stopping = False
        self.stats = BatcherStats()

    # ------------------------------------------------------------------ state
    @property
    def depth(self) -> int:
        """Items waiting for a worker."""
        return self._live

    @property
    def running(self) -> int:
        """Items in batches that workers are running now."""
        return self._running

    @property
    def idle(self) -> bool:
        return self._live == 0 and self._running == 0 and not self._tasks

    @property
    def stopping(self) -> bool:
        return self._stopping

    # ------------------------------------------------------------------ lifetime
    async def start(self) -> None:
        if self._loop_task is not None:
            return
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(self.workers)
        self._loop_task = asyncio.get_running_loop().create_task(self._loop(), name="personlens-batcher")

    async def stop(self, drain: bool = True, timeout: float | None = None) -> None:
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        if not drain:
            self._fail_queued(ShuttingDown("the server is shutting down"))
        if self._loop_task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._loop_task), timeout)
            except asyncio.TimeoutError:
                self._fail_queued(ShuttingDown("the server is shutting down"))
                self._loop_task.cancel()
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=timeout)
        if self._own_executor:
            self._executor.shutdown(wait=True, cancel_futures=True)

    def _fail_queued(self, exc: BaseException) -> None:
        while self._queue:
            it = self._queue.popleft()
            self._unqueue(it)
            if not it.future.done():
                it.future.set_exception(exc)

    # ------------------------------------------------------------------ submitting
    def submit(self, payloads: Sequence, deadline: float | None = None) -> list[asyncio.Future]:
        """Queue ``payloads`` (all or none); one future per payload, resolved with its result.

        ``deadline`` is a ``clock()`` time (default: none)."""
        if self._loop_task is None:
            raise RuntimeError("the batcher is not started")
        if self._stopping:
            raise ShuttingDown("the server is shutting down")
        n = len(payloads)
        if self._live + n > self.queue_size:
            self.stats.rejected += n
            raise QueueFull(f"the queue is full ({self._live} of {self.queue_size} waiting, "
                            f"{n} more asked)")
        loop = asyncio.get_running_loop()
        now = self._clock()
        deadline = float("inf") if deadline is None else float(deadline)
        futures = []
        for p in payloads:
            fut = loop.create_future()
            it = _Item(p, fut, deadline, now)
            fut.add_done_callback(lambda _f, it=it: self._unqueue(it))  # a cancelled request
            self._queue.append(it)
            futures.append(fut)
        self._live += n
        self._wake.set()
        return futures

    def _unqueue(self, it: _Item) -> None:
        if it.queued:
            it.queued = False
            self._live -= 1

    # ------------------------------------------------------------------ batching
    def _take(self, limit: int) -> list[_Item]:
        """Pop up to ``limit`` live items; dead ones (cancelled, expired) are dropped."""
        out, expired, now = [], 0, self._clock()
        while self._queue and len(out) < limit:
            it = self._queue.popleft()
            was_queued = it.queued
            self._unqueue(it)
            if it.future.done() or not was_queued:
                continue
            if it.deadline <= now:
                expired += 1
                it.future.set_exception(DeadlineExceeded("the request's deadline passed in the queue"))
                continue
            out.append(it)
        if expired:
            self.stats.expired += expired
            if self._on_expired:
                self._on_expired(expired)
        return out

    def _drop_dead_head(self) -> None:
        while self._queue and (self._queue[0].future.done() or not self._queue[0].queued):
            self._unqueue(self._queue.popleft())

    async def _collect(self) -> list[_Item] | None:
        """The next batch ([] when every popped item was dead), or None when stopping and empty."""
        while True:
            self._drop_dead_head()
            if self._queue:
                break
            if self._stopping:
                return None
            self._wake.clear()
            await self._wake.wait()
        start = self._queue[0].enqueued
        while self._live < self.max_batch and not self._stopping:
            remaining = start + self.max_wait_s - self._clock()
            if remaining <= 0:
                break
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except asyncio.TimeoutError:
                break
        return self._take(self.max_batch)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._slots.acquire()
            try:
                batch = await self._collect()
            except BaseException:
                self._slots.release()
                raise
            if batch is None:
                self._slots.release()
                return
            if not batch:
                self._slots.release()
                continue
            self._running += len(batch)
            task = loop.create_task(self._execute(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _execute(self, batch: list[_Item]) -> None:
        loop = asyncio.get_running_loop()
        t0 = self._clock()
        try:
            results = await loop.run_in_executor(self._executor, self.run_batch,
                                                 [it.payload for it in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"run_batch returned {len(results)} results for {len(batch)} items")
            for it, r in zip(batch, results):
                if it.future.done():
                    continue
                if isinstance(r, BaseException):
                    it.future.set_exception(r)
                else:
                    it.future.set_result(r)
        except Exception as e:  # the whole batch failed
            for it in batch:
                if not it.future.done():
                    it.future.set_exception(e)
        finally:
            self._running -= len(batch)
            self._slots.release()
            self.stats.batches += 1
            self.stats.items += len(batch)
            self.stats.sizes.append(len(batch))
            del self.stats.sizes[:-1000]
            if self._on_batch:
                self._on_batch(len(batch), self._clock() - t0)
