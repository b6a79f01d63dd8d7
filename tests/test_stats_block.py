"""Worker stats blocks: counters, gauges and heartbeats seen across real processes."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import pytest
import ring_workers as rw
from ring_workers import ShmArea, Starter

from daemon.ipc import FrameSpec, RingError, RingNotFound, RingSpec
from daemon.ipc.stats import HEARTBEAT, LATENCY_BUCKETS_S, PID, StatsBlock, histogram_fields

pytest_plugins = ["ring_workers"]  # the shm and spawn fixtures

FIELDS = ["frames_total", "fps"]
STALE_AFTER_S = 0.2
DEADLINE_S = 10.0


def _create(shm: ShmArea, name: str, fields: list[str]) -> StatsBlock:
    return StatsBlock.create(name, fields, run_id=shm.run_id, shm_dir=shm.dir)


def _wait_until_stale(block: StatsBlock) -> float:
    deadline = time.monotonic() + DEADLINE_S
    while (age := block.heartbeat_age_s()) < STALE_AFTER_S:
        assert time.monotonic() < deadline, f"heartbeat age stuck at {age:.3f} s"
        time.sleep(0.02)  # polling the age with a deadline
    return age


@pytest.mark.timeout(60)
def test_counters_and_gauges_are_visible_across_processes(shm: ShmArea, spawn: Starter) -> None:
    block = _create(shm, "stats-src", FIELDS)
    assert block.fields[:2] == (HEARTBEAT, PID) and block.fields[2:] == tuple(FIELDS)
    assert block.heartbeat_age_s() == math.inf, "never beaten: infinitely old"
    ready, stop = rw.CTX.Event(), rw.CTX.Event()
    proc = spawn(rw.stats_worker, str(block.path), 1000, ready, stop)
    rw.wait_ready(ready, proc)
    snap = block.snapshot()
    assert snap["frames_total"] == 1000 and snap["fps"] == 25.5
    assert snap[PID] == proc.pid
    assert 0 <= block.heartbeat_age_s() < 5.0
    stop.set()
    proc.join(rw.JOIN_TIMEOUT_S)
    assert proc.exitcode == 0
    assert _wait_until_stale(block) >= STALE_AFTER_S  # nobody beats any more
    assert block.get("frames_total") == 1000, "values outlive the worker"
    block.close(unlink=True)
    assert shm.leftovers() == []


@pytest.mark.timeout(60)
def test_heartbeat_goes_stale_when_the_worker_is_killed(shm: ShmArea, spawn: Starter) -> None:
    block = _create(shm, "stats-kill", FIELDS)
    ready, stop = rw.CTX.Event(), rw.CTX.Event()
    proc = spawn(rw.stats_worker, str(block.path), 1, ready, stop)
    rw.wait_ready(ready, proc)
    first = block.get(HEARTBEAT)
    deadline = time.monotonic() + DEADLINE_S
    while block.get(HEARTBEAT) == first:  # the worker keeps beating
        assert time.monotonic() < deadline, "heartbeat did not advance"
        time.sleep(0.005)  # polling the beat with a deadline
    rw.kill(proc)
    assert _wait_until_stale(block) >= STALE_AFTER_S
    block.close(unlink=True)


def test_reset_and_histogram_fields(shm: ShmArea) -> None:
    block = _create(shm, "stats-hist", ["frames_total", *histogram_fields("latency_seconds")])
    block.add("frames_total", 3)
    block.observe("latency_seconds", 0.003)
    block.observe("latency_seconds", 0.2, count=3)  # a batch of three, 0.2 s each
    counts = [block.get(f"latency_seconds_bucket_{i}") for i in range(len(LATENCY_BUCKETS_S))]
    expected = [float(0.003 <= b) + 3 * float(0.2 <= b) for b in LATENCY_BUCKETS_S]
    assert counts == expected, "buckets are cumulative (Prometheus 'le')"
    assert block.get("latency_seconds_count") == 4
    assert block.get("latency_seconds_sum") == pytest.approx(0.603)
    block.reset()
    assert set(block.snapshot().values()) == {0.0}
    block.close(unlink=True)


def test_attach_errors_name_the_problem(shm: ShmArea) -> None:
    with pytest.raises(RingNotFound):
        StatsBlock.attach(Path(shm.dir) / "actiond-1-abc-missing")
    ring = shm.ring("not-stats", RingSpec(FrameSpec((4,))))
    fds_before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(RingError, match="not an actiond stats block"):
        StatsBlock.attach(ring.path)
    assert len(os.listdir("/proc/self/fd")) == fds_before, "the refused file stayed open"
    with pytest.raises(ValueError, match="too many stats fields"):
        _create(shm, "huge", [f"field_with_a_long_name_{i}" for i in range(1000)])
