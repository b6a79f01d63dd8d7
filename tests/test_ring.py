"""Frame ring: round trips, full-ring policies, fan-out and bad input, across real
spawn-context processes."""

from __future__ import annotations

import errno
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import ring_workers as rw
from ring_workers import ShmArea, Starter

from daemon.ipc import (
    FrameMismatch,
    FrameRing,
    FrameSpec,
    Policy,
    Producer,
    RingError,
    RingNotFound,
    RingSpec,
    RingTimeout,
    ShmSpaceError,
    attach_consumer,
    attach_producer,
)
from daemon.ipc import segment as segment_mod
from daemon.ipc.layout import DROP_REASONS

pytest_plugins = ["ring_workers"]  # the shm and spawn fixtures

SMALL = FrameSpec((24, 32, 3), "uint8")
TIMEOUT_S = 0.5


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("shape", "dtype", "use_loan"),
    [
        ((48, 64, 3), "uint8", False),
        ((48, 64, 3), "uint8", True),
        ((30, 40, 2), "float32", False),
        ((1000,), "int16", True),
    ],
)
def test_round_trip_pixels_and_metadata(
    shm: ShmArea, spawn: Starter, shape: tuple[int, ...], dtype: str, use_loan: bool
) -> None:
    ring = shm.ring("rt", RingSpec(FrameSpec(shape, dtype), capacity=4, policy=Policy.BLOCK))
    ids = list(range(30))
    ready = rw.CTX.Event()
    parent, child = rw.CTX.Pipe(duplex=False)
    proc = spawn(rw.produce, str(ring.path), ids, use_loan, ready, child)
    child.close()
    seen = []
    with attach_consumer(ring.path, "main") as consumer:
        for _ in ids:
            with rw.must_get(consumer) as lease:
                arr = lease.array
                assert arr.shape == shape and arr.dtype == np.dtype(dtype)
                assert not arr.flags.writeable, "consumers get read-only views"
                np.testing.assert_array_equal(arr, rw.frame_for(lease.meta.frame_id, shape, dtype))
                seen.append(lease.meta)
            del arr
    assert rw.receive(parent, proc) == [True] * len(ids)
    assert [m.frame_id for m in seen] == ids
    assert [m.timestamp_ns for m in seen] == [1000 + i for i in ids]
    assert [m.camera for m in seen] == [f"cam{i % 3}" for i in ids]
    assert [m.extra for m in seen] == [rw.meta_extra(i) for i in ids]
    stats = ring.stats()
    assert (stats.puts, stats.gets["main"], stats.free) == (30, 30, 4)


@pytest.mark.timeout(60)
def test_block_slow_consumer_is_lossless_and_in_order(shm: ShmArea, spawn: Starter) -> None:
    ring = shm.ring("blk", RingSpec(SMALL, capacity=3, policy=Policy.BLOCK))
    n = 30
    worker = rw.start_consumer(spawn, rw.ConsumeJob(str(ring.path), stop_id=n - 1, hold_s=0.01))
    rw.wait_ready(worker.ready, worker.proc)
    with attach_producer(ring.path) as producer:
        for i in range(n):
            assert producer.put(
                rw.frame_for(i, SMALL.shape, SMALL.dtype), i, timeout=rw.GET_TIMEOUT_S
            )
    got = worker.result()
    assert [r.frame_id for r in got] == list(range(n))
    assert all(r.pixels_ok for r in got)
    assert sum(ring.stats().drops.values()) == 0


@pytest.mark.timeout(30)
def test_block_full_ring_waits_then_raises_ring_timeout(shm: ShmArea) -> None:
    ring = shm.ring("blkto", RingSpec(SMALL, capacity=3, policy=Policy.BLOCK))
    frame = np.zeros(SMALL.shape, np.uint8)
    with attach_producer(ring.path) as producer, attach_consumer(ring.path, "main"):
        for i in range(3):
            assert producer.put(frame, i, timeout=TIMEOUT_S)
        start = time.monotonic()
        with pytest.raises(RingTimeout, match="'block'"):
            producer.put(frame, 3, timeout=TIMEOUT_S)
        waited = time.monotonic() - start
    assert TIMEOUT_S * 0.9 <= waited <= TIMEOUT_S + 4.5, f"waited {waited:.3f} s"
    stats = ring.stats()
    # Not a drop: the frame stays the caller's (no ring reason says "timeout" any more).
    assert stats.drops == dict.fromkeys(DROP_REASONS, 0) and stats.puts == 3


@pytest.mark.timeout(60)
def test_an_aborted_loan_wakes_the_other_producers_of_a_full_block_ring(shm: ShmArea) -> None:
    # Two cameras feed one block ring; one gives its slot back unfilled: the other one,
    # waiting for a slot, must get it at once, not after its timeout.
    ring = shm.ring("abort", RingSpec(SMALL, capacity=2, policy=Policy.BLOCK, producers=2))
    frame = np.zeros(SMALL.shape, np.uint8)
    patient_s = 30.0
    with (
        attach_producer(ring.path, 0) as first,
        attach_producer(ring.path, 1) as second,
        attach_consumer(ring.path, "main"),
    ):
        assert first.put(frame, 0, timeout=TIMEOUT_S)
        loan = first.loan(timeout=TIMEOUT_S)  # the ring is now full
        waited: list[float] = []
        waiter = threading.Thread(target=lambda: waited.append(_timed_loan(second, patient_s)))
        waiter.start()
        # Give the waiter time to block first; if it has not, it finds the slot free anyway.
        waiter.join(0.2)
        loan.abort()
        waiter.join(patient_s)
        assert waited and waited[0] < patient_s / 3, f"waited {waited} s for the freed slot"


def _timed_loan(producer: Producer, timeout_s: float) -> float:
    started = time.monotonic()
    loan = producer.loan(timeout=timeout_s)
    loan.abort()
    return time.monotonic() - started


@pytest.mark.timeout(60)
def test_drop_oldest_slow_consumer_reads_the_newest(shm: ShmArea, spawn: Starter) -> None:
    ring = shm.ring("old", RingSpec(SMALL, capacity=4, policy=Policy.DROP_OLDEST))
    n = 200
    worker = rw.start_consumer(spawn, rw.ConsumeJob(str(ring.path), stop_id=n - 1, hold_s=0.01))
    rw.wait_ready(worker.ready, worker.proc)
    with attach_producer(ring.path) as producer:
        accepted = [producer.put(rw.frame_for(i, SMALL.shape, SMALL.dtype), i) for i in range(n)]
    got = worker.result()
    ids = [r.frame_id for r in got]
    assert all(accepted), "drop_oldest never rejects the incoming frame"
    assert ids[-1] == n - 1, "the newest frame must be delivered"
    assert ids == sorted(set(ids)), "frames arrive once each, in order"
    assert all(r.pixels_ok for r in got)
    drops = ring.stats().drops
    assert drops["drop_oldest"] > 0
    assert drops["drop_oldest"] + len(ids) == n, "every frame is delivered or counted"


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("policy", "expect_ids", "accepted"),
    [
        (Policy.DROP_NEWEST, [0, 1, 2, 3], [True] * 4 + [False] * 6),
        (Policy.DROP_OLDEST, [6, 7, 8, 9], [True] * 10),
    ],
)
def test_drop_policy_with_stalled_consumer(
    shm: ShmArea, spawn: Starter, policy: Policy, expect_ids: list[int], accepted: list[bool]
) -> None:
    ring = shm.ring("stall", RingSpec(SMALL, capacity=4, policy=policy))
    worker = rw.start_consumer(spawn, rw.ConsumeJob(str(ring.path), wait_gate=True))
    rw.wait_ready(worker.ready, worker.proc)
    with attach_producer(ring.path) as producer:
        results = [producer.put(rw.frame_for(i, SMALL.shape, SMALL.dtype), i) for i in range(10)]
    worker.done.set()
    worker.gate.set()
    got = worker.result()
    assert results == accepted
    assert [r.frame_id for r in got] == expect_ids
    assert all(r.pixels_ok for r in got)
    drops = ring.stats().drops
    assert drops[policy.value] == 6
    assert sum(drops.values()) == 6


@pytest.mark.timeout(60)
def test_broadcast_each_group_sees_every_frame_in_order(shm: ShmArea, spawn: Starter) -> None:
    spec = RingSpec(SMALL, capacity=4, policy=Policy.BLOCK, groups=(("a", 1), ("b", 1)))
    ring = shm.ring("bc", spec)
    n = 60
    workers = [
        rw.start_consumer(spawn, rw.ConsumeJob(str(ring.path), group=g, stop_id=n - 1))
        for g in ("a", "b")
    ]
    for worker in workers:
        rw.wait_ready(worker.ready, worker.proc)
    with attach_producer(ring.path) as producer:
        for i in range(n):
            assert producer.put(
                rw.frame_for(i, SMALL.shape, SMALL.dtype), i, timeout=rw.GET_TIMEOUT_S
            )
    for worker in workers:
        got = worker.result()
        assert [r.frame_id for r in got] == list(range(n))
        assert all(r.pixels_ok for r in got)
    stats = ring.stats()
    assert stats.gets == {"a": n, "b": n} and stats.free == 4


@pytest.mark.timeout(90)
def test_work_sharing_members_split_the_frames(shm: ShmArea, spawn: Starter) -> None:
    ring = shm.ring("ws", RingSpec(SMALL, capacity=4, policy=Policy.BLOCK, groups=(("w", 3),)))
    n = 60
    workers = [
        rw.start_consumer(spawn, rw.ConsumeJob(str(ring.path), "w", m, hold_s=0.005))
        for m in range(3)
    ]
    for worker in workers:
        rw.wait_ready(worker.ready, worker.proc)
    with attach_producer(ring.path) as producer:
        for i in range(n):
            assert producer.put(
                rw.frame_for(i, SMALL.shape, SMALL.dtype), i, timeout=rw.GET_TIMEOUT_S
            )
    for worker in workers:
        worker.done.set()
    per_member = [[r.frame_id for r in worker.result()] for worker in workers]
    everything = sorted(i for ids in per_member for i in ids)
    assert everything == list(range(n)), "each frame goes to exactly one member"
    assert all(ids for ids in per_member), f"a member got nothing: {list(map(len, per_member))}"
    assert all(ids == sorted(ids) for ids in per_member)


@pytest.mark.timeout(30)
def test_wrong_frame_or_metadata_is_rejected_and_the_ring_still_works(shm: ShmArea) -> None:
    ring = shm.ring("bad", RingSpec(SMALL, capacity=2, policy=Policy.BLOCK, meta_bytes=64))
    with attach_producer(ring.path) as producer, attach_consumer(ring.path, "main") as consumer:
        wrong_shape = r"\(24, 32, 4\) uint8 does not fit .*\(24, 32, 3\)"
        with pytest.raises(FrameMismatch, match=wrong_shape):
            producer.put(np.zeros((24, 32, 4), np.uint8), 1)
        with pytest.raises(FrameMismatch, match="float32 does not fit"):
            producer.put(np.zeros(SMALL.shape, np.float32), 1)
        with pytest.raises(FrameMismatch, match="more than the ring's meta_bytes=64"):
            producer.put(np.zeros(SMALL.shape, np.uint8), 1, extra=b"x" * 60, camera="cam-long")
        with rw.must_loan(producer, TIMEOUT_S) as loan:
            with pytest.raises(FrameMismatch, match="meta_bytes"):
                loan.publish(1, extra=b"y" * 65)
        assert ring.stats().writing == 0, "a failed publish must give its slot back"
        assert consumer.try_get() is None
        frame = rw.frame_for(7, SMALL.shape, SMALL.dtype)
        assert producer.put(frame, 7, camera="c", extra=b"e" * 63)
        with rw.must_get(consumer) as lease:
            assert lease.meta.frame_id == 7 and lease.meta.extra == b"e" * 63
            assert rw.frame_ok(lease)
    assert ring.stats().puts == 1


@pytest.mark.timeout(30)
def test_views_are_invalid_after_release_and_block_close_while_held(shm: ShmArea) -> None:
    ring = shm.ring("views", RingSpec(SMALL, capacity=2, policy=Policy.BLOCK))
    producer, consumer = attach_producer(ring.path), attach_consumer(ring.path, "main")
    with rw.must_loan(producer, TIMEOUT_S) as loan:
        loan.array[...] = 5
        loan.publish(1)
    with pytest.raises(RingError, match="already published"):
        loan.array.fill(0)
    with rw.must_get(consumer) as lease:
        held = lease.array
        assert int(held.sum()) == 5 * SMALL.nbytes
    with pytest.raises(RingError, match="lease already released"):
        lease.array.sum()
    # A view kept past its lease must stop close() rather than be unmapped under it.
    with pytest.raises(RingError, match="frame views are still referenced"):
        consumer.close()
    del held
    consumer.close()
    producer.close()


def test_attaching_a_missing_ring_raises_ring_not_found(shm: ShmArea) -> None:
    missing = Path(shm.dir) / "actiond-1-abc-nothing"
    with pytest.raises(RingNotFound, match="no shared-memory segment"):
        attach_producer(missing)
    with pytest.raises(RingNotFound):
        attach_consumer(missing, "main")


def test_unknown_group_names_the_groups(shm: ShmArea) -> None:
    ring = shm.ring("grp", RingSpec(SMALL, groups=(("infer", 2), ("overlay", 1))))
    fds_before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(KeyError, match="'display'.*infer, overlay"):
        attach_consumer(ring.path, "display")
    assert len(os.listdir("/proc/self/fd")) == fds_before, "a failed attach leaked fds"
    with attach_consumer(ring.path, "overlay", 0) as consumer:
        assert consumer.group == "overlay"


@pytest.mark.parametrize(
    "make",
    [
        lambda: RingSpec(SMALL, capacity=1),
        lambda: RingSpec(FrameSpec((0, 3))),
        lambda: RingSpec(FrameSpec(())),
        lambda: RingSpec(SMALL, groups=(("a", 0),)),
        lambda: RingSpec(SMALL, groups=(("a", 1), ("a", 2))),
        lambda: RingSpec(SMALL, producers=0),
    ],
)
def test_bad_specs_raise_value_error(make: Callable[[], RingSpec]) -> None:
    with pytest.raises(ValueError):
        make()


def test_ring_larger_than_free_space_says_how_much_and_how_to_fix(shm: ShmArea) -> None:
    spec = RingSpec(FrameSpec((1 << 20, 1 << 20)), capacity=4)
    with pytest.raises(ShmSpaceError) as info:
        shm.ring("huge", spec)
    message = str(info.value)
    assert message.startswith("[Errno 28] shared memory: need"), message
    assert f"need {spec.total_bytes} bytes" in message
    assert "--shm-size" in message and "size=" in message
    assert info.value.errno == errno.ENOSPC
    assert shm.leftovers() == []


@pytest.fixture
def small_tmpfs() -> Iterator[str]:
    """A 1 MiB tmpfs (needs root and mount permission; skipped otherwise)."""
    mount_dir = tempfile.mkdtemp(prefix="ring-tmpfs-")
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", mount_dir],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        os.rmdir(mount_dir)
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip() or proc.returncode}")
    try:
        yield mount_dir
    finally:
        subprocess.run(["umount", mount_dir], check=True)
        os.rmdir(mount_dir)


def test_small_tmpfs_preflight_refuses_a_ring_that_does_not_fit(small_tmpfs: str) -> None:
    spec = RingSpec(FrameSpec((512, 1024)), capacity=4)  # 2 MiB of frames
    with pytest.raises(ShmSpaceError, match=f"need {spec.total_bytes} bytes"):
        FrameRing.create("big", spec, shm_dir=small_tmpfs)
    assert os.listdir(small_tmpfs) == []


def test_small_tmpfs_reservation_fails_cleanly_instead_of_sigbus(
    small_tmpfs: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another process may fill the tmpfs between the free-space check and the
    # reservation; posix_fallocate must then refuse, not leave a sparse file to SIGBUS on.
    monkeypatch.setattr(segment_mod, "check_free_space", lambda shm_dir, nbytes: None)
    spec = RingSpec(FrameSpec((512, 1024)), capacity=4)
    with pytest.raises(ShmSpaceError, match=f"could not reserve {spec.total_bytes} bytes"):
        FrameRing.create("big", spec, shm_dir=small_tmpfs)
    assert os.listdir(small_tmpfs) == []


@pytest.mark.timeout(60)
def test_reserved_ring_survives_a_full_tmpfs(small_tmpfs: str, spawn: Starter) -> None:
    spec = RingSpec(FrameSpec((256, 512), "uint8"), capacity=4, policy=Policy.BLOCK)
    ring = FrameRing.create("fits", spec, shm_dir=small_tmpfs)
    try:
        filler = Path(small_tmpfs) / "filler"
        with pytest.raises(OSError) as info, open(filler, "wb") as f:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        assert info.value.errno == errno.ENOSPC
        ready = rw.CTX.Event()
        parent, child = rw.CTX.Pipe(duplex=False)
        proc = spawn(rw.produce, str(ring.path), list(range(4)), True, ready, child)
        child.close()
        # Every slot's pages are touched; without the reservation this is a SIGBUS.
        assert rw.receive(parent, proc) == [True] * 4
        filler.unlink()
    finally:
        ring.close()
    assert os.listdir(small_tmpfs) == []


def test_full_shm_hint_remounts_the_mount_point_not_a_folder_inside_it(small_tmpfs: str) -> None:
    inside = os.path.join(small_tmpfs, "actiond")
    os.mkdir(inside)
    spec = RingSpec(FrameSpec((512, 1024)), capacity=4)
    with pytest.raises(ShmSpaceError) as info:
        FrameRing.create("big", spec, shm_dir=inside)
    message = str(info.value)
    assert f"remount,size=<bytes> {small_tmpfs}`" in message, message
    assert f"{small_tmpfs} is the mount that holds {inside}" in message, message
    os.rmdir(inside)
