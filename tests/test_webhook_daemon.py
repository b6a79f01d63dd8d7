"""The webhook sink in the real daemon (`actiond run`, the brightness model on a looping
light-switch clip, events every few seconds) against a real local receiver:

1. the receiver is down: events wait in the outbox, the scrape says the sink is down;
   the daemon is SIGKILLed;
2. the receiver comes back, the daemon starts again: every event the killed run stored
   arrives first, in order, signed; the scrape says up and delivered;
3. the receiver hangs: the supervisor's loop still answers scrapes and stores events,
   and SIGTERM still stops the daemon promptly with exit 0.
"""

from __future__ import annotations

import hashlib
import hmac
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from daemon_proc import Daemon, free_port, wait_for
from metrics_helpers import label_set, parse_samples, scrape_text
from models import brightness_model
from test_daemon_mqtt import light_switch_clip
from webhook_receiver import Answer, Received, WebhookReceiver

from daemon.exitcodes import ExitCode
from daemon.outputs.outbox import OUTBOX_FILENAME

START_S = 90.0  # the supervisor loads the model before it opens the sinks
EVENTS_S = 60.0
STOP_S = 20.0  # SIGTERM to exit, with a request hanging (timeout_s is far longer)
SECRET = "daemon-test-secret"
SECRET_ENV = "ACTIOND_TEST_WEBHOOK_SECRET"
# A Slack-style URL whose path is the secret: never in the log.
PATH_SECRET = "services/T0/B0/path-secret-7d1e"
SINK = label_set(sink="webhook")


def webhook_daemon(tmp: Path, clip: Path, url: str, metrics_port: int) -> Daemon:
    camera = {"name": "hall", "source": str(clip), "width": 64, "height": 48, "loop": True}
    sections = {
        "daemon": {"device_id": "hookbox"},
        "motion": {"width": 32, "height": 32},
        "inference": {"model": str(tmp / "brightness.onnx"), "stride": 2},
        "events": {"ignore": ["dark"], "start_windows": 2, "end_windows": 2, "cooldown_s": 0.0},
        "metrics": {"listen": f"127.0.0.1:{metrics_port}"},
        "webhook": {
            "enabled": True,
            "urls": [url],
            "timeout_s": 60.0,
            "retry_min_s": 0.2,
            "retry_max_s": 1.0,
            "secret_env": SECRET_ENV,
        },
    }
    return Daemon(tmp, [camera], sections, env={SECRET_ENV: SECRET})


def outbox_keys(state: Path) -> list[str]:
    path = state / OUTBOX_FILENAME
    if not path.exists():
        return []
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0) as db:
            rows = db.execute(
                "SELECT e.key FROM deliveries d JOIN events e ON e.seq = d.seq "
                "WHERE d.sink = 'webhook' ORDER BY d.seq"
            ).fetchall()
    except sqlite3.OperationalError as exc:
        assert "no such table" in str(exc), exc  # the daemon is still creating the file
        return []
    return [str(key) for (key,) in rows]


def sink_samples(port: int) -> dict[str, float]:
    samples = parse_samples(scrape_text(f"http://127.0.0.1:{port}/metrics"))
    names = (
        "actiond_sink_up",
        "actiond_sink_pending_events",
        "actiond_sink_delivered_total",
        "actiond_sink_retries_total",
    )
    return {name: samples.get(name, {}).get(SINK, -1.0) for name in names}


def signed_by_secret(request: Received) -> bool:
    timestamp = request.headers["X-Actiond-Timestamp"]
    mac = hmac.new(SECRET.encode(), timestamp.encode() + b"." + request.body, hashlib.sha256)
    return request.headers["X-Actiond-Signature"] == f"sha256={mac.hexdigest()}"


def run_while_down(daemons: list[Daemon], tmp: Path, clip: Path, url: str) -> list[str]:
    """Run 1: the receiver is down; SIGKILL once four events wait. The keys stored."""
    port = free_port()
    d = webhook_daemon(tmp, clip, url, port)
    daemons.append(d.start())
    wait_for(lambda: len(outbox_keys(tmp / "state")) >= 4, START_S, "four events in the outbox")
    metrics = sink_samples(port)
    assert metrics["actiond_sink_up"] == 0.0, metrics
    assert metrics["actiond_sink_pending_events"] >= 4, metrics
    assert metrics["actiond_sink_delivered_total"] == 0.0, metrics
    assert metrics["actiond_sink_retries_total"] >= 1, metrics
    d.signal(signal.SIGKILL)
    d.wait(STOP_S)
    stored = outbox_keys(tmp / "state")
    assert len(stored) >= 4
    return stored


@pytest.mark.timeout(400)
def test_webhook_events_survive_a_kill_while_the_receiver_is_down(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    clip = light_switch_clip(tmp_path / "lights.mp4")
    brightness_model(tmp_path / "brightness.onnx")
    receiver = WebhookReceiver().start()
    receiver.stop()  # down: nothing listens on its port
    url = f"{receiver.url}/{PATH_SECRET}"
    try:
        stored = run_while_down(daemons, tmp_path, clip, url)
        assert receiver.requests() == []
        receiver.start()  # the same port
        port = free_port()
        d = webhook_daemon(tmp_path, clip, url, port)
        daemons.append(d.start())
        receiver.wait_for(
            lambda: len(receiver.accepted()) >= len(stored) + 1,
            START_S + EVENTS_S,
            "the killed run's events, then a new one",
        )
        got = receiver.accepted()
        assert [r.key for r in got[: len(stored)]] == stored, "lost, doubled or reordered"
        assert got[0].path == f"/hook/{PATH_SECRET}", "not POSTed to the whole URL"
        assert all(signed_by_secret(r) for r in got)
        assert all(r.record["device_id"] == "hookbox" for r in got)
        wait_for(
            lambda: sink_samples(port)["actiond_sink_delivered_total"] >= len(stored) + 1,
            EVENTS_S,
            "the scrape to count them delivered",
        )
        assert sink_samples(port)["actiond_sink_up"] == 1.0
        refuse_one(receiver, port)
        hang_then_stop(d, receiver, port)
    finally:
        receiver.stop()
    assert SECRET not in d.log(), "the secret is in the log"
    logs = daemons[0].log() + d.log()
    assert "connection refused" in daemons[0].log(), "the down receiver is not logged"
    assert PATH_SECRET.split("/")[-1] not in logs, "the URL's secret path is in the log"
    assert f"http://127.0.0.1:{receiver.port}/..." in logs, "the URL is not shown at all"


def refuse_one(receiver: WebhookReceiver, port: int) -> None:
    """The receiver refuses (400) the next event: dropped, counted in a real scrape."""
    seen = len(receiver.requests())
    receiver.answer = lambda _: Answer(400)
    receiver.wait_for(lambda: len(receiver.requests()) > seen, EVENTS_S, "an event refused")
    receiver.answer = lambda _: Answer(200)
    rejected = label_set(sink="webhook", reason="rejected")

    def dropped() -> float:
        samples = parse_samples(scrape_text(f"http://127.0.0.1:{port}/metrics"))
        return samples.get("actiond_sink_dropped_total", {}).get(rejected, 0.0)

    wait_for(lambda: dropped() >= 1, EVENTS_S, 'dropped_total{reason="rejected"} in the scrape')
    refused = [r.key for r in receiver.requests()[seen:] if r.answer.status == 400]
    assert len(refused) == len(set(refused)), "a refused event was sent again"


def hang_then_stop(d: Daemon, receiver: WebhookReceiver, port: int) -> None:
    """Run 2's end: the receiver hangs; the loop still works; SIGTERM stops it promptly."""
    receiver.answer = lambda _: Answer(hang=True)
    hung = len(receiver.requests())
    receiver.wait_for(lambda: len(receiver.requests()) > hung, EVENTS_S, "a hanging request")
    pending = sink_samples(port)["actiond_sink_pending_events"]
    wait_for(
        lambda: sink_samples(port)["actiond_sink_pending_events"] > pending,
        EVENTS_S,
        "events stored while the webhook hangs (the scrape answers meanwhile)",
    )
    t0 = time.monotonic()
    assert d.stop(STOP_S) == ExitCode.OK, d.log()
    took = time.monotonic() - t0
    assert took < STOP_S, f"SIGTERM took {took:.1f} s with a request hanging"
    assert "Traceback" not in d.log(), d.log()
    assert "still runs" not in d.log(), "close() left a hanging request running"


@pytest.mark.timeout(120)
def test_an_unset_secret_variable_stops_the_daemon_with_one_line(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    unset = "ACTIOND_TEST_WEBHOOK_SECRET_THAT_IS_NOT_SET"
    sections = {
        "webhook": {"enabled": True, "urls": ["http://127.0.0.1:9/hook"], "secret_env": unset}
    }
    d = Daemon(
        tmp_path, [{"name": "cam", "source": "test:bars", "width": 160, "height": 120}], sections
    )
    daemons.append(d.start())
    assert d.wait(START_S) == ExitCode.CONFIG, d.log()
    log = d.log()
    assert "Traceback" not in log, log
    errors = [line for line in log.splitlines() if "event sink" in line]
    assert len(errors) == 1, log
    assert "[webhook]" in errors[0] and unset in errors[0] and "fix it in the config" in errors[0]
    assert d.leftovers() == [], "the rings made before the failure are removed"
