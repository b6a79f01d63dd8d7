"""The webhook sink against a real local HTTP receiver (tests/webhook_receiver.py) over a
real SQLite outbox: signed delivery verified the way the README tells a receiver to,
failure then recovery in order with the retries counted, Retry-After honoured, a hung
receiver timed out and close() bounded, refusals dropped and counted, and two URLs each
getting every event once. The daemon-level story (a restart, a scrape) is in
tests/test_webhook_daemon.py."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mosquitto_fixture import OPENSSL, make_server_cert, make_test_ca
from webhook_receiver import Answer, Received, WebhookReceiver

from daemon.config import WebhookConfig
from daemon.outputs.outbox import Outbox
from daemon.outputs.outbox_queue import SinkQueue
from daemon.outputs.sinks import webhook_http
from daemon.outputs.sinks.protocol import SinkContext
from daemon.outputs.sinks.webhook import (
    ABORT_GRACE_S,
    CLOSE_SEND_MAX_S,
    DROP_REJECTED,
    DROP_REJECTED_BY_ONE,
    WebhookSink,
    webhook_sink,
)
from daemon.outputs.sinks.webhook_http import Target

pytestmark = pytest.mark.timeout(60)

SECRET = b"s3cret-shared-with-the-receiver"
DEADLINE_S = 20.0
FAST_RETRY_S = (0.05, 0.2)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver().start()
    yield r
    r.stop()


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[SinkQueue]:
    with Outbox(tmp_path / "outbox.sqlite3") as outbox:
        yield outbox.queue("webhook", 1000)


def make_sink(
    queue: SinkQueue,
    urls: list[str],
    secret: bytes | None = None,
    timeout_s: float = 5.0,
    retry_s: tuple[float, float] = FAST_RETRY_S,
) -> WebhookSink:
    sink = WebhookSink([Target(u, timeout_s, None) for u in urls], queue, secret, retry_s)
    sink.start()
    return sink


def store(queue: SinkQueue, sink: WebhookSink, count: int, first: int = 0) -> list[str]:
    keys = []
    for i in range(first, first + count):
        record = {"id": f"e{i:03d}", "phase": "start", "camera": "door", "action": "waving"}
        item = queue.store(f"e{i:03d}:start", record)
        assert item is not None
        sink.deliver(item)
        keys.append(item.key)
    return keys


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def verify(request: Received, secret: bytes, max_age_s: float = 300.0) -> bool:
    """What the README tells a receiver to do, written independently of the daemon's code."""
    timestamp = request.headers["X-Actiond-Timestamp"]
    if abs(time.time() - int(timestamp)) > max_age_s:
        return False
    signed = timestamp.encode() + b"." + request.body
    expected = "sha256=" + hmac.new(secret, signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, request.headers["X-Actiond-Signature"])


def test_events_arrive_signed_in_order_with_their_idempotency_key(
    receiver: WebhookReceiver, queue: SinkQueue
) -> None:
    sink = make_sink(queue, [receiver.url], SECRET)
    keys = store(queue, sink, 5)
    receiver.wait_for(lambda: len(receiver.accepted()) == 5, DEADLINE_S, "five deliveries")
    wait_until(lambda: queue.depth() == 0, "the outbox to empty")
    sink.close(2.0)
    got = receiver.requests()
    assert [r.key for r in got] == keys
    assert all(r.headers["Idempotency-Key"] == r.key for r in got)
    assert all(verify(r, SECRET) for r in got), "a signature does not verify"
    assert not verify(got[0], b"another secret")
    tampered = Received(got[0].path, got[0].headers, got[0].body + b" ", got[0].answer, 0.0)
    assert not verify(tampered, SECRET), "a changed body still verified"
    assert got[0].record == {"id": "e000", "phase": "start", "camera": "door", "action": "waving"}
    assert got[0].headers["Content-Type"] == "application/json"
    assert got[0].path == "/hook"
    view = sink.view()
    assert (view.up, view.delivered_total, view.pending, view.other_drops) == (True, 5, 0, ())


def test_without_a_secret_no_signature_is_sent(receiver: WebhookReceiver, queue: SinkQueue) -> None:
    sink = make_sink(queue, [receiver.url])
    store(queue, sink, 1)
    receiver.wait_for(lambda: len(receiver.accepted()) == 1, DEADLINE_S, "a delivery")
    sink.close(2.0)
    assert "X-Actiond-Signature" not in receiver.requests()[0].headers


def test_failures_then_recovery_deliver_everything_in_order(
    receiver: WebhookReceiver, queue: SinkQueue
) -> None:
    failures = 6
    statuses = [500, 502, 503, 429, 408, 504]
    lock = threading.Lock()
    count = [0]

    def flaky(_: Received) -> Answer:
        with lock:
            count[0] += 1
            n = count[0]
        return Answer(statuses[n - 1]) if n <= failures else Answer(200)

    receiver.answer = flaky
    sink = make_sink(queue, [receiver.url])
    keys = store(queue, sink, 10)
    receiver.wait_for(lambda: len(receiver.accepted()) == 10, DEADLINE_S, "all ten events")
    sink.close(2.0)
    assert receiver.accepted_keys() == keys, "an event was lost, doubled or reordered"
    # Every failed try was for the head event (e000): nothing overtook it.
    assert [r.key for r in receiver.requests()[:failures]] == [keys[0]] * failures
    assert sink.view().retries_total == failures == queue.retries_total
    assert queue.depth() == 0 and queue.delivered_total == 10
    assert sink.view().up


def test_a_retry_after_is_honoured(receiver: WebhookReceiver, queue: SinkQueue) -> None:
    answers = iter([Answer(503, retry_after="1")])
    receiver.answer = lambda _: next(answers, Answer(200))
    sink = make_sink(queue, [receiver.url], retry_s=(0.05, 2.0))
    store(queue, sink, 1)
    receiver.wait_for(lambda: len(receiver.accepted()) == 1, DEADLINE_S, "the retry")
    sink.close(2.0)
    first, second = receiver.requests()
    # The backoff alone would have waited 0.05 s at most.
    assert second.at - first.at >= 0.95, f"retried after {second.at - first.at:.2f} s"


def test_while_failing_the_sink_is_down_and_waits_in_the_outbox(
    receiver: WebhookReceiver, queue: SinkQueue
) -> None:
    receiver.answer = lambda _: Answer(503)
    sink = make_sink(queue, [receiver.url])
    store(queue, sink, 3)
    receiver.wait_for(lambda: len(receiver.requests()) >= 3, DEADLINE_S, "three tries")
    view = sink.view()
    assert (view.up, view.pending, view.delivered_total) == (False, 3, 0)
    assert queue.pending(1)[0].attempts >= 2, "failed tries are counted on the event"
    sink.close(1.0)


def test_a_hung_receiver_times_out_and_close_is_bounded(
    receiver: WebhookReceiver, queue: SinkQueue
) -> None:
    receiver.answer = lambda _: Answer(hang=True)
    timeout_s = 0.5
    sink = make_sink(queue, [receiver.url], timeout_s=timeout_s, retry_s=(0.05, 0.1))
    store(queue, sink, 1)
    receiver.wait_for(lambda: len(receiver.requests()) == 1, DEADLINE_S, "a hanging request")
    item = queue.store("e001:start", {"id": "e001", "phase": "start"})
    assert item is not None
    t0 = time.monotonic()
    sink.deliver(item)  # the writer thread's call, while the sender thread hangs
    assert time.monotonic() - t0 < 0.05, "deliver() waited for the network"
    receiver.wait_for(lambda: len(receiver.requests()) >= 3, DEADLINE_S, "timed-out retries")
    first, second = receiver.requests()[:2]
    assert first.key == second.key == "e000:start"
    assert second.at - first.at >= timeout_s * 0.9, "retried before the timeout"
    assert not sink.view().up
    sink.close(1.0)
    assert queue.depth() == 2, "undelivered events stay in the outbox"


@pytest.mark.parametrize("close_s", [0.2, 10.0])
def test_close_aborts_a_hanging_request_within_its_bound(
    receiver: WebhookReceiver, queue: SinkQueue, close_s: float
) -> None:
    receiver.answer = lambda _: Answer(hang=True)
    sink = make_sink(queue, [receiver.url], timeout_s=30.0)
    store(queue, sink, 1)
    receiver.wait_for(lambda: len(receiver.requests()) == 1, DEADLINE_S, "a hanging request")
    t0 = time.monotonic()
    sink.close(close_s)
    took = time.monotonic() - t0
    # A long deadline is not spent on one hung receiver: the other sinks share it.
    assert took < min(close_s, CLOSE_SEND_MAX_S) + ABORT_GRACE_S, f"close took {took:.2f} s"
    assert sink._thread is not None and not sink._thread.is_alive(), "the request still runs"
    assert queue.depth() == 1, "the undelivered event stays in the outbox"
    assert len(receiver.requests()) == 1


def test_a_receiver_answering_a_byte_at_a_time_is_cut_at_timeout_s(
    receiver: WebhookReceiver, queue: SinkQueue, caplog: pytest.LogCaptureFixture
) -> None:
    # Each byte comes well within the socket's timeout: only the whole-request bound ends it.
    answers = iter([Answer(trickle=True)])
    receiver.answer = lambda _: next(answers, Answer(200))
    timeout_s = 1.0
    sink = make_sink(queue, [receiver.url], timeout_s=timeout_s)
    with caplog.at_level(logging.WARNING, logger="daemon.outputs.sinks.webhook"):
        store(queue, sink, 1)
        receiver.wait_for(lambda: len(receiver.accepted()) == 1, DEADLINE_S, "the retry")
    sink.close(2.0)
    first, second = receiver.requests()
    took = second.at - first.at
    assert timeout_s * 0.9 <= took < timeout_s + 3.0, f"the slow answer was cut after {took:.2f} s"
    assert f"timed out after {timeout_s:g} s" in caplog.text


def test_a_refused_event_is_dropped_counted_and_not_retried(
    receiver: WebhookReceiver, queue: SinkQueue, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.answer = lambda r: Answer(400) if r.key == "e001:start" else Answer(200)
    sink = make_sink(queue, [receiver.url], SECRET)
    keys = store(queue, sink, 3)
    with caplog.at_level(logging.WARNING, logger="daemon.outputs.sinks.webhook"):
        receiver.wait_for(lambda: len(receiver.accepted()) == 2, DEADLINE_S, "the other two")
        wait_until(lambda: queue.depth() == 0, "the outbox to empty")
    sink.close(2.0)
    assert [r.key for r in receiver.requests()] == keys, "the refused event was retried"
    view = sink.view()
    assert view.other_drops == ((DROP_REJECTED, 1),)
    assert view.delivered_total == 2
    refusals = [r.message for r in caplog.records if "refused" in r.message]
    assert len(refusals) == 1 and "HTTP 400" in refusals[0] and "e001:start" in refusals[0]
    assert "test receiver says so" in refusals[0], "the receiver's reason is not logged"
    assert SECRET.decode() not in caplog.text


def test_a_refusal_by_one_url_is_counted_and_its_secret_path_never_logged(
    receiver: WebhookReceiver, queue: SinkQueue, caplog: pytest.LogCaptureFixture
) -> None:
    # A Slack-style URL: the path is the secret. It refuses; the other URL takes them.
    refusing = WebhookReceiver().start()
    refusing.answer = lambda _: Answer(403)
    secret_url = f"{refusing.url}/services/T0/B0/path-secret-91ab"
    try:
        sink = make_sink(queue, [receiver.url, secret_url])
        with caplog.at_level(logging.DEBUG, logger="daemon.outputs.sinks"):
            keys = store(queue, sink, 2)
            wait_until(lambda: queue.depth() == 0, "both events answered by both URLs")
            text = f"{sink!r} {sink.targets!r} {caplog.text}"
        sink.close(2.0)
        assert receiver.accepted_keys() == keys and len(refusing.requests()) == 2
        assert refusing.requests()[0].path == "/hook/services/T0/B0/path-secret-91ab"
        view = sink.view()
        assert view.delivered_total == 2
        assert view.other_drops == ((DROP_REJECTED_BY_ONE, 2),), view.other_drops
        assert "path-secret-91ab" not in text, text
        assert f"http://127.0.0.1:{refusing.port}/... (webhook.urls[1]) refused" in text
    finally:
        refusing.stop()


def test_a_host_name_lookup_that_hangs_is_bounded_by_timeout_s(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # getaddrinfo has no timeout: a resolver that never answers held the sink's thread
    # for as long as the lookup took (here 5 s; the resolver's retries can take minutes).
    release = threading.Event()

    def hung_lookup(*args: Any, **kwargs: Any) -> Any:
        release.wait(5.0)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(webhook_http.socket, "getaddrinfo", hung_lookup)
    target = Target("http://hooks.example.invalid/x", 0.5, None)
    started = time.monotonic()
    try:
        outcome = target.post(b"{}", {}, time.time)
    finally:
        took = time.monotonic() - started
        release.set()
    assert outcome.verdict == "retry"
    assert "not resolved within 0.5 s" in outcome.detail, outcome.detail
    assert took < 2.0, f"the lookup held the request for {took:.2f} s"


def test_requests_start_no_thread_each(
    receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The whole-request bound was a threading.Timer per POST (a thread each, ~750/s).
    started: list[str] = []
    start = threading.Thread.start

    def counting_start(thread: threading.Thread) -> None:
        started.append(thread.name)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", counting_start)
    target = Target(receiver.url, 5.0, None)
    for i in range(50):
        outcome = target.post(b"{}", {"X-Actiond-Event-Id": f"e{i}:start"}, time.time)
        assert outcome.verdict == "delivered", outcome
    target.close()
    mine = [name for name in started if "process_request" not in name]  # not the receiver's
    assert mine == ["webhook-watchdog"], mine


def test_the_body_links_the_consoles_clip_and_snapshot(
    receiver: WebhookReceiver, queue: SinkQueue, tmp_path: Path
) -> None:
    console = "http://box.example:8090"
    context = SinkContext("box", ("door",), ("waving",), tmp_path, console_url=console)
    section = WebhookConfig(enabled=True, urls=(receiver.url,), retry_min_s=0.05, retry_max_s=0.2)
    sink = webhook_sink(section, context, queue)
    sink.start()
    base = {"camera": "door", "action": "waving", "phase": "start"}
    with_clip = dict(base, id="e 1", clip="door/e 1.webm", has_snapshot=True)
    without = dict(base, id="e2", clip=None, clip_missing="disk_low", has_snapshot=False)
    for record in (with_clip, without):
        item = queue.store(f"{record['id']}:start", record)
        assert item is not None
        sink.deliver(item)
    receiver.wait_for(lambda: len(receiver.accepted()) == 2, DEADLINE_S, "both events")
    sink.close(2.0)
    first, second = (json.loads(r.body) for r in receiver.accepted())
    assert first["clip_url"] == f"{console}/api/events/e%201/clip"
    assert first["snapshot_url"] == f"{console}/api/events/e%201/snapshot.jpg"
    assert first["has_snapshot"] is True and first["clip"] == "door/e 1.webm"
    assert second["has_snapshot"] is False and second["clip_missing"] == "disk_low"
    assert "clip_url" not in second and "snapshot_url" not in second


def test_two_urls_each_get_every_event_once_while_one_is_down(
    receiver: WebhookReceiver, queue: SinkQueue
) -> None:
    other = WebhookReceiver().start()
    try:
        other.answer = lambda _: Answer(503)
        sink = make_sink(queue, [receiver.url, other.url])
        keys = store(queue, sink, 4)
        other.wait_for(lambda: len(other.requests()) >= 3, DEADLINE_S, "retries to the down one")
        assert receiver.accepted_keys() == keys[:1], "events overtook the held-back head"
        assert queue.depth() == 4
        other.answer = lambda _: Answer(200)
        other.wait_for(lambda: len(other.accepted()) == 4, DEADLINE_S, "the recovered URL")
        wait_until(lambda: queue.depth() == 0, "the outbox to empty")
        sink.close(2.0)
        assert receiver.accepted_keys() == keys, "the up URL got an event twice"
        assert other.accepted_keys() == keys
    finally:
        other.stop()


def test_a_restarted_sink_sends_what_the_outbox_kept_first(
    receiver: WebhookReceiver, queue: SinkQueue
) -> None:
    receiver.stop()  # down: connection refused
    sink = make_sink(queue, [receiver.url])
    keys = store(queue, sink, 3)
    wait_until(lambda: not sink.view().up, "the sink to see the receiver down")
    sink.close(1.0)
    assert queue.depth() == 3
    receiver.start()
    again = make_sink(queue, [receiver.url])
    keys += store(queue, again, 2, first=3)
    receiver.wait_for(lambda: len(receiver.accepted()) == 5, DEADLINE_S, "every event")
    again.close(2.0)
    assert receiver.accepted_keys() == keys
    assert json.loads(receiver.requests()[0].body)["id"] == "e000"


@pytest.mark.skipif(not Path(OPENSSL).exists(), reason="needs openssl: apt-get install openssl")
def test_https_to_a_receiver_with_its_own_ca(
    tmp_path: Path, queue: SinkQueue, caplog: pytest.LogCaptureFixture
) -> None:
    ca = make_test_ca(tmp_path, "hook-ca")
    cert, key = make_server_cert(tmp_path, ca, "127.0.0.1")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    receiver = WebhookReceiver(tls=tls).start()
    context = SinkContext("box", ("door",), ("waving",), tmp_path)
    section = WebhookConfig(enabled=True, urls=(receiver.url,), retry_min_s=0.05, retry_max_s=0.2)
    try:
        untrusting = webhook_sink(section, context, queue)  # the system's CAs only
        untrusting.start()
        with caplog.at_level(logging.WARNING, logger="daemon.outputs.sinks.webhook"):
            keys = store(queue, untrusting, 2)
            wait_until(lambda: not untrusting.view().up, "the untrusted certificate to fail")
        untrusting.close(1.0)
        assert "TLS certificate not trusted" in caplog.text and "webhook.ca_file" in caplog.text
        assert receiver.requests() == [] and queue.depth() == 2
        sink = webhook_sink(dataclasses.replace(section, ca_file=str(ca[0])), context, queue)
        sink.start()
        receiver.wait_for(lambda: len(receiver.accepted()) == 2, DEADLINE_S, "https deliveries")
        sink.close(2.0)
        assert receiver.accepted_keys() == keys
    finally:
        receiver.stop()
