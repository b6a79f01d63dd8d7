"""FrameRing: the owner's handle on a shared-memory frame ring.

The owner (the supervisor) creates the segment and the endpoints' wake-up FIFOs, hands
the ring's path to worker processes, which attach a Producer or a Consumer by path, and
after a worker dies reclaims what that worker held before restarting it.
"""

from __future__ import annotations

import os
from pathlib import Path

from daemon.ipc import layout as L
from daemon.ipc import wakeup
from daemon.ipc.endpoints import Consumer, Producer
from daemon.ipc.mapping import RingMap, RingStats
from daemon.ipc.segment import DEFAULT_SHM_DIR, Segment, new_run_id, segment_name


class FrameRing:
    """A ring of fixed-size frame slots in shared memory, created and owned by one process."""

    def __init__(self, segment: Segment, fifos: list[Path]) -> None:
        self._map = RingMap(segment)
        self.spec = self._map.spec
        self._fifos = fifos

    @classmethod
    def create(
        cls, name: str, spec: L.RingSpec, run_id: str | None = None, shm_dir: str = DEFAULT_SHM_DIR
    ) -> FrameRing:
        """Create the segment and FIFOs; raises ShmSpaceError if the space is not there."""
        file_name = segment_name(run_id or new_run_id(), name)
        segment = Segment.create(shm_dir, file_name, spec.total_bytes)
        fifos: list[Path] = []
        try:
            RingMap.initialise(segment, spec, os.getpid())
            fifos = [wakeup.producer_fifo(segment.path, i) for i in range(spec.producers)]
            fifos += [
                wakeup.consumer_fifo(segment.path, g, m)
                for g, (_, n) in enumerate(spec.groups)
                for m in range(n)
            ]
            for fifo in fifos:
                wakeup.make_fifo(fifo)
        except BaseException:
            for fifo in fifos:
                fifo.unlink(missing_ok=True)
            segment.close()
            segment.unlink()
            raise
        return cls(segment, fifos)

    @property
    def path(self) -> Path:
        """What a worker needs to attach: pass it to attach_producer/attach_consumer."""
        return self._map.path

    def producer(self, index: int = 0) -> Producer:
        return Producer(self.path, index)

    def consumer(self, group: str, member: int = 0) -> Consumer:
        return Consumer(self.path, group, member)

    def stats(self) -> RingStats:
        return self._map.stats()

    def reclaim(self, pid: int) -> int:
        """Free the slots a dead process held; call after reaping it, before restarting."""
        count = self._map.reclaim(pid)
        if count:
            self._wake_producers()
        return count

    def reclaim_dead(self) -> int:
        count = self._map.reclaim_dead()
        if count:
            self._wake_producers()
        return count

    def _wake_producers(self) -> None:
        for i in range(self.spec.producers):
            fd = wakeup.open_fifo(wakeup.producer_fifo(self.path, i))
            try:
                wakeup.wake(fd)
            finally:
                os.close(fd)

    def close(self) -> None:
        """Unmap and unlink the segment and its FIFOs. Attached endpoints keep working
        on their own mappings until they close; nothing new can attach."""
        for fifo in self._fifos:
            fifo.unlink(missing_ok=True)
        self._map.seg.unlink()
        self._map.close()

    def __enter__(self) -> FrameRing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def attach_producer(path: str | Path, index: int = 0) -> Producer:
    """Attach a producer to an existing ring by its path (RingNotFound if missing)."""
    return Producer(Path(path), index)


def attach_consumer(path: str | Path, group: str, member: int = 0) -> Consumer:
    """Attach a member of consumer group `group` to an existing ring by its path."""
    return Consumer(Path(path), group, member)


def ring_stats(path: str | Path) -> RingStats:
    """Counters and occupancy of a ring, read by anyone (metrics, tests, tools)."""
    mapping = RingMap(Segment.attach(Path(path)))
    try:
        return mapping.stats()
    finally:
        mapping.close()
