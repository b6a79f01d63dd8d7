"""MqttPublisher against a real mosquitto: delivery, availability, outages, crashes, auth."""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest

# The broker fixtures (mosquitto, mosquitto_auth, mosquitto_persistent, mosquitto_tls,
# mqtt_collector) come from mosquitto_fixture, registered as a plugin in conftest.py.
from mosquitto_fixture import (
    AUTH_PASSWORD,
    AUTH_USER,
    MosquittoBroker,
    MqttCollector,
    free_port,
    make_test_ca,
    wait_until,
)
from paho.mqtt.enums import CallbackAPIVersion

from daemon.config import MqttConfig
from daemon.outputs.mqtt import MqttPublisher
from daemon.outputs.mqtt_session import MqttSetupError, Session, resolve_password
from daemon.outputs.outbox import Outbox

pytestmark = pytest.mark.timeout(60)  # the broker fixtures skip when mosquitto is missing

REPO_ROOT = Path(__file__).resolve().parent.parent
DEVICE = "edge1"
CAMERAS = ("cam1", "cam2")
ACTIONS = ("walk", "fall")
BASE = f"actiond/{DEVICE}"
CHILD_READY_TIMEOUT_S = 20.0
# A publisher in a child process, to be SIGKILLed: argv[1] is JSON (port, outbox, events,
# wait_connected). Prints READY once its events are in the outbox.
CHILD_CODE = """
import json, sys
from pathlib import Path
from daemon.config import MqttConfig
from daemon.outputs.mqtt import MqttPublisher
from daemon.outputs.outbox import Outbox
args = json.loads(sys.argv[1])
cfg = MqttConfig(enabled=True, host="127.0.0.1", port=args["port"], discovery=False)
queue = Outbox(Path(args["outbox"])).queue("mqtt", 100)
pub = MqttPublisher(cfg, args["device"], ["cam1"], ["walk"], queue,
                    reconnect_min_s=0.1, reconnect_max_s=0.5)
pub.start()
if args["wait_connected"] and not pub.wait_connected(10):
    sys.exit("child publisher did not connect")
for i in range(args["events"]):
    pub.publish_event({"id": f"child{i}", "camera": "cam1", "action": "walk",
                       "phase": "start", "score": 0.9, "started_at": 1.0, "ended_at": None})
print("READY", flush=True)
sys.stdin.read()
"""


def _event(
    i: int, camera: str = "cam1", action: str = "walk", phase: str = "start"
) -> dict[str, Any]:
    return {
        "id": f"ev{i:04d}",
        "camera": camera,
        "action": action,
        "phase": phase,
        "score": 0.91,
        "started_at": 1_700_000_000.0 + i,
        "ended_at": None if phase == "start" else 1_700_000_005.0 + i,
    }


def _logged(caplog: pytest.LogCaptureFixture, *parts: str) -> bool:
    """A WARNING containing every one of `parts` was logged."""
    return any(
        r.levelno == logging.WARNING and all(p in r.getMessage() for p in parts)
        for r in caplog.records
    )


def _ids(messages: list[Any]) -> set[tuple[str, str]]:
    records = [json.loads(m.payload) for m in messages if m.topic.endswith("/event")]
    return {(r["id"], r["phase"]) for r in records}


PublisherFactory = Callable[..., MqttPublisher]
CollectorFactory = Callable[..., MqttCollector]


def publisher_factory(tmp_path: Path) -> Iterator[PublisherFactory]:
    """Yields a factory of started publishers (fast reconnects); stops them after."""
    made: list[tuple[MqttPublisher, Outbox]] = []

    def make(
        port: int, outbox_path: Path | None = None, device: str = DEVICE, **cfg: Any
    ) -> MqttPublisher:
        settings: dict[str, Any] = {
            "enabled": True,
            "host": "127.0.0.1",
            "port": port,
            "discovery": False,
        }
        settings.update(cfg)
        outbox = Outbox(outbox_path or tmp_path / f"outbox{len(made)}.sqlite3")
        queue = outbox.queue("mqtt", 100, snapshots=settings.get("snapshots", True))
        publisher = MqttPublisher(
            MqttConfig(**settings),
            device,
            CAMERAS,
            ACTIONS,
            queue,
            reconnect_min_s=0.1,
            reconnect_max_s=0.5,
        )
        made.append((publisher, outbox))
        publisher.start()
        return publisher

    yield make
    for publisher, outbox in made:
        publisher.close(timeout_s=2.0)
        outbox.close()


@pytest.fixture
def make_publisher(tmp_path: Path) -> Iterator[PublisherFactory]:
    """Factory of started publishers (fast reconnects), stopped at teardown."""
    yield from publisher_factory(tmp_path)


@pytest.fixture
def start_child() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """start_child(port, outbox, events, wait_connected): a READY child publisher."""
    children: list[subprocess.Popen[str]] = []

    def start(port: int, outbox: Path, events: int, wait_connected: bool) -> subprocess.Popen[str]:
        args = json.dumps(
            {
                "port": port,
                "outbox": str(outbox),
                "events": events,
                "wait_connected": wait_connected,
                "device": DEVICE,
            }
        )
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD_CODE, args],
            cwd=REPO_ROOT,
            env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        children.append(child)
        assert child.stdout is not None
        ready, _, _ = select.select([child.stdout], [], [], CHILD_READY_TIMEOUT_S)
        line = child.stdout.readline().strip() if ready else ""
        assert line == "READY", f"child publisher not ready (exit {child.poll()}): {line!r}"
        return child

    yield start
    for child in children:
        child.kill()
        child.wait()


def _sigkill(child: subprocess.Popen[str]) -> None:
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait(10) == -signal.SIGKILL


def test_event_arrives_as_json_at_qos1(
    mosquitto: MosquittoBroker, mqtt_collector: CollectorFactory, make_publisher: PublisherFactory
) -> None:
    collector = mqtt_collector(mosquitto.port, [f"{BASE}/+/event"])
    publisher = make_publisher(mosquitto.port)
    assert publisher.wait_connected(10)
    publisher.publish_event(_event(1, camera="cam2", action="fall"))
    message = collector.wait_message(f"{BASE}/cam2/event")
    record = json.loads(message.payload)
    assert message.qos == 1 and not message.retain
    assert {k: record[k] for k in ("id", "camera", "action", "phase", "score")} == {
        "id": "ev0001",
        "camera": "cam2",
        "action": "fall",
        "phase": "start",
        "score": 0.91,
    }
    assert record["started_at"] == 1_700_000_001.0 and record["ended_at"] is None
    assert record["event_type"] == "fall" and record["device_id"] == DEVICE
    wait_until(lambda: publisher.outbox_depth == 0, "PUBACK to empty the outbox")
    assert publisher.published_total == 1


def test_retained_status_state_and_clean_offline(
    mosquitto: MosquittoBroker, mqtt_collector: CollectorFactory, make_publisher: PublisherFactory
) -> None:
    topics = [f"{BASE}/status", f"{BASE}/cam1/state", f"{BASE}/cam2/state"]
    # Once `early` saw a message reach the broker, `late` can only get it as retained.
    early = mqtt_collector(mosquitto.port, topics)
    publisher = make_publisher(mosquitto.port)
    early.wait_message(f"{BASE}/status", b"online")
    publisher.publish_event(_event(1, action="walk"))
    early.wait_message(f"{BASE}/cam1/state", b"walk")
    early.wait_message(f"{BASE}/cam2/state", b"idle")
    late = mqtt_collector(mosquitto.port, topics)
    assert late.wait_message(f"{BASE}/status", b"online").retain
    assert late.wait_message(f"{BASE}/cam1/state", b"walk").retain
    assert late.wait_message(f"{BASE}/cam2/state", b"idle").retain
    publisher.publish_event(_event(1, action="walk", phase="end"))
    late.wait_message(f"{BASE}/cam1/state", b"idle")
    publisher.close(timeout_s=5.0)
    late.wait_message(f"{BASE}/status", b"offline")
    fresh = mqtt_collector(mosquitto.port, [f"{BASE}/status"])
    assert fresh.wait_message(f"{BASE}/status", b"offline").retain


def test_last_will_offline_after_sigkill(
    mosquitto: MosquittoBroker,
    mqtt_collector: CollectorFactory,
    tmp_path: Path,
    start_child: Callable[..., Any],
) -> None:
    watcher = mqtt_collector(mosquitto.port, [f"{BASE}/status"])
    child = start_child(mosquitto.port, tmp_path / "child.sqlite3", 0, wait_connected=True)
    watcher.wait_message(f"{BASE}/status", b"online")
    _sigkill(child)
    watcher.wait_message(f"{BASE}/status", b"offline")
    fresh = mqtt_collector(mosquitto.port, [f"{BASE}/status"])
    assert fresh.wait_message(f"{BASE}/status", b"offline").retain


def test_broker_outage_events_stay_in_outbox_then_all_delivered(
    mosquitto_persistent: MosquittoBroker,
    mqtt_collector: CollectorFactory,
    make_publisher: PublisherFactory,
) -> None:
    # Broker persistence keeps the collector's session (and QoS 1 queue) over the restart,
    # so whether it or the publisher reconnects first does not matter. Our events are
    # not in the broker during the outage: they can only come from the outbox.
    broker = mosquitto_persistent
    collector = mqtt_collector(
        broker.port, [f"{BASE}/+/event"], client_id="outage-watch", clean_session=False
    )
    publisher = make_publisher(broker.port)
    assert publisher.wait_connected(10)
    publisher.publish_event(_event(0))
    collector.wait_for(lambda ms: _ids(ms) == {("ev0000", "start")}, "event before outage")
    broker.stop()
    wait_until(lambda: not publisher.connected, "publisher to notice the outage")
    sent = [_event(i, camera=CAMERAS[i % 2]) for i in range(1, 6)] + [_event(1, phase="end")]
    for event in sent:
        began = time.monotonic()
        publisher.publish_event(event)
        assert time.monotonic() - began < 0.5, "publish_event waited for the broker"
    assert publisher.outbox_depth == len(sent)
    broker.start()
    expected = {("ev0000", "start")} | {(e["id"], e["phase"]) for e in sent}
    collector.wait_for(
        lambda ms: _ids(ms) == expected, "every event after the restart", timeout_s=20
    )
    wait_until(lambda: publisher.outbox_depth == 0, "outbox drained")


def test_killed_publisher_events_delivered_by_next_publisher(
    mosquitto: MosquittoBroker,
    mqtt_collector: CollectorFactory,
    tmp_path: Path,
    make_publisher: PublisherFactory,
    start_child: Callable[..., Any],
) -> None:
    mosquitto.stop()
    outbox_path = tmp_path / "shared-outbox.sqlite3"
    _sigkill(start_child(mosquitto.port, outbox_path, 4, wait_connected=False))
    with Outbox(outbox_path) as left:
        assert [i.key for i in left.queue("mqtt", 100).pending(10)] == [
            f"child{i}:start" for i in range(4)
        ]
    mosquitto.start()
    collector = mqtt_collector(mosquitto.port, [f"{BASE}/+/event"])
    publisher = make_publisher(mosquitto.port, outbox_path=outbox_path)
    expected = {(f"child{i}", "start") for i in range(4)}
    messages = collector.wait_for(lambda ms: _ids(ms) == expected, "the dead child's events")
    received = [json.loads(m.payload)["id"] for m in messages]
    assert received == sorted(received), "outbox order is kept on replay"
    wait_until(lambda: publisher.outbox_depth == 0, "outbox drained by the new publisher")


def test_snapshot_and_stats(
    mosquitto: MosquittoBroker, mqtt_collector: CollectorFactory, make_publisher: PublisherFactory
) -> None:
    collector = mqtt_collector(mosquitto.port, [f"{BASE}/#"])
    publisher = make_publisher(mosquitto.port, snapshots=True)
    assert publisher.wait_connected(10)
    jpeg = b"\xff\xd8\xff\xe0fake-jpeg\xff\xd9"
    publisher.publish_event(_event(7, camera="cam2"), snapshot=jpeg)
    snapshot = collector.wait_message(f"{BASE}/cam2/snapshot")
    assert snapshot.payload == jpeg and snapshot.qos == 1
    assert json.loads(collector.wait_message(f"{BASE}/cam2/event").payload)["has_snapshot"]
    publisher.publish_event(_event(8, camera="cam2"))
    wait_until(lambda: len(collector.messages(f"{BASE}/cam2/event")) == 2, "the second event")
    assert not json.loads(collector.messages(f"{BASE}/cam2/event")[1].payload)["has_snapshot"]
    wait_until(lambda: publisher.outbox_depth == 0, "events and snapshot acknowledged")
    assert publisher.published_total == 2, "a snapshot is not counted as an event"
    publisher.publish_stats({"cameras": {"cam1": {"fps": 10.0}}})
    stats = json.loads(collector.wait_message(f"{BASE}/stats").payload)
    assert stats["cameras"] == {"cam1": {"fps": 10.0}}
    assert stats["mqtt"]["connected"] is True


def test_wrong_password_is_logged_clearly_and_events_kept(
    mosquitto_auth: MosquittoBroker,
    make_publisher: PublisherFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="daemon.outputs.mqtt")  # paho's log included
    secret = "wrong-secret-4711"
    publisher = make_publisher(mosquitto_auth.port, username=AUTH_USER, password=secret)
    where = f"127.0.0.1:{mosquitto_auth.port}"
    wait_until(
        lambda: _logged(caplog, where, "Not authorized", "check mqtt.username"),
        "a warning naming the broker and the credentials",
    )
    publisher.publish_event(_event(1))
    wait_until(lambda: publisher.connect_failures_total >= 3, "the publisher to keep retrying")
    assert not publisher.connected
    assert publisher.outbox_depth == 1
    assert secret not in caplog.text and secret not in repr(publisher)


def test_password_file_and_env_log_in(
    mosquitto_auth: MosquittoBroker,
    tmp_path: Path,
    make_publisher: PublisherFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    password_file = tmp_path / "mqtt-password"
    password_file.write_text(AUTH_PASSWORD + "\n")
    from_file = make_publisher(
        mosquitto_auth.port, device="by-file", username=AUTH_USER, password_file=str(password_file)
    )
    monkeypatch.setenv("ACTIOND_TEST_MQTT_PASSWORD", AUTH_PASSWORD)
    from_env = make_publisher(
        mosquitto_auth.port,
        device="by-env",
        username=AUTH_USER,
        password_env="ACTIOND_TEST_MQTT_PASSWORD",
    )
    assert from_file.wait_connected(10)
    assert from_env.wait_connected(10)


def test_unreachable_broker_logged_and_publish_returns_promptly(
    make_publisher: PublisherFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="daemon.outputs.mqtt")
    port = free_port()  # nothing listens there
    publisher = make_publisher(port)
    where = f"127.0.0.1:{port}"
    wait_until(
        lambda: _logged(caplog, where, "connection refused"), "a warning naming the broker and why"
    )
    began = time.monotonic()
    for i in range(5):
        publisher.publish_event(_event(i))
    assert time.monotonic() - began < 1.0, "publish_event waited for the broker"
    assert publisher.outbox_depth == 5 and not publisher.connected
    wait_until(lambda: publisher.connect_failures_total >= 3, "retries with backoff")
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and where in r.getMessage()
    ]
    assert len(warnings) == 1, "the same failure is not logged at WARNING every retry"


def test_stop_waits_for_pubacks(
    mosquitto: MosquittoBroker, mqtt_collector: CollectorFactory, make_publisher: PublisherFactory
) -> None:
    collector = mqtt_collector(mosquitto.port, [f"{BASE}/+/event"])
    publisher = make_publisher(mosquitto.port)
    assert publisher.wait_connected(10)
    for i in range(30):
        publisher.publish_event(_event(i))
    publisher.close(timeout_s=5.0)
    assert publisher.outbox_depth == 0
    assert publisher.published_total == 30
    collector.wait_for(lambda ms: len(_ids(ms)) == 30, "all 30 events")


def test_bad_settings_are_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(MqttSetupError, match="only one of"):
        resolve_password(MqttConfig(username="u", password="a", password_env="X"))
    with pytest.raises(MqttSetupError, match="mqtt.username is empty"):
        resolve_password(MqttConfig(password="a"))
    monkeypatch.delenv("ACTIOND_NO_SUCH_VAR", raising=False)
    with pytest.raises(MqttSetupError, match="ACTIOND_NO_SUCH_VAR"):
        resolve_password(MqttConfig(username="u", password_env="ACTIOND_NO_SUCH_VAR"))
    with pytest.raises(MqttSetupError, match="password_file"):
        resolve_password(MqttConfig(username="u", password_file=str(tmp_path / "none")))
    with Outbox(tmp_path / "o.sqlite3") as outbox:
        queue = outbox.queue("mqtt", 10)
        with pytest.raises(MqttSetupError, match="camera name"):
            MqttPublisher(MqttConfig(), DEVICE, ["a/b"], ACTIONS, queue)
        with pytest.raises(MqttSetupError, match="ca_file"):
            MqttPublisher(
                MqttConfig(tls=True, ca_file=str(tmp_path / "no-ca.pem")),
                DEVICE,
                CAMERAS,
                ACTIONS,
                queue,
            )
        publisher = MqttPublisher(MqttConfig(), DEVICE, CAMERAS, ACTIONS, queue)
        with pytest.raises(ValueError, match="lacks"):
            publisher.publish_event({"id": "x", "camera": "cam1"})
        with pytest.raises(ValueError, match="unknown camera"):
            publisher.publish_event(_event(1, camera="nope"))
        assert outbox.depth() == 0


def test_tls_with_ca_file(mosquitto_tls: MosquittoBroker, make_publisher: PublisherFactory) -> None:
    publisher = make_publisher(mosquitto_tls.port, tls=True, ca_file=str(mosquitto_tls.ca_file))
    assert publisher.wait_connected(10)
    publisher.publish_event(_event(1))
    wait_until(lambda: publisher.outbox_depth == 0, "PUBACK over TLS")


def test_tls_problems_are_named(
    mosquitto_tls: MosquittoBroker,
    tmp_path: Path,
    make_publisher: PublisherFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="daemon.outputs.mqtt")
    other_ca, _ = make_test_ca(tmp_path, "some-other-ca")
    untrusting = make_publisher(mosquitto_tls.port, tls=True, ca_file=str(other_ca))
    plain = make_publisher(mosquitto_tls.port, device="plain")
    where = f"127.0.0.1:{mosquitto_tls.port}"
    wait_until(
        lambda: _logged(caplog, where, "TLS certificate verification failed"), "the TLS failure"
    )
    wait_until(lambda: _logged(caplog, where, "does it expect TLS"), "plain-to-TLS failure")
    assert not untrusting.connected and not plain.connected


def test_session_handles_puback_before_track() -> None:
    # paho can run on_publish before publish() has returned the mid to the caller.
    session = Session(paho.Client(CallbackAPIVersion.VERSION2))
    assert session.settle(7) == (False, None)  # early: parked
    assert session.track(7, "ev:start", 1) is True  # claimed: the caller acks it
    assert session.track(8, "ev2:start", 1) is False
    assert not session.wait_settled(time.monotonic() + 0.05)
    assert session.settle(8) == (True, "ev2:start")
    assert session.wait_settled(time.monotonic() + 0.05)
