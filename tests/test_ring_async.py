"""Consumer.get_async on uvloop: woken through its FIFO by another process's put, and
timing out, without polling."""

from __future__ import annotations

import asyncio
import time
from multiprocessing.synchronize import Event
from pathlib import Path

import pytest
import ring_workers as rw
import uvloop
from ring_workers import ShmArea, Starter

from daemon.ipc import Consumer, FrameSpec, Lease, Policy, RingSpec

pytest_plugins = ["ring_workers"]  # the shm and spawn fixtures

SMALL = FrameSpec((16, 16, 3), "uint8")
# Generous for a loaded 2-core box; the try_get count is what rules out polling.
WAKE_LATENCY_LIMIT_S = 1.0
TIMEOUT_S = 0.3


class CountingConsumer(Consumer):
    """A consumer that counts its try_get calls: a poller makes many per frame."""

    def __init__(self, path: Path, group: str) -> None:
        super().__init__(path, group)
        self.calls = 0

    def try_get(self) -> Lease | None:
        self.calls += 1
        return super().try_get()


async def _get_woken(consumer: CountingConsumer, go: Event) -> tuple[Lease | None, int, bool]:
    """Park a get_async, then let the other process put; (lease, receipt ns, parked)."""
    assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
    task = asyncio.create_task(consumer.get_async(timeout=rw.READY_TIMEOUT_S))
    await asyncio.sleep(0)  # one loop turn: the task looks once, then waits on its fd
    parked = not task.done() and consumer.calls == 1
    go.set()
    lease = await task
    return lease, time.monotonic_ns(), parked


@pytest.mark.timeout(90)
def test_get_async_wakes_on_a_put_from_another_process(shm: ShmArea, spawn: Starter) -> None:
    ring = shm.ring("aio", RingSpec(SMALL, capacity=4, policy=Policy.DROP_OLDEST))
    ready, go = rw.CTX.Event(), rw.CTX.Event()
    proc = spawn(rw.put_on_signal, str(ring.path), 42, ready, go)
    rw.wait_ready(ready, proc)
    with CountingConsumer(ring.path, "main") as consumer:
        lease, received_ns, parked = uvloop.run(_get_woken(consumer, go))
        assert parked, "get_async must wait on its fd after one empty look"
        assert lease is not None and lease.meta.frame_id == 42
        with lease:
            assert rw.frame_ok(lease)
        latency_s = (received_ns - lease.meta.timestamp_ns) / 1e9
        assert 0 <= latency_s < WAKE_LATENCY_LIMIT_S, f"woken {latency_s:.3f} s after the put"
        assert consumer.calls == 2, f"{consumer.calls} looks for one frame: it polled"
    proc.join(rw.JOIN_TIMEOUT_S)
    assert proc.exitcode == 0


async def _time_out(consumer: CountingConsumer) -> tuple[Lease | None, float]:
    loop = asyncio.get_running_loop()
    assert isinstance(loop, uvloop.Loop)
    start = loop.time()
    lease = await consumer.get_async(timeout=TIMEOUT_S)
    return lease, loop.time() - start


@pytest.mark.timeout(30)
def test_get_async_times_out_with_none(shm: ShmArea) -> None:
    ring = shm.ring("aioto", RingSpec(SMALL, capacity=4, policy=Policy.BLOCK))
    with CountingConsumer(ring.path, "main") as consumer:
        lease, waited = uvloop.run(_time_out(consumer))
        assert lease is None
        assert TIMEOUT_S * 0.9 <= waited <= TIMEOUT_S + 2.0, f"waited {waited:.3f} s"
        assert consumer.calls == 1, "a timed-out wait must not poll"
        # The fd is no longer watched: a later synchronous get still works.
        with ring.producer() as producer:
            assert producer.put(rw.frame_for(7, SMALL.shape, SMALL.dtype), 7)
        with rw.must_get(consumer) as got:
            assert got.meta.frame_id == 7
