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
from collections.abc import Mapping
from dataclasses import replace
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
from daemon.outputs.outbox import OutboxError
from daemon.outputs.outbox_queue import SinkQueue
from daemon.outputs.sinks.protocol import SinkContext, SinkView
from daemon.outputs.sinks.threaded import THREAD_JOIN_GRACE_S, StopSending, ThreadedSink

log = logging.getLogger(__name__)

SINK_NAME = "console"
BATCH_EVENTS = 200
PRUNE_EVERY_S = 60.0
SECONDS_PER_DAY = 86400.0
BYTES_PER_MB = 1024 * 1024


class ConsoleSink(ThreadedSink):
    """The history writer and the web console's server (module docstring)."""

    name = SINK_NAME
    wants_snapshots = True
    retry_errors = (HistoryError, OutboxError)
    _log = log
    _abandoned_text = (
        "console: the history writer did not stop within %.1f s; %d events stay in the outbox"
    )

    def __init__(
        self, console: Console, server: ConsoleServer, keep: Retention, queue: SinkQueue
    ) -> None:
        super().__init__(queue)
        self.console = console
        self.server = server
        self.keep = keep

    def __repr__(self) -> str:
        return f"ConsoleSink({self.server!r}, {self.console.history!r})"

    def start(self) -> None:
        super().start()
        self.server.start()

    def set_camera_available(self, camera: str, available: bool) -> None:
        self.console.board.set_available(camera, available)

    def publish_stats(self, stats: Mapping[str, Any]) -> None:
        self.console.board.update(stats)

    def view(self) -> SinkView:
        # up: the history is written and the port bound
        return replace(super().view(), up=self._up and self.server.bound.is_set())

    def _view_extra(self) -> dict[str, Any]:
        return {"logins_failed_total": self.console.auth.limiter.failed_total}

    def _closing(self, timeout_s: float) -> None:
        """Store what is pending and stop the server, both within timeout_s."""
        self.server.close(timeout_s / 2)

    def _join_s(self, timeout_s: float) -> float:
        return timeout_s / 2 + THREAD_JOIN_GRACE_S

    def _closed(self) -> None:
        self.console.live.close()
        self.console.history.close()

    # ---- the writer thread ----

    def _send_pending(self) -> int:
        with self._queue.batch_lock:
            if self._abandoned:
                raise StopSending
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

    def _idle(self) -> None:
        """Nothing pending: wait for a wake, pruning every PRUNE_EVERY_S meanwhile."""
        self._wake.wait(PRUNE_EVERY_S)
        self._prune()

    def _prune(self) -> None:
        try:
            removed = self.console.history.prune(self.keep)
        except HistoryError as exc:
            log.warning("console: retention: %s", exc)
            return
        if removed:
            log.info("console: retention removed %d old events from the history", removed)

    def _failed(self, exc: Exception, delay_s: float) -> None:
        reason = str(exc)
        log.log(
            self._failure_level(reason),
            "console: %s [retrying in %.1f s; %d events kept in the outbox]",
            reason,
            delay_s,
            self._queue.depth(),
        )


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
