"""What a consumer sees per camera, against a real mosquitto: Home Assistant discovery,
camera availability, and event snapshots that survive a broker outage with their events."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mosquitto_fixture import MosquittoBroker, MqttCollector, Received, wait_until
from test_mqtt import ACTIONS, BASE, CAMERAS, DEVICE, PublisherFactory, _event, publisher_factory

from daemon.outputs.discovery import EVENT_START_ONLY_TEMPLATE

pytestmark = pytest.mark.timeout(60)

CollectorFactory = Callable[..., MqttCollector]


@pytest.fixture
def make_publisher(tmp_path: Path) -> Iterator[PublisherFactory]:
    """test_mqtt's factory of started publishers (fast reconnects), stopped at teardown."""
    yield from publisher_factory(tmp_path)


def _configs(messages: list[Received]) -> list[Received]:
    return [m for m in messages if m.topic.endswith("/config")]


def test_home_assistant_discovery_and_resend(
    mosquitto: MosquittoBroker, mqtt_collector: CollectorFactory, make_publisher: PublisherFactory
) -> None:
    collector = mqtt_collector(mosquitto.port, ["homeassistant/#"])
    make_publisher(mosquitto.port, discovery=True, snapshots=True)
    # per camera: the event, a binary_sensor per action, the stream sensor, the camera
    wanted = (1 + len(ACTIONS) + 1 + 1) * len(CAMERAS)
    first = _configs(collector.wait_for(lambda ms: len(_configs(ms)) >= wanted, "discovery"))
    payloads = {m.topic: json.loads(m.payload) for m in first}
    assert len(payloads) == wanted
    assert len({p["unique_id"] for p in payloads.values()}) == wanted
    for topic, config in payloads.items():
        assert config["device"]["identifiers"] == [DEVICE]
        assert config["device"]["name"] == f"actiond {DEVICE}"
        assert {"sw_version", "model"} <= set(config["device"])
        assert config["qos"] == 1, "Home Assistant must subscribe at the QoS we publish"
        assert "_" not in config["name"], config["name"]
        assert "availability_topic" not in config
        camera = next(c for c in CAMERAS if c in topic)
        device_only = [{"topic": f"{BASE}/status"}]
        component = topic.split("/")[1]
        if topic.endswith("_camera_stream/config"):
            assert config["availability"] == device_only
            assert config["state_topic"] == f"{BASE}/{camera}/availability"
            assert config["device_class"] == "connectivity"
            assert (config["payload_on"], config["payload_off"]) == ("online", "offline")
            continue
        assert config["availability"] == device_only + [{"topic": f"{BASE}/{camera}/availability"}]
        assert config["availability_mode"] == "all"
        if component == "event":
            assert config["name"] == f"{camera.capitalize()} action"
            assert config["event_types"] == list(ACTIONS)
            assert config["state_topic"] == f"{BASE}/{camera}/event"
            assert config["value_template"] == EVENT_START_ONLY_TEMPLATE
            assert config["device_class"] == "motion"
        elif component == "binary_sensor":
            assert config["state_topic"] == f"{BASE}/{camera}/state"
            assert config["device_class"] == "motion" and "value_template" in config
        else:
            assert component == "camera" and config["topic"] == f"{BASE}/{camera}/snapshot"
    assert {t.split("/")[1] for t in payloads} == {"event", "binary_sensor", "camera"}
    names = {p["name"] for p in payloads.values()}
    assert "Cam1 walk" in names and "Cam2 fall" in names and "Cam1 stream" in names
    collector.publish("homeassistant/status", "online")
    again = _configs(
        collector.wait_for(
            lambda ms: len(_configs(ms)) >= 2 * wanted,
            "discovery re-sent after homeassistant/status online",
        )
    )
    assert {m.topic for m in again[wanted:]} == set(payloads)


def test_event_entity_template_fires_on_starts_only() -> None:
    # Home Assistant drops an event message whose template renders empty: the template
    # must pass a start record through whole and render an end record to nothing.
    assert EVENT_START_ONLY_TEMPLATE == "{{ value if value_json.phase == \"start\" else '' }}"


def test_camera_availability_is_retained_and_follows_the_supervisor(
    mosquitto: MosquittoBroker, mqtt_collector: CollectorFactory, make_publisher: PublisherFactory
) -> None:
    topic = f"{BASE}/cam1/availability"
    watcher = mqtt_collector(mosquitto.port, [topic, f"{BASE}/cam2/availability"])
    publisher = make_publisher(mosquitto.port)
    # Before the supervisor has seen frames, a camera is offline.
    watcher.wait_message(topic, b"offline")
    assert mqtt_collector(mosquitto.port, [topic]).wait_message(topic, b"offline").retain
    publisher.set_camera_available("cam1", True)
    watcher.wait_message(topic, b"online")
    late = mqtt_collector(mosquitto.port, [topic])
    assert late.wait_message(topic, b"online").retain
    publisher.set_camera_available("cam1", True)  # no change: nothing sent
    publisher.set_camera_available("cam1", False)
    watcher.wait_for(
        lambda ms: (
            [m.payload for m in ms if m.topic == topic] == [b"offline", b"online", b"offline"]
        ),
        "online, then offline once",
    )
    publisher.set_camera_available("cam1", True)
    publisher.set_camera_available("elsewhere", True)  # a camera it was not made for
    watcher.wait_for(
        lambda ms: ms[-1].topic == topic and ms[-1].payload == b"online", "online again"
    )
    publisher.close(timeout_s=5.0)
    fresh = mqtt_collector(mosquitto.port, [topic])
    assert fresh.wait_message(topic, b"offline").retain, "a clean stop says offline"


def _snapshots_follow_events(messages: list[Received]) -> dict[str, bytes]:
    """event key -> the snapshot received right after that event (as published)."""
    pairs: dict[str, bytes] = {}
    last_event: dict[str, Any] | None = None
    for message in messages:
        if message.topic.endswith("/event"):
            last_event = json.loads(message.payload)
        elif message.topic.endswith("/snapshot") and last_event is not None:
            assert message.qos == 1
            pairs[f"{last_event['id']}:{last_event['phase']}"] = message.payload
            last_event = None
    return pairs


def test_snapshots_of_events_raised_during_an_outage_arrive_with_them(
    mosquitto_persistent: MosquittoBroker,
    mqtt_collector: CollectorFactory,
    make_publisher: PublisherFactory,
) -> None:
    broker = mosquitto_persistent
    collector = mqtt_collector(
        broker.port,
        [f"{BASE}/+/event", f"{BASE}/+/snapshot"],
        client_id="snapshot-watch",
        clean_session=False,
    )
    publisher = make_publisher(broker.port, snapshots=True)
    assert publisher.wait_connected(10)
    broker.stop()
    wait_until(lambda: not publisher.connected, "publisher to notice the outage")
    sent = {}
    for i in range(8):
        event = _event(i, camera=CAMERAS[i % 2], phase="start" if i < 6 else "end")
        jpeg = b"\xff\xd8" + f"jpeg of {i}".encode() + b"\xff\xd9"
        publisher.publish_event(event, snapshot=jpeg)
        sent[f"{event['id']}:{event['phase']}"] = jpeg
    assert publisher.outbox_depth == len(sent), "snapshots are not counted as events"
    broker.start()

    def delivered(ms: list[Received]) -> bool:
        return len([m for m in ms if m.topic.endswith("/snapshot")]) >= len(sent)

    messages = collector.wait_for(delivered, "every snapshot after the outage", 20)
    events = [json.loads(m.payload) for m in messages if m.topic.endswith("/event")]
    assert len(events) == len(sent) and all(e["has_snapshot"] for e in events)
    assert _snapshots_follow_events(messages) == sent
    wait_until(lambda: publisher.outbox_depth == 0, "outbox drained")
    assert publisher.published_total == len(sent) and publisher.snapshots_dropped_total == 0
