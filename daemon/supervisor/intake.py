"""Event intake: records off the workers' event socket, in order, into the event outbox
and on to every event sink (daemon/outputs/sinks/runner.py).

Order: one writer thread (an fsync per outbox write keeps it off the loop) takes the
records in the order they came off the socket; a sink swap on reload is queued on the
same thread (`in_order`), so every record taken before it goes to the old sinks and
every later one to the new, and none waits in between.

Backpressure instead of an unbounded queue: while MAX_PENDING_EVENTS records wait for
the writer, the intake stops reading the socket. Records then wait in the socket's queue
and the sending overlay waits in sendto() (daemon/ipc/events_channel.py), so a burst is
paced by the outbox, not dropped. What is only in memory at any moment is at most
MAX_PENDING_EVENTS records here plus the socket's queue (net.unix.max_dgram_qlen
datagrams): a supervisor killed with SIGKILL loses those. A record the writer cannot
store (a full disk, a corrupt outbox) is logged and counted in `lost`, by camera and
reason, and exported as actiond_events_lost_total.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from daemon.ipc.events_channel import EventReceiver
from daemon.outputs.metrics import EventMetrics
from daemon.outputs.sinks.runner import SinkRunner

log = logging.getLogger(__name__)

MAX_PENDING_EVENTS = 32
LOST_NOT_STORED = "not_stored"  # the outbox could not store it, or it is not a
# valid record (a camera not configured)
LOST_MALFORMED = "malformed"  # a datagram that is not an event record
INTAKE_LOST_REASONS = (LOST_NOT_STORED, LOST_MALFORMED)
UNKNOWN_CAMERA = "all"  # the camera label of a record that names none
T = TypeVar("T")


class EventIntake:
    """Takes event records off the socket and hands them to the sinks and the metrics."""

    def __init__(
        self, receiver: EventReceiver, sinks: SinkRunner | None, metrics: EventMetrics | None
    ) -> None:
        self._receiver, self._sinks, self._metrics = receiver, sinks, metrics
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reading = False
        self._closed = False
        self._pending = 0
        self.received_total = 0
        self.lost: Counter[tuple[str, str]] = Counter()  # (camera, reason) -> events

    @property
    def sinks(self) -> SinkRunner | None:
        """The sinks records go to (None: the outbox could not be opened)."""
        return self._sinks

    @property
    def pending(self) -> int:
        """Records taken off the socket and not yet in the outbox."""
        return self._pending

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._resume()

    async def in_order(self, call: Callable[[], T]) -> T:
        """Run `call` on the writer thread after every record taken before, before any
        taken later (a sink swap); its result."""
        return await asyncio.wrap_future(self._writer.submit(call))

    def _resume(self) -> None:
        if not self._reading and not self._closed and self._loop is not None:
            self._loop.add_reader(self._receiver.fileno(), self._on_readable)
            self._reading = True

    def _pause(self) -> None:
        if self._reading and self._loop is not None:
            self._loop.remove_reader(self._receiver.fileno())
            self._reading = False

    def _on_readable(self) -> None:
        self._take(max(0, MAX_PENDING_EVENTS - self._pending))
        if self._pending >= MAX_PENDING_EVENTS:
            self._pause()  # the overlays wait in sendto() until the writer catches up

    def _take(self, limit: int | None) -> None:
        malformed = self._receiver.malformed_total
        for record, snapshot in self._receiver.receive(limit):
            self.handle(record, snapshot)
        if self._receiver.malformed_total > malformed:
            self.lost[(UNKNOWN_CAMERA, LOST_MALFORMED)] += (
                self._receiver.malformed_total - malformed
            )

    def handle(self, record: dict[str, Any], snapshot: bytes | None) -> None:
        self.received_total += 1
        camera, action, phase = (
            record.get("camera", ""),
            record.get("action", ""),
            record.get("phase"),
        )
        log.info(
            "event %s: %s %s (score %.2f, id %s)",
            camera,
            action,
            phase,
            float(record.get("score_max", 0.0)),
            record.get("id"),
        )
        if self._metrics is not None and phase == "start":
            self._metrics.event(camera, action)
            capture_ns = int(record.get("capture_ts_ns") or 0)
            if capture_ns:
                self._metrics.latency(camera, (time.monotonic_ns() - capture_ns) / 1e9)
        if self._sinks is None:
            return
        self._pending += 1
        future = self._writer.submit(self._sinks.store, record, snapshot)
        future.add_done_callback(lambda f: self._from_writer(f, record))

    def _from_writer(self, future: Future[None], record: dict[str, Any]) -> None:
        # The writer thread: hand the outcome to the loop, which owns the counters.
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._written, future, record)

    def _written(self, future: Future[None], record: dict[str, Any]) -> None:
        self._pending -= 1
        exc = future.exception()
        if exc is not None:
            camera = str(record.get("camera") or UNKNOWN_CAMERA)
            self.lost[(camera, LOST_NOT_STORED)] += 1
            log.error(
                "event %s %s of camera %s is lost: it could not be stored in the event outbox: %s",
                record.get("id"),
                record.get("phase"),
                camera,
                exc,
            )
        if self._pending < MAX_PENDING_EVENTS:
            self._resume()

    async def close(self) -> None:
        """Take what is still queued (the overlays' last events), write it, close."""
        self._pause()
        self._loop = asyncio.get_running_loop()  # also when start() never ran
        self._closed = True
        self._take(None)
        await asyncio.get_running_loop().run_in_executor(None, self._writer.shutdown)
        await asyncio.sleep(0)  # run the writer's last call_soon_threadsafe callbacks
        self._receiver.close()
