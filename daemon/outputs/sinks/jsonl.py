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
from pathlib import Path
from typing import Any

from daemon.config import JsonlConfig
from daemon.outputs.outbox import OutboxError
from daemon.outputs.outbox_queue import SinkQueue
from daemon.outputs.sinks.protocol import SinkContext
from daemon.outputs.sinks.threaded import StopSending, ThreadedSink

log = logging.getLogger(__name__)

SINK_NAME = "jsonl"
BATCH_EVENTS = 500


class JsonlSink(ThreadedSink):
    """Appends each event record as a JSON line to one file."""

    name = SINK_NAME
    retry_errors = (OSError, OutboxError)
    _log = log
    _abandoned_text = (
        "jsonl: the writer thread did not stop within %.1f s; %d events stay in the outbox"
    )

    def __init__(self, path: Path, queue: SinkQueue) -> None:
        super().__init__(queue)
        self.path = path

    def __repr__(self) -> str:
        return f"JsonlSink({str(self.path)!r}, pending={self._queue.depth()})"

    def _view_extra(self) -> dict[str, Any]:
        return {"retries_total": self._queue.retries_total}

    # ---- the writer thread ----

    def _send_pending(self) -> int:
        with self._queue.batch_lock:
            if self._abandoned:
                raise StopSending
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
        reason = str(exc)
        log.log(
            self._failure_level(reason),
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


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def jsonl_sink(cfg: JsonlConfig, context: SinkContext, queue: SinkQueue) -> JsonlSink:
    """The table's factory: a relative cfg.path is under the state directory."""
    return JsonlSink(context.state_dir / cfg.path, queue)
