"""Ring endpoints: Producer (loan -> fill -> publish, or put) and Consumer (get -> lease).

Not thread-safe: give each thread its own endpoint.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import TypeVar

import numpy as np

from daemon.ipc import layout as L
from daemon.ipc import wakeup
from daemon.ipc.errors import FrameMismatch, RingError, RingTimeout
from daemon.ipc.mapping import RingMap, RingStats
from daemon.ipc.segment import Segment

_E = TypeVar("_E", bound="_Endpoint")


def _wake(fut: asyncio.Future[None]) -> None:
    """add_reader's callback for get_async: the ring's wakeup fd became readable."""
    if not fut.done():
        fut.set_result(None)


class _Endpoint:
    def __init__(self, path: Path) -> None:
        self._map = RingMap(Segment.attach(Path(path)))
        self.spec = self._map.spec
        self.pid = os.getpid()
        self._fds: list[int] = []

    @property
    def path(self) -> Path:
        return self._map.path

    def stats(self) -> RingStats:
        return self._map.stats()

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()
        self._map.close()

    def __enter__(self: _E) -> _E:  # `with attach_producer(...) as p` types p as Producer
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SlotLoan:
    """A slot lent to a producer: fill `array` in place, then publish() or abort()."""

    def __init__(self, producer: Producer, slot: int, array: np.ndarray) -> None:
        self._producer, self.slot = producer, slot
        self._array: np.ndarray | None = array
        self.done = False

    @property
    def array(self) -> np.ndarray:
        """The slot's pixels, writable until publish() or abort()."""
        if self._array is None:
            raise RingError("slot loan already published or aborted: the slot is not ours")
        return self._array

    def publish(
        self, frame_id: int, timestamp_ns: int | None = None, camera: str = "", extra: bytes = b""
    ) -> None:
        self._producer._publish(self, frame_id, timestamp_ns, camera, extra)

    def abort(self) -> None:
        self._producer._abort(self)

    def __enter__(self) -> SlotLoan:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if not self.done:
            self.abort()


class Producer(_Endpoint):
    """Writes frames into a ring, applying its full-ring policy."""

    def __init__(self, path: Path, index: int = 0) -> None:
        super().__init__(path)
        try:
            self._open(index)
        except BaseException:
            self.close()  # a bad index must not leak the mapping and its fds
            raise

    def _open(self, index: int) -> None:
        if not 0 <= index < self.spec.producers:
            raise RingError(f"producer index {index}: ring has {self.spec.producers}")
        self._index = index
        self._fd = wakeup.open_fifo(wakeup.producer_fifo(self.path, index))
        self._fds.append(self._fd)
        self._consumer_fds = [
            wakeup.open_fifo(wakeup.consumer_fifo(self.path, g, m))
            for g, (_, members) in enumerate(self.spec.groups)
            for m in range(members)
        ]
        self._fds.extend(self._consumer_fds)
        self._views = self._map.frame_views(writable=True)

    def fileno(self) -> int:
        return self._fd

    def loan(self, timeout: float | None = None) -> SlotLoan | None:
        """A free slot to fill, or None if the policy dropped this frame.

        With policy `block`, waits up to `timeout` seconds (None: forever) for a slot,
        then raises RingTimeout.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            slot = self._try_loan()
            if slot >= 0:
                return SlotLoan(self, slot, self._views[slot])
            if self.spec.policy is not L.Policy.BLOCK:
                return None
            if not wakeup.wait_readable(self._fd, deadline):
                # Not a drop: the caller still holds its frame and may retry (the stages
                # do: worker.loan_slot); one that gives it up counts its own loss.
                raise RingTimeout(
                    f"ring {self.path.name}: full for {timeout} s with policy 'block'; "
                    "its consumers are not keeping up or are gone"
                )
            wakeup.drain(self._fd)

    def put(
        self,
        array: np.ndarray,
        frame_id: int,
        timestamp_ns: int | None = None,
        camera: str = "",
        extra: bytes = b"",
        timeout: float | None = None,
    ) -> bool:
        """Copy `array` into the ring. False if the policy dropped it."""
        self.check_frame(array)
        self._check_meta(camera, extra)
        loan = self.loan(timeout)  # RingTimeout: the caller keeps the frame
        if loan is None:
            return False
        with loan:
            np.copyto(loan.array, array, casting="no")
            loan.publish(frame_id, timestamp_ns, camera, extra)
        return True

    def check_frame(self, array: np.ndarray) -> None:
        want = self.spec.frame
        if array.shape != want.shape or array.dtype != np.dtype(want.dtype):
            raise FrameMismatch(
                f"ring {self.path.name}: frame {array.shape} {array.dtype} does not fit "
                f"the ring's {want.shape} {np.dtype(want.dtype)}; resize or convert it "
                "first, or size the ring for this source"
            )

    def _check_meta(self, camera: str, extra: bytes) -> int:
        size = len(camera.encode()) + len(extra)
        if size > self.spec.meta_bytes:
            raise FrameMismatch(
                f"ring {self.path.name}: camera name + extra metadata is {size} bytes, "
                f"more than the ring's meta_bytes={self.spec.meta_bytes}"
            )
        return size

    def _try_loan(self) -> int:
        m, policy = self._map, self.spec.policy
        w = m.lock()
        try:
            victim, victim_seq = -1, None
            for s in range(m.n):
                sw = L.H_SLOTS + s * L.SLOT_WORDS
                if m.is_free(w, sw):
                    return self._take(w, sw, s)
                if policy is L.Policy.DROP_OLDEST and w[sw + L.S_STATE] == L.READY:
                    leased = any(w[sw + L.S_GROUPS + g] > 0 for g in range(m.ngroups))
                    if not leased and (victim_seq is None or w[sw + L.S_SEQ] < victim_seq):
                        victim, victim_seq = s, w[sw + L.S_SEQ]
            if policy is L.Policy.DROP_OLDEST:
                if victim >= 0:
                    w[L.C_DROP["drop_oldest"]] += 1
                    return self._take(w, L.H_SLOTS + victim * L.SLOT_WORDS, victim)
                w[L.C_DROP["busy"]] += 1  # every slot leased: nothing to overwrite
            elif policy is L.Policy.DROP_NEWEST:
                w[L.C_DROP["drop_newest"]] += 1
            return -1
        finally:
            m.unlock()

    def _take(self, w: memoryview, sw: int, slot: int) -> int:
        w[sw + L.S_WRITER] = self.pid
        w[sw + L.S_STATE] = L.WRITING
        return slot

    def _publish(
        self, loan: SlotLoan, frame_id: int, timestamp_ns: int | None, camera: str, extra: bytes
    ) -> None:
        if loan.done:
            raise RingError("slot already published or aborted")
        self._check_meta(camera, extra)
        cam = camera.encode()
        off = self._map.meta_offset(loan.slot)
        self._map.seg.mm[off : off + len(cam) + len(extra)] = cam + extra
        ts = time.monotonic_ns() if timestamp_ns is None else timestamp_ns
        sw = L.H_SLOTS + loan.slot * L.SLOT_WORDS
        w = self._map.lock()
        try:
            w[sw + L.S_FRAME_ID], w[sw + L.S_TS_NS] = frame_id, ts
            w[sw + L.S_CAMERA_LEN], w[sw + L.S_EXTRA_LEN] = len(cam), len(extra)
            for g in range(self._map.ngroups):
                w[sw + L.S_GROUPS + g] = L.PENDING
            seq = w[L.H_WRITE_SEQ]
            w[L.H_WRITE_SEQ] = seq + 1
            w[sw + L.S_SEQ] = seq
            w[L.C_PUTS] += 1
            w[sw + L.S_STATE] = L.READY  # the commit: one aligned store
        finally:
            self._map.unlock()
        loan.done, loan._array = True, None
        for fd in self._consumer_fds:
            wakeup.wake(fd)

    def _abort(self, loan: SlotLoan) -> None:
        if loan.done:
            return
        sw = L.H_SLOTS + loan.slot * L.SLOT_WORDS
        with self._map.locked() as w:
            w[sw + L.S_STATE] = L.FREE
        loan.done, loan._array = True, None
        if self.spec.policy is L.Policy.BLOCK:
            self._wake_other_producers()

    def _wake_other_producers(self) -> None:
        # A slot came free without a consumer releasing it: the producers blocked on a
        # full ring would otherwise wait out their timeout. Aborts are rare (a failed fill,
        # a stop), so the FIFOs are opened here instead of held open by every producer.
        for i in range(self.spec.producers):
            if i != self._index:
                fd = wakeup.open_fifo(wakeup.producer_fifo(self.path, i))
                try:
                    wakeup.wake(fd)
                finally:
                    os.close(fd)


class Lease:
    """A consumer's hold on one published frame; `array` is a read-only zero-copy view."""

    def __init__(
        self, consumer: Consumer, slot: int, seq: int, array: np.ndarray, meta: L.FrameMeta
    ) -> None:
        self._consumer, self.slot, self.seq = consumer, slot, seq
        self._array: np.ndarray | None = array
        self.meta = meta
        self.released = False

    @property
    def array(self) -> np.ndarray:
        """The frame, valid until release() (then the slot may hold another frame)."""
        if self._array is None:
            raise RingError(
                "lease already released: its slot may hold another frame now; "
                "copy what you need before release()"
            )
        return self._array

    def release(self) -> None:
        if not self.released:
            self.released = True
            # Drop our view so that a lingering Lease does not keep the mapping exported.
            self._array = None
            self._consumer._release(self)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Consumer(_Endpoint):
    """Reads frames of one consumer group; members of a group share the work."""

    def __init__(self, path: Path, group: str, member: int = 0) -> None:
        super().__init__(path)
        self.group = group
        try:
            self._open(group, member)
        except BaseException:
            self.close()  # an unknown group must not leak the mapping and its fds
            raise

    def _open(self, group: str, member: int) -> None:
        self._g = self.spec.group_index(group)
        members = self.spec.groups[self._g][1]
        if not 0 <= member < members:
            raise RingError(f"member {member} of group {group!r}: the group has {members}")
        self._fd = wakeup.open_fifo(wakeup.consumer_fifo(self.path, self._g, member))
        self._fds.append(self._fd)
        self._producer_fds = [
            wakeup.open_fifo(wakeup.producer_fifo(self.path, i)) for i in range(self.spec.producers)
        ]
        self._fds.extend(self._producer_fds)
        self._views = self._map.frame_views(writable=False)

    def fileno(self) -> int:
        """The wake-up fd: readable when a frame may be waiting (select/add_reader)."""
        return self._fd

    def try_get(self) -> Lease | None:
        """The oldest frame this group has not taken yet, without waiting."""
        m, gw = self._map, L.S_GROUPS + self._g
        w = m.lock()
        try:
            best, best_seq = -1, 0
            for s in range(m.n):
                sw = L.H_SLOTS + s * L.SLOT_WORDS
                if w[sw + L.S_STATE] == L.READY and w[sw + gw] == L.PENDING:
                    if best < 0 or w[sw + L.S_SEQ] < best_seq:
                        best, best_seq = s, w[sw + L.S_SEQ]
            if best < 0:
                return None
            w[L.H_SLOTS + best * L.SLOT_WORDS + gw] = self.pid
            w[L.H_GETS + self._g] += 1
        finally:
            m.unlock()
        return Lease(self, best, best_seq, self._views[best], m.read_meta(best))

    def get(self, timeout: float | None = None) -> Lease | None:
        """Wait up to `timeout` seconds (None: forever) for a frame; None on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            lease = self.try_get()
            if lease is not None:
                return lease
            if not wakeup.wait_readable(self._fd, deadline):
                return None
            wakeup.drain(self._fd)

    async def get_async(self, timeout: float | None = None) -> Lease | None:
        """Like get(), on an asyncio loop: waits through add_reader, never polls."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            lease = self.try_get()
            if lease is not None:
                return lease
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_reader(self._fd, _wake, ready)
            try:
                remaining = None if deadline is None else max(0.0, deadline - loop.time())
                await asyncio.wait_for(ready, remaining)
            except TimeoutError:
                return None
            finally:
                loop.remove_reader(self._fd)
            wakeup.drain(self._fd)

    def _release(self, lease: Lease) -> None:
        m, sw = self._map, L.H_SLOTS + lease.slot * L.SLOT_WORDS
        gw = sw + L.S_GROUPS + self._g
        freed = False
        w = m.lock()
        try:
            # After a reclaim the slot may belong to a newer frame: touch only our lease.
            if w[sw + L.S_SEQ] == lease.seq and w[gw] == self.pid:
                w[gw] = L.DONE
                if m.is_free(w, sw):
                    w[sw + L.S_STATE] = L.FREE
                    freed = True
        finally:
            m.unlock()
        if freed and self.spec.policy is L.Policy.BLOCK:
            for fd in self._producer_fds:
                wakeup.wake(fd)
