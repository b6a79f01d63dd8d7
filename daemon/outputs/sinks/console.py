"""The console sink ([console]): keeps every event in the console's history file and runs
the web console (daemon/console/) that serves it.

A thread takes the sink's pending events from the outbox in order, merges them (start and
end records by `id`, with the snapshot) into the history in one transaction per batch,
then acks them: an event leaves the outbox only once the history has it. A daemon killed
between the two stores them again at the next start, which the merge makes harmless.
Retention runs after each batch and every PRUNE_EVERY_S. A history that cannot be
written is logged once per reason and retried with capped backoff; the events wait in the
outbox meanwhile (bounded by outbox_max_events).

Camera state (`set_camera_available`, `publish_stats`) goes to the console's board, a
few attribute writes under a lock: nothing waits on the supervisor's loop. The web server
runs on its own loop and thread (daemon/console/server.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from daemon.config import ConsoleConfig, parse_listen
from daemon.console import (
    CLIPS_DIRNAME,
    HISTORY_FILENAME,
    Auth,
    CameraBoard,
    Console,
    ConsoleServer,
    History,
    HistoryError,
    LiveImages,
    Retention,
    proxy_networks,
    read_token,
)
from daemon.outputs.outbox import OutboxError, OutboxItem
from daemon.outputs.outbox_queue import SinkQueue
from daemon.outputs.sinks.protocol import SinkContext, SinkView

log = logging.getLogger(__name__)

SINK_NAME = "console"
BATCH_EVENTS = 200
PRUNE_EVERY_S = 60.0
RETRY_MIN_S = 0.5
RETRY_MAX_S = 30.0
THREAD_JOIN_GRACE_S = 0.5
SECONDS_PER_DAY = 86400.0
BYTES_PER_MB = 1024 * 1024


class ConsoleSink:
    """The history writer and the web console's server (module docstring)."""

    name = SINK_NAME
    wants_snapshots = True

    def __init__(
        self, console: Console, server: ConsoleServer, keep: Retention, queue: SinkQueue
    ) -> None:
        self.console = console
        self.server = server
        self.keep = keep
        self._queue = queue
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._abandoned = False
        self._thread: threading.Thread | None = None
        self._up = True
        self._last_error = ""

    def __repr__(self) -> str:
        return f"ConsoleSink({self.server!r}, {self.console.history!r})"

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("ConsoleSink.start() called twice")
        self._thread = threading.Thread(target=self._run, name="sink-console", daemon=True)
        self._thread.start()
        self.server.start()

    def deliver(self, item: OutboxItem) -> None:
        self._wake.set()

    def set_camera_available(self, camera: str, available: bool) -> None:
        self.console.board.set_available(camera, available)

    def publish_stats(self, stats: Mapping[str, Any]) -> None:
        self.console.board.update(stats)

    def view(self) -> SinkView:
        q = self._queue
        return SinkView(
            self.name,
            self._up and self.server.bound.is_set(),  # history written and port bound
            q.delivered_total,
            q.depth(),
            q.dropped_total,
            q.snapshots_dropped_total,
            logins_failed_total=self.console.auth.limiter.failed_total,
        )

    def close(self, timeout_s: float) -> None:
        """Store what is pending and stop the server, both within timeout_s."""
        self._stopping.set()
        self._wake.set()
        self.server.close(timeout_s / 2)
        if self._thread is not None:
            self._thread.join(timeout_s / 2 + THREAD_JOIN_GRACE_S)
            if self._thread.is_alive():
                self._abandoned = True
                log.warning(
                    "console: the history writer did not stop within %.1f s; %d events "
                    "stay in the outbox",
                    timeout_s,
                    self._queue.depth(),
                )
                return
        self.console.live.close()
        self.console.history.close()

    # ---- the writer thread ----

    def _run(self) -> None:
        delay_s = RETRY_MIN_S
        while True:
            try:
                stored = self._store_pending()
            except _Abandoned:
                return
            except (HistoryError, OutboxError) as exc:
                self._failed(exc, delay_s)
                if self._stopping.wait(delay_s):
                    return
                delay_s = min(delay_s * 2.0, RETRY_MAX_S)
                continue
            delay_s = RETRY_MIN_S
            if not stored:
                if self._stopping.is_set():
                    return
                self._wake.wait(PRUNE_EVERY_S)
                self._wake.clear()
                self._prune()

    def _store_pending(self) -> int:
        with self._queue.batch_lock:
            if self._abandoned:
                raise _Abandoned
            items = self._queue.pending(BATCH_EVENTS)
            if not items:
                return 0
            self.console.history.store_many([(i.record, i.snapshot) for i in items])
            self._queue.ack(*(i.seq for i in items))
        if not self._up:
            log.info("console: writing the history again; %d events stored", len(items))
        self._up, self._last_error = True, ""
        self._prune()
        return len(items)

    def _prune(self) -> None:
        try:
            removed = self.console.history.prune(self.keep)
        except HistoryError as exc:
            log.warning("console: retention: %s", exc)
            return
        if removed:
            log.info("console: retention removed %d old events from the history", removed)

    def _failed(self, exc: Exception, delay_s: float) -> None:
        self._up = False
        reason = str(exc)
        level = logging.DEBUG if reason == self._last_error else logging.WARNING
        self._last_error = reason
        log.log(
            level,
            "console: %s [retrying in %.1f s; %d events kept in the outbox]",
            reason,
            delay_s,
            self._queue.depth(),
        )


class _Abandoned(Exception):
    """close() returned: this thread stores nothing more."""


def console_sink(cfg: ConsoleConfig, context: SinkContext, queue: SinkQueue) -> ConsoleSink:
    """The table's factory. ValueError names the key when the token cannot be read or
    the history cannot be opened."""
    token = read_token(cfg.auth_token_file, cfg.auth_token_env)
    try:
        history = History(context.state_dir / HISTORY_FILENAME)
    except HistoryError as exc:
        raise ValueError(str(exc)) from exc
    console = Console(
        history=history,
        board=CameraBoard(context.cameras),
        auth=Auth(token),
        live=LiveImages(context.live_slots),
        clips_root=context.state_dir / CLIPS_DIRNAME,
        device_id=context.device_id,
        listen_host=parse_listen(cfg.listen)[0],
        proxies=proxy_networks(cfg.trusted_proxies),
    )
    keep = Retention(
        max_age_s=cfg.history_max_age_days * SECONDS_PER_DAY,
        max_events=cfg.history_max_events,
        max_bytes=int(cfg.history_max_mb * BYTES_PER_MB),
    )
    return ConsoleSink(console, ConsoleServer(console, cfg.listen), keep, queue)
