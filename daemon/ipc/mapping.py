"""RingMap: one process's mapping of a ring segment, with the lock and the slot table.

Every endpoint (producer, consumer, the owner's control view) has its own mapping and its
own file descriptor, so flock() excludes endpoints of the same process from each other.
flock is released by the kernel when its holder dies: a process SIGKILLed inside a
critical section never deadlocks the others.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from daemon.ipc import layout as L
from daemon.ipc.errors import RingError
from daemon.ipc.segment import Segment, pid_alive


@dataclass(frozen=True)
class RingStats:
    """A snapshot of a ring's occupancy and counters."""

    capacity: int
    free: int
    writing: int
    ready: int  # published, not yet taken by every group
    leased: int  # slots some consumer is reading now
    puts: int
    drops: dict[str, int]
    gets: dict[str, int]
    backlog: dict[str, int]  # per group: published frames it has not taken yet

    @property
    def occupancy(self) -> int:
        return self.capacity - self.free


class RingMap:
    """A mapping of a ring segment; the base of every endpoint."""

    def __init__(self, segment: Segment) -> None:
        self.seg = segment
        mm = segment.mm
        head = memoryview(mm)[: L.HEADER_WORDS * 8].cast("q")
        try:
            if head[L.H_MAGIC] != L.MAGIC or head[L.H_VERSION] != L.LAYOUT_VERSION:
                raise RingError(f"{segment.path} is not an actiond frame ring of this version")
            capacity, spec_len = head[L.H_NSLOTS], head[L.H_SPEC_LEN]
        finally:
            head.release()
        off = L.spec_offset(capacity)
        self.spec = L.RingSpec.from_json(bytes(mm[off : off + spec_len]))
        self.words = memoryview(mm)[:off].cast("q")
        self.n = capacity
        self.ngroups = len(self.spec.groups)
        self._frame_off = L._align(self.spec.meta_bytes)
        # Computed once: the spec's layout properties cost microseconds (np.prod) per call,
        # and meta_offset sits on the publish and get hot paths.
        self._meta_offs = [
            self.spec.data_offset + s * self.spec.slot_stride for s in range(capacity)
        ]
        self._views: list[np.ndarray] = []

    @property
    def path(self) -> Path:
        return self.seg.path

    @staticmethod
    def initialise(segment: Segment, spec: L.RingSpec, owner_pid: int) -> None:
        """Write a fresh header into a newly created (zero-filled) segment."""
        raw = spec.to_json()
        if len(raw) > L.SPEC_BYTES:
            raise ValueError("ring spec too large (too many or too long group names)")
        off = L.spec_offset(spec.capacity)
        segment.mm[off : off + len(raw)] = raw
        w = memoryview(segment.mm)[:off].cast("q")
        w[L.H_NSLOTS], w[L.H_STRIDE] = spec.capacity, spec.slot_stride
        w[L.H_DATA_OFF], w[L.H_NGROUPS] = spec.data_offset, len(spec.groups)
        w[L.H_OWNER_PID], w[L.H_SPEC_LEN] = owner_pid, len(raw)
        w[L.H_VERSION] = L.LAYOUT_VERSION
        w[L.H_MAGIC] = L.MAGIC  # last: attachers check it
        w.release()
        segment.publish()

    @contextmanager
    def locked(self) -> Iterator[memoryview]:
        fcntl.flock(self.seg.fd, fcntl.LOCK_EX)
        try:
            yield self.words
        finally:
            fcntl.flock(self.seg.fd, fcntl.LOCK_UN)

    def lock(self) -> memoryview:
        fcntl.flock(self.seg.fd, fcntl.LOCK_EX)
        return self.words

    def unlock(self) -> None:
        fcntl.flock(self.seg.fd, fcntl.LOCK_UN)

    def frame_views(self, writable: bool) -> list[np.ndarray]:
        """One cached numpy view per slot (made once: a view costs a microsecond).

        np.frombuffer, not np.ndarray(buffer=...): it holds a buffer export on the mmap,
        so close() fails with RingError while a view is alive instead of unmapping under
        it (a later access would segfault).
        """
        if not self._views:
            frame = self.spec.frame
            count = int(np.prod(frame.shape))
            for off in self._meta_offs:
                view = np.frombuffer(
                    self.seg.mm, np.dtype(frame.dtype), count, off + self._frame_off
                ).reshape(frame.shape)
                view.flags.writeable = writable
                self._views.append(view)
        return self._views

    def meta_offset(self, slot: int) -> int:
        return self._meta_offs[slot]

    def read_meta(self, slot: int) -> L.FrameMeta:
        w, sw = self.words, L.H_SLOTS + slot * L.SLOT_WORDS
        cam_len, extra_len = w[sw + L.S_CAMERA_LEN], w[sw + L.S_EXTRA_LEN]
        off = self.meta_offset(slot)
        raw = bytes(self.seg.mm[off : off + cam_len + extra_len])
        return L.FrameMeta(
            w[sw + L.S_FRAME_ID], w[sw + L.S_TS_NS], raw[:cam_len].decode(), raw[cam_len:]
        )

    def is_free(self, w: memoryview, sw: int) -> bool:
        state = w[sw + L.S_STATE]
        if state == L.FREE:
            return True
        if state != L.READY:
            return False
        # A READY slot every group is done with is free: a release killed between its
        # two stores leaves exactly this.
        return all(w[sw + L.S_GROUPS + g] == L.DONE for g in range(self.ngroups))

    def reclaim(self, pid: int) -> int:
        """Free what process `pid` held: a half-written slot, its leases. Returns a count."""
        count = 0
        with self.locked() as w:
            for s in range(self.n):
                sw = L.H_SLOTS + s * L.SLOT_WORDS
                if w[sw + L.S_STATE] == L.WRITING and w[sw + L.S_WRITER] == pid:
                    w[sw + L.S_STATE] = L.FREE
                    count += 1
                elif w[sw + L.S_STATE] == L.READY:
                    for g in range(self.ngroups):
                        if w[sw + L.S_GROUPS + g] == pid:
                            w[sw + L.S_GROUPS + g] = L.DONE
                            count += 1
                    if self.is_free(w, sw):
                        w[sw + L.S_STATE] = L.FREE
            w[L.C_DROP["reclaimed"]] += count
        return count

    def holders(self) -> set[int]:
        """Pids that hold a slot (writing it or leasing it) right now."""
        pids, w = set(), self.words
        for s in range(self.n):
            sw = L.H_SLOTS + s * L.SLOT_WORDS
            if w[sw + L.S_STATE] == L.WRITING:
                pids.add(w[sw + L.S_WRITER])
            elif w[sw + L.S_STATE] == L.READY:
                pids.update(v for v in w[sw + L.S_GROUPS : sw + L.S_GROUPS + self.ngroups] if v > 0)
        return pids

    def reclaim_dead(self) -> int:
        """Reclaim the slots of every holder that no longer exists."""
        return sum(self.reclaim(pid) for pid in self.holders() if not pid_alive(pid))

    def stats(self) -> RingStats:
        free = writing = ready = leased = 0
        names = [g for g, _ in self.spec.groups]
        backlog = dict.fromkeys(names, 0)
        with self.locked() as w:
            for s in range(self.n):
                sw = L.H_SLOTS + s * L.SLOT_WORDS
                gs = w[sw + L.S_GROUPS : sw + L.S_GROUPS + self.ngroups].tolist()
                if self.is_free(w, sw):
                    free += 1
                elif w[sw + L.S_STATE] == L.WRITING:
                    writing += 1
                elif any(v > 0 for v in gs):
                    leased += 1
                else:
                    ready += 1
                if w[sw + L.S_STATE] == L.READY:
                    for name, v in zip(names, gs):
                        backlog[name] += v == L.PENDING
            drops = {r: w[i] for r, i in L.C_DROP.items()}
            gets = {name: w[L.H_GETS + g] for g, name in enumerate(names)}
            puts = w[L.C_PUTS]
        return RingStats(self.n, free, writing, ready, leased, puts, drops, gets, backlog)

    def close(self) -> None:
        """Drop our views and unmap. Raises RingError if a caller still holds a view."""
        self._views.clear()
        self.words.release()
        try:
            self.seg.close()
        except BufferError as exc:
            raise RingError(
                f"{self.path}: frame views are still referenced; release every lease "
                "and drop its arrays before closing the ring"
            ) from exc
