"""Event intake: records off the workers' event socket, in order, into the event outbox
and on to every event sink (daemon/outputs/sinks/runner.py).

Order: one writer thread (the outbox's fsync keeps it off the loop) takes the records in
the order they came off the socket; a sink swap on reload is queued in the same line
(`in_order`), so every record taken before it goes to the old sinks and every later one
to the new, and none waits in between. Group commit: each time it runs, the writer takes
every record queued by then and stores them in ONE outbox transaction (one fsync, not one
per event: 20-100 ms each on an SD card), then hands them to the sinks.

Backpressure instead of an unbounded queue: while MAX_PENDING_EVENTS records wait for
the writer, the intake stops reading the socket. Records then wait in the socket's queue
and the sending overlay waits in sendto() (daemon/ipc/events_channel.py), so a burst is
paced by the outbox, not dropped. What is only in memory at any moment is at most
MAX_PENDING_EVENTS records here plus the socket's queue (net.unix.max_dgram_qlen
datagrams): a supervisor killed with SIGKILL loses those. A record the writer cannot
store (a full disk, a corrupt outbox) is logged and counted in `lost`, by camera and
reason, and exported as actiond_lost_total{stage="intake"}.
"""

from __future__ import annotations

import asyncio
import logging
import threading
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
Record = tuple[dict[str, Any], bytes | None]


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
        self._queue: list[Record | Callable[[], None]] = []  # for the writer, in order
        self._queue_lock = threading.Lock()
        self._draining = False  # a drain is submitted to the writer and not yet done
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
        future: Future[T] = Future()

        def run() -> None:
            try:
                future.set_result(call())
            except BaseException as exc:  # noqa: BLE001 - not swallowed: the awaiter gets it
                future.set_exception(exc)

        self._enqueue(run)
        return await asyncio.wrap_future(future)

    def _enqueue(self, entry: Record | Callable[[], None]) -> None:
        with self._queue_lock:
            self._queue.append(entry)
            if self._draining:
                return  # the running drain takes it
            self._draining = True
        self._writer.submit(self._drain)

    def _drain(self) -> None:
        """The writer thread: everything queued, records in one transaction per run of
        records between two calls."""
        while True:
            with self._queue_lock:
                entries, self._queue = self._queue, []
                if not entries:
                    self._draining = False
                    return
            records: list[Record] = []
            for entry in entries:
                if callable(entry):
                    self._store(records)
                    records = []
                    entry()
                else:
                    records.append(entry)
            self._store(records)

    def _store(self, records: list[Record]) -> None:
        if not records or self._sinks is None:
            return
        try:
            outcomes = self._sinks.store_many(records)
        except Exception as exc:  # noqa: BLE001 - a bug: counted and logged lost, per record
            outcomes = [exc] * len(records)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._written, records, outcomes)

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
        self._enqueue((record, snapshot))

    def _written(self, records: list[Record], outcomes: list[Exception | None]) -> None:
        # On the loop, which owns the counters: the writer's outcome of `records`.
        self._pending -= len(records)
        for (record, _), exc in zip(records, outcomes, strict=True):
            if exc is not None:
                self._lost(record, exc)
        if self._pending < MAX_PENDING_EVENTS:
            self._resume()

    def _lost(self, record: dict[str, Any], exc: Exception) -> None:
        camera = str(record.get("camera") or UNKNOWN_CAMERA)
        self.lost[(camera, LOST_NOT_STORED)] += 1
        log.error(
            "event %s %s of camera %s is lost: it could not be stored in the event outbox: %s",
            record.get("id"),
            record.get("phase"),
            camera,
            exc,
        )

    async def close(self) -> None:
        """Take what is still queued (the overlays' last events), write it, close."""
        self._pause()
        self._loop = asyncio.get_running_loop()  # also when start() never ran
        self._closed = True
        self._take(None)
        await asyncio.get_running_loop().run_in_executor(None, self._writer.shutdown)
        await asyncio.sleep(0)  # run the writer's last call_soon_threadsafe callbacks
        self._receiver.close()
