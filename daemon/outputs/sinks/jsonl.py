"""The JSON-lines sink ([jsonl]): every event record as one line appended to a file, for
log shippers (Vector, Fluent Bit, Promtail tail it).

A thread takes the sink's pending events from the outbox in order, appends one line per
event, fsyncs, then acks them: a line is in the file (and on disk) before its event
leaves the outbox. A daemon killed between the fsync and the ack writes those lines again
at the next start, so a reader drops repeats by `id` + `phase`, like MQTT's consumers.
A failed write (disk full, a directory gone) is cut back to the last whole line, logged
once per reason, counted as an attempt on the event and retried with capped backoff; the
events wait in the outbox meanwhile (bounded by outbox_max_events). No rotation: log
shippers and logrotate's copytruncate handle that.

Closing is bounded: the thread writes what is pending until close's timeout, then ends
after its current batch. Each batch (pending -> write -> ack) holds the queue's
batch_lock, so a replacement sink (a reload) never writes the rows a closed sink's thread
is still finishing: no line is written twice.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from daemon.config import JsonlConfig
from daemon.outputs.outbox import OutboxError, OutboxItem
from daemon.outputs.outbox_queue import SinkQueue
from daemon.outputs.sinks.protocol import SinkContext, SinkView

log = logging.getLogger(__name__)

SINK_NAME = "jsonl"
BATCH_EVENTS = 500
RETRY_MIN_S = 0.5
RETRY_MAX_S = 30.0
THREAD_JOIN_GRACE_S = 0.5


class JsonlSink:
    """Appends each event record as a JSON line to one file."""

    name = SINK_NAME
    wants_snapshots = False

    def __init__(self, path: Path, queue: SinkQueue) -> None:
        self.path = path
        self._queue = queue
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._abandoned = False  # close() gave up waiting: end after the current batch
        self._thread: threading.Thread | None = None
        self._up = True
        self._last_error = ""

    def __repr__(self) -> str:
        return f"JsonlSink({str(self.path)!r}, pending={self._queue.depth()})"

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("JsonlSink.start() called twice")
        self._thread = threading.Thread(target=self._run, name="sink-jsonl", daemon=True)
        self._thread.start()

    def deliver(self, item: OutboxItem) -> None:
        self._wake.set()

    def set_camera_available(self, camera: str, available: bool) -> None:
        """Lines are events only; camera state is not written."""

    def publish_stats(self, stats: Mapping[str, Any]) -> None:
        """Lines are events only; the status is not written."""

    def view(self) -> SinkView:
        q = self._queue
        return SinkView(
            self.name,
            self._up,
            q.delivered_total,
            q.depth(),
            q.dropped_total,
            q.snapshots_dropped_total,
            retries_total=q.retries_total,
        )

    def close(self, timeout_s: float) -> None:
        """Write what is pending (bounded by timeout_s), then stop the thread."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s + THREAD_JOIN_GRACE_S)
            if self._thread.is_alive():
                self._abandoned = True
                log.warning(
                    "jsonl: the writer thread did not stop within %.1f s; %d events "
                    "stay in the outbox",
                    timeout_s,
                    self._queue.depth(),
                )

    # ---- the writer thread ----

    def _run(self) -> None:
        delay_s = RETRY_MIN_S
        while True:
            try:
                wrote = self._write_pending()
            except _Abandoned:
                return
            except (OSError, OutboxError) as exc:
                self._failed(exc, delay_s)
                if self._stopping.wait(delay_s):
                    return
                delay_s = min(delay_s * 2.0, RETRY_MAX_S)
                continue
            delay_s = RETRY_MIN_S
            if not wrote:
                if self._stopping.is_set():
                    return
                self._wake.wait()
                self._wake.clear()

    def _write_pending(self) -> int:
        with self._queue.batch_lock:
            if self._abandoned:
                raise _Abandoned
            return self._write_batch()

    def _write_batch(self) -> int:
        items = self._queue.pending(BATCH_EVENTS)
        if not items:
            return 0
        lines = b"".join(json.dumps(dict(i.record), sort_keys=True).encode() + b"\n" for i in items)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            start = os.fstat(fd).st_size
            try:
                _write_all(fd, lines)
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, start)  # no half line for the next try to append to
                raise
        finally:
            os.close(fd)
        self._queue.ack(*(i.seq for i in items))
        if not self._up:
            log.info("jsonl: writing to %s again; %d events written", self.path, len(items))
        self._up, self._last_error = True, ""
        return len(items)

    def _failed(self, exc: Exception, delay_s: float) -> None:
        self._up = False
        reason = str(exc)
        level = logging.DEBUG if reason == self._last_error else logging.WARNING
        self._last_error = reason
        log.log(
            level,
            "jsonl: cannot write events to %s: %s [retrying in %.1f s; %d events "
            "kept in the outbox]",
            self.path,
            reason,
            delay_s,
            self._queue.depth(),
        )
        if not isinstance(exc, OSError):
            return
        try:
            head = self._queue.pending(1)
            if head:
                self._queue.retry_later(head[0].seq, 0.0)  # counts the attempt on the event
        except OutboxError as err:
            log.error("jsonl: %s", err)


class _Abandoned(Exception):
    """close() returned: this thread writes nothing more."""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def jsonl_sink(cfg: JsonlConfig, context: SinkContext, queue: SinkQueue) -> JsonlSink:
    """The table's factory: a relative cfg.path is under the state directory."""
    return JsonlSink(context.state_dir / cfg.path, queue)
