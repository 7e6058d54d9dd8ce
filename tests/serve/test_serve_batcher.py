"""DynamicBatcher: max batch, max wait, bounded queue, deadlines, cancellation, draining."""
from __future__ import annotations

import asyncio
import threading
import time

import pytest

from personlens.serve.batcher import DeadlineExceeded, DynamicBatcher, QueueFull, ShuttingDown


class Recorder:
    def __init__(self, gate: threading.Event | None = None, fail: bool = False):
        self.batches: list[list] = []
        self.gate = gate
        self.fail = fail
        self.entered = threading.Event()

    def __call__(self, payloads):
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        self.batches.append(list(payloads))
        if self.fail:
            raise RuntimeError("boom")
        return [p * 10 for p in payloads]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


async def _entered(rec):
    while not rec.entered.is_set():
        await asyncio.sleep(0.005)


def test_groups_up_to_max_batch():
    async def main():
        rec = Recorder()
        b = DynamicBatcher(rec, max_batch=4, max_wait_s=0.05, queue_size=100)
        await b.start()
        futs = b.submit(list(range(10)))
        out = await asyncio.gather(*futs)
        await b.stop()
        return rec, out, b

    rec, out, b = run(main())
    assert out == [i * 10 for i in range(10)]
    assert [len(x) for x in rec.batches] == [4, 4, 2]
    assert [p for x in rec.batches for p in x] == list(range(10))  # FIFO
    assert b.stats.batches == 3 and b.stats.items == 10 and b.idle


def test_waits_at_most_max_wait_then_runs_a_partial_batch():
    async def main():
        rec = Recorder()
        b = DynamicBatcher(rec, max_batch=32, max_wait_s=0.25, queue_size=100)
        await b.start()
        t0 = time.monotonic()
        f1 = b.submit([1])
        await asyncio.sleep(0.05)
        f2 = b.submit([2, 3])               # joins the batch still waiting
        await asyncio.gather(*f1, *f2)
        took = time.monotonic() - t0
        await b.stop()
        return rec, took

    rec, took = run(main())
    assert rec.batches == [[1, 2, 3]]
    assert 0.24 <= took < 2.0


def test_zero_wait_runs_at_once_and_a_full_batch_does_not_wait():
    async def main():
        rec = Recorder()
        b = DynamicBatcher(rec, max_batch=3, max_wait_s=5.0, queue_size=100)
        await b.start()
        t0 = time.monotonic()
        await asyncio.gather(*b.submit([1, 2, 3]))  # full: no 5 s wait
        took = time.monotonic() - t0
        await b.stop()
        return took

    assert run(main()) < 1.0


def test_queue_is_bounded_and_all_or_nothing():
    async def main():
        gate = threading.Event()
        rec = Recorder(gate)
        b = DynamicBatcher(rec, max_batch=1, max_wait_s=0, queue_size=3, workers=1)
        await b.start()
        first = b.submit([0])
        await _entered(rec)                   # the only worker is busy with item 0
        queued = b.submit([1, 2])
        with pytest.raises(QueueFull):
            b.submit([3, 4])                  # 2 + 2 > 3: refused whole
        queued += b.submit([5])
        assert b.depth == 3
        with pytest.raises(QueueFull):
            b.submit([6])
        gate.set()
        out = await asyncio.gather(*first, *queued)
        await b.stop()
        return rec, out, b

    rec, out, b = run(main())
    assert out == [0, 10, 20, 50]
    assert [p for x in rec.batches for p in x] == [0, 1, 2, 5]
    assert b.stats.rejected == 3


def test_expired_and_cancelled_items_never_reach_a_worker():
    async def main():
        gate = threading.Event()
        rec = Recorder(gate)
        b = DynamicBatcher(rec, max_batch=8, max_wait_s=0, queue_size=10, workers=1)
        await b.start()
        busy = b.submit(["busy"])
        await _entered(rec)
        expired = b.submit(["late"], deadline=time.monotonic() + 0.05)
        cancelled = b.submit(["gone"])
        ok = b.submit(["ok"])
        cancelled[0].cancel()
        await asyncio.sleep(0)                # done callbacks run on the next loop turn
        assert b.depth == 2                   # the cancelled one no longer counts
        await asyncio.sleep(0.1)              # "late" expires while it waits
        gate.set()
        await asyncio.gather(*busy, *ok)
        with pytest.raises(DeadlineExceeded):
            await expired[0]
        await b.stop()
        return rec, b

    rec, b = run(main())
    assert rec.batches == [["busy"], ["ok"]]
    assert b.stats.expired == 1


def test_batch_failure_reaches_every_item_and_the_batcher_goes_on():
    async def main():
        rec = Recorder(fail=True)
        b = DynamicBatcher(rec, max_batch=4, max_wait_s=0.01, queue_size=10)
        await b.start()
        futs = b.submit([1, 2])
        res = await asyncio.gather(*futs, return_exceptions=True)
        rec.fail = False
        again = await asyncio.gather(*b.submit([3]))
        await b.stop()
        return res, again

    res, again = run(main())
    assert all(isinstance(r, RuntimeError) for r in res) and again == [30]


def test_stop_drains_queued_work_and_refuses_new():
    async def main():
        gate = threading.Event()
        rec = Recorder(gate)
        b = DynamicBatcher(rec, max_batch=2, max_wait_s=0, queue_size=10, workers=1)
        await b.start()
        futs = b.submit([1, 2, 3, 4, 5])
        await _entered(rec)
        stopping = asyncio.ensure_future(b.stop(drain=True))
        await asyncio.sleep(0.02)
        with pytest.raises(ShuttingDown):
            b.submit([6])
        gate.set()
        await stopping
        return await asyncio.gather(*futs)

    assert run(main()) == [10, 20, 30, 40, 50]


def test_stop_without_drain_fails_queued_items():
    async def main():
        gate = threading.Event()
        rec = Recorder(gate)
        b = DynamicBatcher(rec, max_batch=1, max_wait_s=0, queue_size=10, workers=1)
        await b.start()
        futs = b.submit([1, 2, 3])
        await _entered(rec)
        stopping = asyncio.ensure_future(b.stop(drain=False))
        await asyncio.sleep(0.02)
        gate.set()
        await stopping
        return await asyncio.gather(*futs, return_exceptions=True)

    res = run(main())
    assert res[0] == 10 and all(isinstance(r, ShuttingDown) for r in res[1:])


def test_several_workers_run_batches_concurrently():
    async def main():
        started, release = [], threading.Event()

        def slow(payloads):
            started.append(payloads)
            assert release.wait(10)
            return payloads

        b = DynamicBatcher(slow, max_batch=1, max_wait_s=0, queue_size=10, workers=3)
        await b.start()
        futs = b.submit([1, 2, 3, 4])
        for _ in range(200):
            if len(started) == 3:
                break
            await asyncio.sleep(0.01)
        n_parallel = len(started)
        depth = b.depth
        release.set()
        await asyncio.gather(*futs)
        await b.stop()
        return n_parallel, depth

    assert run(main()) == (3, 1)
