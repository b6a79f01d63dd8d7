"""The run lock and the clean-up of dead runs' files, with real processes and SIGKILL.

A run is alive while its lock is held, whatever its pid looks like from here (another PID
namespace shows other pids); files of runs without a lock fall back to the pid and an age.
"""

from __future__ import annotations

import errno
import os
import signal
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event

import pytest
import ring_workers as rw
from ring_workers import ShmArea, Starter

from daemon.ipc import (
    FrameRing,
    FrameSpec,
    RingSpec,
    RunLock,
    attach_consumer,
    clean_stale,
    list_segments,
)
from daemon.ipc.runlock import LOCK_NAME
from daemon.ipc.segment import pid_alive, segment_name

pytest_plugins = ["ring_workers"]  # the shm and spawn fixtures


def small_spec() -> RingSpec:
    return RingSpec(FrameSpec((24, 32, 3), "uint8"))


def dead_pid(spawn: Starter) -> int:
    """The pid of a process that has exited (until the kernel hands it out again)."""
    child = spawn(os.getpid)
    child.join(rw.JOIN_TIMEOUT_S)
    pid = rw.pid_of(child)
    assert not pid_alive(pid)
    return pid


# -- process targets (module level: a spawn child imports them by name) ----------------


def hold_run(shm_dir: str, run_id: str, ready: Event) -> None:
    """A run: lock, one ring, then wait to be killed."""
    lock = RunLock.acquire(shm_dir, run_id)
    FrameRing.create("held", small_spec(), run_id=run_id, shm_dir=shm_dir)
    ready.set()
    signal.pause()
    lock.release()


def hold_run_with_worker(shm_dir: str, run_id: str, ready: Event, report: Connection) -> None:
    """A supervisor: lock, one ring, one spawned worker (whose pid it reports), then wait."""
    lock = RunLock.acquire(shm_dir, run_id)
    FrameRing.create("held", small_spec(), run_id=run_id, shm_dir=shm_dir)
    worker = rw.CTX.Process(target=signal.pause, daemon=False)
    worker.start()
    report.send(worker.pid)
    ready.set()
    signal.pause()
    lock.release()


# -- tests ----------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_held_lock_keeps_a_run_whose_pid_looks_dead(shm: ShmArea, spawn: Starter) -> None:
    # As a run in another PID namespace looks from here: its pid names no process.
    run_id = f"{dead_pid(spawn)}-abc123"
    ready = rw.CTX.Event()
    holder = spawn(hold_run, shm.dir, run_id, ready)
    assert ready.wait(rw.READY_TIMEOUT_S), "the run did not start"
    files = list_segments(shm.dir, run_id=run_id)
    assert segment_name(run_id, LOCK_NAME) in files and len(files) == 4, files
    assert clean_stale(shm.dir, grace_s=0) == []
    assert list_segments(shm.dir, run_id=run_id) == files
    rw.kill(holder)  # the kernel drops the lock with its holder
    assert sorted(clean_stale(shm.dir, grace_s=0)) == files
    assert list_segments(shm.dir, run_id=run_id) == []


@pytest.mark.timeout(60)
def test_spawned_workers_do_not_keep_a_dead_supervisors_lock(shm: ShmArea) -> None:
    run_id = f"{os.getpid()}-def456"  # a live pid: only the lock can say "dead"
    ready = rw.CTX.Event()
    parent, child = rw.CTX.Pipe(duplex=False)
    # Not the `spawn` fixture's daemonic processes: this one starts a child of its own.
    supervisor = rw.CTX.Process(target=hold_run_with_worker, args=(shm.dir, run_id, ready, child))
    supervisor.start()
    child.close()
    worker_pid = 0
    try:
        assert parent.poll(rw.READY_TIMEOUT_S), "the run did not start"
        worker_pid = parent.recv()
        assert ready.wait(rw.READY_TIMEOUT_S), "the run did not start"
        files = list_segments(shm.dir, run_id=run_id)
        assert clean_stale(shm.dir) == []
        rw.kill(supervisor)
        assert pid_alive(worker_pid), "the worker outlives its supervisor here"
        assert sorted(clean_stale(shm.dir)) == files
    finally:
        if supervisor.is_alive():
            rw.kill(supervisor)
        if worker_pid:
            os.kill(worker_pid, signal.SIGKILL)


def test_release_leaves_nothing_and_a_run_id_cannot_be_locked_twice(shm: ShmArea) -> None:
    lock = RunLock.acquire(shm.dir, shm.run_id)
    assert os.path.exists(lock.path)
    with pytest.raises(OSError) as info:
        RunLock.acquire(shm.dir, shm.run_id)
    assert info.value.errno == errno.EBUSY and "held by another process" in str(info.value)
    lock.release()
    lock.release()
    assert shm.leftovers() == []
    with RunLock.acquire(shm.dir, shm.run_id):  # free again once released
        pass
    assert shm.leftovers() == []


def test_a_lock_file_removed_under_a_starting_run_is_made_again(shm: ShmArea) -> None:
    # A cleaner that took a stale-looking lock file and unlinked it: the run locks a new one.
    path = os.path.join(shm.dir, segment_name(shm.run_id, LOCK_NAME))
    with RunLock.acquire(shm.dir, shm.run_id) as lock:
        os.unlink(path)  # as a cleaner would, had it won the race
        assert not os.path.exists(path)
        with RunLock.acquire(shm.dir, shm.run_id) as again:  # a new inode, free
            assert os.path.exists(again.path)
            assert clean_stale(shm.dir, grace_s=0) == []
    assert lock.path == again.path and shm.leftovers() == []


@pytest.mark.timeout(60)
def test_runs_without_a_lock_file_go_by_pid_and_age(shm: ShmArea, spawn: Starter) -> None:
    dead_run = f"{dead_pid(spawn)}-abc123"
    dead = FrameRing.create("old", small_spec(), run_id=dead_run, shm_dir=shm.dir)
    live = shm.ring("new", small_spec())  # this process's pid: alive
    dead_files = list_segments(shm.dir, run_id=dead_run)
    assert len(dead_files) == 3, dead_files  # segment + producer and consumer FIFOs
    assert clean_stale(shm.dir) == [], "younger than the grace period: kept"
    assert sorted(clean_stale(shm.dir, grace_s=0)) == dead_files
    assert list_segments(shm.dir, run_id=dead_run) == []
    assert len(shm.leftovers()) == 3
    with attach_consumer(live.path, "main"):
        pass
    dead.close()
