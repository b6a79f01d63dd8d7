"""Process targets and fixtures for the frame-ring tests.

Every target is a module-level function so that a spawn-context child can import it by
name. Workers report through a Pipe connection, or through lock-free shared counters
where the parent SIGKILLs them (a killed sender can leave a half-written message).

Fixtures (the test modules load them with `pytest_plugins = ["ring_workers"]`): `shm`
(a private tmpfs directory and run id per test, checked empty after the test) and
`spawn` (starts spawn-context processes and kills any left at teardown).

PYTEST_DONT_REWRITE: the test modules import this module before pytest loads it as a
plugin, too late for assertion rewriting; its asserts carry their own messages.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnProcess
from multiprocessing.synchronize import Event
from typing import Any

import numpy as np
import pytest

from daemon.ipc import (
    Consumer,
    FrameRing,
    Lease,
    Producer,
    RingSpec,
    SlotLoan,
    attach_consumer,
    attach_producer,
    list_segments,
    new_run_id,
)
from daemon.ipc.stats import StatsBlock

CTX = multiprocessing.get_context("spawn")
READY_TIMEOUT_S = 60.0  # spawn + numpy import on a loaded 2-core box
JOIN_TIMEOUT_S = 30.0
GET_TIMEOUT_S = 10.0
SHM_ROOT = "/dev/shm"


def frame_for(frame_id: int, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """A frame whose every element depends on its id: a torn or mixed-up frame shows."""
    n = int(np.prod(shape))
    values = (np.arange(n, dtype=np.int64) * 7 + frame_id * 13) % 127
    return values.astype(dtype).reshape(shape)


def frame_ok(lease: Lease) -> bool:
    """True if the leased pixels are exactly those produced for its frame id."""
    arr = lease.array
    return bool(np.array_equal(arr, frame_for(lease.meta.frame_id, arr.shape, arr.dtype.str)))


def must_get(consumer: Consumer, timeout: float = GET_TIMEOUT_S) -> Lease:
    """The next frame; fails the test if none comes within `timeout`."""
    lease = consumer.get(timeout)
    assert lease is not None, f"no frame within {timeout} s"
    return lease


def must_loan(producer: Producer, timeout: float = GET_TIMEOUT_S) -> SlotLoan:
    """A slot of a block ring; fails if the ring had none within `timeout`."""
    loan = producer.loan(timeout)
    assert loan is not None, "a block ring lent no slot"
    return loan


def meta_extra(frame_id: int) -> bytes:
    return f"extra:{frame_id}".encode()


@dataclass(frozen=True)
class Received:
    """What a consumer saw of one frame."""

    frame_id: int
    timestamp_ns: int
    camera: str
    extra: bytes
    pixels_ok: bool
    received_ns: int


@dataclass(frozen=True)
class ConsumeJob:
    """Instructions for `consume`: which ring and group, and when to stop."""

    path: str
    group: str = "main"
    member: int = 0
    stop_id: int | None = None  # stop after this frame id
    hold_s: float = 0.0  # per-frame processing time of a slow consumer
    wait_gate: bool = False  # read nothing until the gate event is set


def _receive(lease: Lease) -> Received:
    meta = lease.meta
    return Received(
        meta.frame_id,
        meta.timestamp_ns,
        meta.camera,
        meta.extra,
        frame_ok(lease),
        time.monotonic_ns(),
    )


def _next(consumer: Consumer, job: ConsumeJob, done: Event) -> Lease | None:
    """The next frame; None once `done` is set and the group has nothing left."""
    while True:
        finished = done.is_set()  # read before looking, so no frame slips past
        lease = consumer.get(timeout=0.05) if not finished else consumer.try_get()
        if lease is not None or finished:
            return lease


def consume(job: ConsumeJob, ready: Event, gate: Event, done: Event, conn: Connection) -> None:
    """Read frames until `job.stop_id`, or until `done` is set and nothing is left."""
    got: list[Received] = []
    with attach_consumer(job.path, job.group, job.member) as consumer:
        ready.set()
        if job.wait_gate:
            gate.wait(READY_TIMEOUT_S)
        while True:
            lease = _next(consumer, job, done)
            if lease is None:
                break
            with lease:
                got.append(_receive(lease))
                if job.hold_s:
                    time.sleep(job.hold_s)  # a slow stage's work, not synchronisation
            if got[-1].frame_id == job.stop_id:
                break
    conn.send(got)
    conn.close()


def produce(path: str, ids: list[int], use_loan: bool, ready: Event, conn: Connection) -> None:
    """Put frames `ids` (with camera and extra metadata); send back what put() returned."""
    accepted: list[bool] = []
    with attach_producer(path) as producer:
        spec = producer.spec.frame
        ready.set()
        for frame_id in ids:
            frame = frame_for(frame_id, spec.shape, spec.dtype)
            camera, extra = f"cam{frame_id % 3}", meta_extra(frame_id)
            if use_loan:
                loan = must_loan(producer)
                loan.array[...] = frame
                loan.publish(frame_id, 1000 + frame_id, camera, extra)
                accepted.append(True)
            else:
                accepted.append(
                    producer.put(
                        frame, frame_id, 1000 + frame_id, camera, extra, timeout=GET_TIMEOUT_S
                    )
                )
    conn.send(accepted)
    conn.close()


def _pause_forever() -> None:
    while True:
        signal.pause()  # until the test SIGKILLs us


def hold_loan(path: str, ready: Event) -> None:
    """Loan a slot, say so, and wait to be killed with it still WRITING."""
    producer = attach_producer(path)
    loan = must_loan(producer)
    loan.array[...] = 0
    ready.set()
    _pause_forever()


def hold_lease(path: str, group: str, ready: Event, leased_id: ctypes.c_longlong) -> None:
    """Take one frame, publish its id, and wait to be killed still holding the lease."""
    consumer = attach_consumer(path, group)
    lease = must_get(consumer, READY_TIMEOUT_S)
    leased_id.value = lease.meta.frame_id
    ready.set()
    _pause_forever()


def hold_lock(path: str, ready: Event) -> None:
    """Take the ring's flock (as an endpoint inside a critical section would) and wait."""
    consumer = attach_consumer(path, "main")
    consumer._map.lock()
    ready.set()
    _pause_forever()


def publish_forever(path: str, first_id: int, ready: Event, last_id: ctypes.c_longlong) -> None:
    """Put frames with increasing ids as fast as possible until killed."""
    producer = attach_producer(path)
    spec = producer.spec.frame
    frame_id = first_id
    while True:
        producer.put(frame_for(frame_id, spec.shape, spec.dtype), frame_id, timeout=GET_TIMEOUT_S)
        last_id.value = frame_id
        ready.set()
        frame_id += 1


def get_release_forever(path: str, ready: Event, bad: ctypes.c_longlong) -> None:
    """Take and release frames as fast as possible until killed; count torn frames."""
    consumer = attach_consumer(path, "main")
    while True:
        lease = consumer.get(timeout=GET_TIMEOUT_S)
        if lease is None:
            continue
        with lease:
            if not frame_ok(lease):
                bad.value += 1
        ready.set()


def stats_worker(path: str, adds: int, ready: Event, stop: Event) -> None:
    """Bump counters `adds` times, set a gauge, then heartbeat until told to stop."""
    block = StatsBlock.attach(path)
    for _ in range(adds):
        block.add("frames_total")
    block.set("fps", 25.5)
    block.beat()
    ready.set()
    while not stop.wait(0.01):
        block.beat()
    block.close()


# ---------------------------------------------------------------------------- fixtures


@dataclass
class ShmArea:
    """A private directory on a tmpfs and a run id, for one test's segments."""

    dir: str
    run_id: str
    rings: list[FrameRing] = field(default_factory=list)

    def ring(self, name: str, spec: RingSpec) -> FrameRing:
        ring = FrameRing.create(name, spec, run_id=self.run_id, shm_dir=self.dir)
        self.rings.append(ring)
        return ring

    def leftovers(self) -> list[str]:
        return list_segments(self.dir, run_id=self.run_id)


@pytest.fixture
def shm() -> Iterator[ShmArea]:
    """Per-test tmpfs directory; fails the test if any segment or FIFO is left behind."""
    area = ShmArea(tempfile.mkdtemp(prefix="ringtest-", dir=SHM_ROOT), new_run_id())
    try:
        yield area
        for ring in area.rings:
            ring.close()
        left = os.listdir(area.dir)
        assert left == [], f"files left in {area.dir} after the test: {left}"
    finally:
        shutil.rmtree(area.dir, ignore_errors=True)


Starter = Callable[..., SpawnProcess]


@pytest.fixture
def spawn() -> Iterator[Starter]:
    """start(target, *args) -> a started spawn-context process; leftovers are killed."""
    started: list[SpawnProcess] = []

    def start(target: Callable[..., None], *args: object) -> SpawnProcess:
        proc = CTX.Process(target=target, args=args, daemon=True)
        proc.start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.is_alive():
            proc.kill()
        proc.join(JOIN_TIMEOUT_S)


@dataclass
class ConsumerWorker:
    """A started `consume` process and its handles (kept alive: spawn children rebuild
    the events from the parent's named semaphores, which die with the last reference)."""

    proc: SpawnProcess
    conn: Connection
    ready: Event
    gate: Event
    done: Event

    def result(self) -> list[Received]:
        return receive(self.conn, self.proc)


def start_consumer(start: Starter, job: ConsumeJob) -> ConsumerWorker:
    ready, gate, done = CTX.Event(), CTX.Event(), CTX.Event()
    parent, child = CTX.Pipe(duplex=False)
    proc = start(consume, job, ready, gate, done, child)
    child.close()
    return ConsumerWorker(proc, parent, ready, gate, done)


def pid_of(proc: SpawnProcess) -> int:
    assert proc.pid is not None, "process not started"
    return proc.pid


def kill(proc: SpawnProcess) -> None:
    """SIGKILL and reap, so that its pid is really gone before a reclaim."""
    os.kill(pid_of(proc), signal.SIGKILL)
    proc.join(JOIN_TIMEOUT_S)
    assert proc.exitcode == -signal.SIGKILL, f"worker ended with {proc.exitcode}, not SIGKILL"


def wait_ready(event: Event, proc: SpawnProcess) -> None:
    """Wait for a worker's ready event; fail with its exit code if it died first."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not event.wait(0.05):
        assert proc.is_alive(), f"worker died before it was ready (exit {proc.exitcode})"
        assert time.monotonic() < deadline, "worker not ready in time"


def receive(conn: Connection, proc: SpawnProcess) -> Any:
    """The worker's one result message, then reap it (must exit 0)."""
    assert conn.poll(JOIN_TIMEOUT_S), f"no result from worker (alive={proc.is_alive()})"
    result = conn.recv()
    proc.join(JOIN_TIMEOUT_S)
    assert proc.exitcode == 0, f"worker exited with {proc.exitcode}"
    return result


def put_on_signal(path: str, frame_id: int, ready: Event, go: Event) -> None:
    """Attach, say so, and put one frame (stamped at publish) once `go` is set."""
    with attach_producer(path) as producer:
        spec = producer.spec.frame
        frame = frame_for(frame_id, spec.shape, spec.dtype)
        ready.set()
        go.wait(READY_TIMEOUT_S)
        producer.put(frame, frame_id)
