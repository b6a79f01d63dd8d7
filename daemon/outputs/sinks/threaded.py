"""The skeleton of a sink that delivers from its own thread (jsonl, webhook, console).

`deliver` only wakes the thread; the thread runs `_send_pending` (the sink's work: take
pending events from the SinkQueue under its batch_lock, deliver, ack; the number done)
until nothing is pending, then waits for a wake (`_idle`). When `_send_pending` raises one
of the sink's `retry_errors`, the sink logs it (`_failed`) and backs off
(`_retry_delay_s`: RETRY_MIN_S doubling up to RETRY_MAX_S by default), waking early when
closed. `close(timeout_s)` stops the thread, waits for it (bounded) and, when it is still
busy, marks the sink abandoned: the thread ends after its current batch (StopSending,
raised by `_send_pending` where it sees `_abandoned`) and delivers nothing more.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

from daemon.outputs.outbox import OutboxItem
from daemon.outputs.outbox_queue import SinkQueue
from daemon.outputs.sinks.protocol import SinkView

RETRY_MIN_S = 0.5
RETRY_MAX_S = 30.0
THREAD_JOIN_GRACE_S = 0.5
_MAX_DOUBLINGS = 60  # 2.0 ** n stays finite; the cap is reached long before


class StopSending(Exception):
    """The thread ends now: close() gave up waiting for it, or it stopped mid-failure."""


class ThreadedSink(ABC):
    """A sink whose thread delivers the queue's pending events (module docstring)."""

    name: ClassVar[str]
    wants_snapshots: ClassVar[bool] = False
    retry_errors: ClassVar[tuple[type[Exception], ...]]
    _log: ClassVar[logging.Logger]
    # close()'s warning when the thread is still busy: (timeout_s, events pending)
    _abandoned_text: ClassVar[str]

    def __init__(self, queue: SinkQueue) -> None:
        self._queue = queue
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._abandoned = False  # close() gave up waiting: deliver nothing more
        self._thread: threading.Thread | None = None
        self._up = True
        self._last_error = ""

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{type(self).__name__}.start() called twice")
        self._thread = threading.Thread(target=self._run, name=f"sink-{self.name}", daemon=True)
        self._thread.start()

    def deliver(self, item: OutboxItem) -> None:
        self._wake.set()

    def set_camera_available(self, camera: str, available: bool) -> None:  # noqa: B027 - these sinks deliver events only
        """Events only; camera state is not delivered."""

    def publish_stats(self, stats: Mapping[str, Any]) -> None:  # noqa: B027 - these sinks deliver events only
        """Events only; the status is not delivered."""

    def view(self) -> SinkView:
        q = self._queue
        return SinkView(
            self.name,
            self._up,
            q.delivered_total,
            q.depth(),
            q.dropped_total,
            q.snapshots_dropped_total,
            **self._view_extra(),
        )

    def _view_extra(self) -> dict[str, Any]:
        """SinkView's optional fields this sink fills."""
        return {}

    def close(self, timeout_s: float) -> None:
        """Deliver what is pending (bounded by timeout_s), then stop the thread."""
        self._stopping.set()
        self._wake.set()
        self._closing(timeout_s)
        if self._join(self._join_s(timeout_s)):
            self._closed()
            return
        self._abandoned = True
        self._log.warning(self._abandoned_text, timeout_s, self._queue.depth())

    def _closing(self, timeout_s: float) -> None:  # noqa: B027 - a hook, no-op by default
        """close(): what to stop before waiting for the thread."""

    def _join_s(self, timeout_s: float) -> float:
        """close(): how long to wait for the thread."""
        return timeout_s + THREAD_JOIN_GRACE_S

    def _closed(self) -> None:  # noqa: B027 - a hook, no-op by default
        """close(): the thread has ended (or never started)."""

    def _join(self, timeout_s: float) -> bool:
        """Wait up to timeout_s for the thread; True when it has ended (or never ran)."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout_s)
        return not thread.is_alive()

    # ---- the thread ----

    def _run(self) -> None:
        failures = 0
        while True:
            self._wake.clear()
            try:
                done = self._send_pending()
            except StopSending:
                return
            except self.retry_errors as exc:
                failures += 1
                delay_s = self._retry_delay_s(exc, failures)
                self._failed(exc, delay_s)
                if self._stopping.wait(delay_s):
                    return
                continue
            failures = 0
            if not done:
                if self._stopping.is_set():
                    return
                self._idle()

    @abstractmethod
    def _send_pending(self) -> int:
        """Deliver pending events; how many were done (0: none pending)."""

    @abstractmethod
    def _failed(self, exc: Exception, delay_s: float) -> None:
        """Log a failed try (retried in delay_s)."""

    def _retry_delay_s(self, exc: Exception, failures: int) -> float:
        """The wait after the failures-th failed try in a row."""
        return min(RETRY_MIN_S * 2.0 ** min(failures - 1, _MAX_DOUBLINGS), RETRY_MAX_S)

    def _idle(self) -> None:
        """Nothing pending: wait for a wake."""
        self._wake.wait()

    def _failure_level(self, reason: str) -> int:
        """Marks the sink down; WARNING for a new reason, DEBUG for a repeat."""
        self._up = False
        level = logging.DEBUG if reason == self._last_error else logging.WARNING
        self._last_error = reason
        return level
