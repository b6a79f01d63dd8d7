"""The webhook sink ([webhook]): every event record POSTed as JSON to each configured
URL, with retries, an optional HMAC signature, and the durable outbox behind it.

A thread takes the sink's pending events from the outbox in order and POSTs each to
every URL (webhook_http.py: the request, the signature, what an answer means). An event
leaves the outbox when every URL has answered it for good: 2xx (delivered) or a
permanent refusal (4xx other than 408/429, or a redirect). A URL that does not answer,
times out, or answers 5xx/408/429 holds that event, and every later one, back: the
thread waits (exponential backoff with jitter, retry_min_s .. retry_max_s, or the
server's Retry-After when longer, capped alike) and tries again, sending only to the
URLs that have not yet answered. So one down receiver delays the others, and order is
kept for all. An event every URL refused is dropped and counted (reason "rejected");
one that some URL accepted counts as delivered, and each URL's refusal of it is counted
as a drop with reason "rejected_by_one_url" (and logged with the URL's index).
Logs show each URL as scheme://host:port/... only (webhook_http.shown_url): the path of
a Slack, Discord or Teams webhook is its secret.

Delivery is at least once: a daemon stopped between a receiver's 2xx and the outbox's
ack, or a retry after an answer that never arrived, sends the event again with the same
`X-Actiond-Event-Id` / `Idempotency-Key` (`<event id>:<phase>`), by which a receiver
drops repeats. After a restart the sink sends `queue.pending()` first, in order.

Nothing here blocks the supervisor: `deliver` (the writer thread) only wakes the thread.
Each request is bounded as a whole by timeout_s (webhook_http.Target: the host name's
lookup on a thread it waits for at most that long, the socket's timeout, and a watchdog
that cuts a receiver answering a byte at a time);
`close(timeout_s)` lets the thread send what it can until then (1 s at most: the other
sinks' closing shares the deadline), then aborts the request in progress (shutdown of
its socket) and returns; the events not sent stay in the outbox. Each
batch holds the queue's batch_lock, so a replacement sink (a reload) never sends the
rows a closed sink's thread is still finishing.
"""

from __future__ import annotations

import logging
import os
import random
import ssl
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from daemon.config import WebhookConfig
from daemon.outputs.outbox import OutboxError, OutboxItem
from daemon.outputs.outbox_queue import SinkQueue
from daemon.outputs.sinks.protocol import SinkContext, event_links
from daemon.outputs.sinks.threaded import StopSending, ThreadedSink
from daemon.outputs.sinks.webhook_http import (
    Outcome,
    Target,
    Verdict,
    request_body,
    request_headers,
    retry_delay_s,
)

log = logging.getLogger(__name__)

SINK_NAME = "webhook"
DROP_REJECTED = "rejected"  # actiond_sink_dropped_total{reason}: every URL refused it
# ... one URL refused it while another took it (counted once per refusing URL)
DROP_REJECTED_BY_ONE = "rejected_by_one_url"
BATCH_EVENTS = 100
ABORT_GRACE_S = 0.5  # close(): after aborting the request in progress
# close() sends what is pending for at most this long: the rest stays in the outbox and
# goes after the restart, and the sinks closed after this one share the same deadline.
CLOSE_SEND_MAX_S = 1.0
OUTBOX_RETRY_S = 1.0  # the outbox could not be read or written


class _DeliveryFailed(Exception):
    """A try failed: the head event waits (outcome: why, and the server's Retry-After)."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.detail)
        self.outcome = outcome


class WebhookSetupError(ValueError):
    """[webhook] cannot work (its secret cannot be read, no URL): a config error."""


class WebhookSink(ThreadedSink):
    """POSTs each event record to every URL (see the module docstring)."""

    name = SINK_NAME
    retry_errors = (_DeliveryFailed,)
    _log = log

    def __init__(
        self,
        targets: Sequence[Target],
        queue: SinkQueue,
        secret: bytes | None = None,
        retry_s: tuple[float, float] = (1.0, 300.0),
        rand: Callable[[], float] = random.random,
        console_url: str = "",
    ) -> None:
        if not targets:
            raise WebhookSetupError("webhook.urls is empty: name at least one URL")
        super().__init__(queue)
        self.targets = tuple(targets)
        self._secret = secret
        self._retry_min_s, self._retry_max_s = retry_s
        self._rand = rand
        self._console_url = console_url  # the base of the events' clip/snapshot links
        # The answers the head event got so far, by URL index (a retry skips those URLs).
        self._head: tuple[int, dict[int, Verdict]] = (0, {})

    def __repr__(self) -> str:
        urls = ", ".join(t.shown for t in self.targets)
        return f"WebhookSink([{urls}], pending={self._queue.depth()})"

    def _view_extra(self) -> dict[str, Any]:
        return {"other_drops": self._queue.other_drops, "retries_total": self._queue.retries_total}

    def close(self, timeout_s: float) -> None:
        """Send what is pending until timeout_s (at most CLOSE_SEND_MAX_S), then abort
        the request in progress."""
        self._stopping.set()
        self._wake.set()
        if not self._join(min(timeout_s, CLOSE_SEND_MAX_S)):
            self._abandoned = True
            for target in self.targets:
                target.abort()
            if not self._join(ABORT_GRACE_S):
                log.warning(
                    "webhook: a request still runs %.1f s after close; %d events stay in "
                    "the outbox",
                    min(timeout_s, CLOSE_SEND_MAX_S) + ABORT_GRACE_S,
                    self._queue.depth(),
                )
                return  # the thread closes its connections when its request ends
        for target in self.targets:
            target.close()

    # ---- the sender thread ----

    def _run(self) -> None:
        try:
            super()._run()
        finally:
            if self._abandoned:
                for target in self.targets:
                    target.close()

    def _retry_delay_s(self, exc: Exception, failures: int) -> float:
        outcome = _outcome(exc)
        return retry_delay_s(outcome, failures, self._retry_min_s, self._retry_max_s, self._rand)

    def _send_pending(self) -> int:
        """Send batches until none is pending (how many went); _DeliveryFailed when a try
        fails, StopSending when it fails while closing."""
        try:
            sent, failure = self._send_batches()
        except OutboxError as exc:
            if self._abandoned:  # the outbox may be closed after close() returned
                raise StopSending from exc
            log.error("webhook: %s", exc)
            sent, failure = 0, Outcome("retry", str(exc), OUTBOX_RETRY_S)
        if failure is None:
            return sent
        if self._stopping.is_set():
            log.debug("webhook: stopped while delivering: %s", failure.detail)
            raise StopSending
        raise _DeliveryFailed(failure)

    def _send_batches(self) -> tuple[int, Outcome | None]:
        sent = 0
        while True:
            with self._queue.batch_lock:
                if self._abandoned:
                    raise StopSending
                items = self._queue.pending(BATCH_EVENTS)
                if not items:
                    return sent, None
                failure = self._send_batch(items)
            if failure is not None:
                return sent, failure
            sent += len(items)

    def _send_batch(self, items: Sequence[OutboxItem]) -> Outcome | None:
        delivered: list[int] = []
        rejected: list[int] = []
        try:
            for item in items:
                outcome = self._send_item(item)
                if outcome.verdict == "retry":
                    self._queue.retry_later(item.seq, 0.0)  # counts the try (event, metric)
                    return outcome
                (delivered if outcome.verdict == "delivered" else rejected).append(item.seq)
            return None
        finally:
            if delivered:
                self._queue.ack(*delivered)
            if rejected:
                self._queue.drop(DROP_REJECTED, *rejected)

    def _send_item(self, item: OutboxItem) -> Outcome:
        """POST one event to every URL that has not answered it yet."""
        if self._head[0] != item.seq:
            self._head = (item.seq, {})
        answers = self._head[1]
        body = request_body(self._body_record(item))
        for index, target in enumerate(self.targets):
            if index in answers:
                continue
            if self._abandoned:
                raise StopSending
            headers = request_headers(item.key, body, self._secret, int(time.time()))
            outcome = target.post(body, headers, time.time)
            if outcome.verdict == "retry":
                return Outcome("retry", f"{target.shown}: {outcome.detail}", outcome.retry_after_s)
            if outcome.verdict == "rejected":
                log.warning(
                    "webhook: %s (webhook.urls[%d]) refused event %s: %s; not sent there again",
                    target.shown,
                    index,
                    item.key,
                    outcome.detail,
                )
            answers[index] = outcome.verdict
        self._recovered()
        verdict: Verdict = "delivered" if "delivered" in answers.values() else "rejected"
        if verdict == "delivered" and (refusals := list(answers.values()).count("rejected")):
            self._queue.count_drop(DROP_REJECTED_BY_ONE, refusals)
        return Outcome(verdict, item.key)

    def _body_record(self, item: OutboxItem) -> dict[str, Any]:
        """The record, and with the console on, the links to its copy of the event's clip
        and snapshot (protocol.event_links), as the MQTT payload has them."""
        return {**item.record, **event_links(item.record, self._console_url)}

    def _recovered(self) -> None:
        if not self._up:
            log.info(
                "webhook: delivering again (%d failed tries since start); %d events pending",
                self._queue.retries_total,
                self._queue.depth(),
            )
        self._up, self._last_error = True, ""

    def _failed(self, exc: Exception, delay_s: float) -> None:
        detail = _outcome(exc).detail
        log.log(
            self._failure_level(detail),
            "webhook: cannot deliver: %s [retrying in %.1f s; %d events kept in the outbox]",
            detail,
            delay_s,
            self._queue.depth(),
        )


def _outcome(exc: Exception) -> Outcome:
    if not isinstance(exc, _DeliveryFailed):
        raise TypeError(f"not a webhook delivery failure: {exc!r}") from exc
    return exc.outcome


def read_secret(cfg: WebhookConfig) -> bytes | None:
    """The signing secret from webhook.secret_file or webhook.secret_env (never logged)."""
    if cfg.secret_file and cfg.secret_env:
        raise WebhookSetupError("set only one of webhook.secret_file and webhook.secret_env")
    if cfg.secret_file:
        try:
            text = Path(cfg.secret_file).read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            why = getattr(exc, "strerror", None) or str(exc)
            raise WebhookSetupError(
                f"cannot read webhook.secret_file {cfg.secret_file}: {why}"
            ) from exc
        where = f"webhook.secret_file {cfg.secret_file}"
    elif cfg.secret_env:
        value = os.environ.get(cfg.secret_env)
        if value is None:
            raise WebhookSetupError(
                f"webhook.secret_env names {cfg.secret_env}, which is not set in the "
                "environment (systemd: Environment= or EnvironmentFile= in the unit)"
            )
        text, where = value, f"webhook.secret_env {cfg.secret_env}"
    else:
        return None
    if not text:
        raise WebhookSetupError(f"{where} is empty; put the shared secret there")
    return text.encode()


def _tls_context(cfg: WebhookConfig) -> ssl.SSLContext | None:
    if not any(url.startswith("https:") for url in cfg.urls):
        return None
    try:
        return ssl.create_default_context(cafile=cfg.ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise WebhookSetupError(f"cannot load webhook.ca_file {cfg.ca_file!r}: {exc}") from exc


def webhook_sink(cfg: WebhookConfig, context: SinkContext, queue: SinkQueue) -> WebhookSink:
    """The table's factory; WebhookSetupError when [webhook] cannot work."""
    tls = _tls_context(cfg)
    targets = [Target(url, cfg.timeout_s, tls) for url in cfg.urls]
    retry_s = (cfg.retry_min_s, cfg.retry_max_s)
    secret = read_secret(cfg)
    return WebhookSink(targets, queue, secret, retry_s, console_url=context.console_url)
