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
from daemon.outputs.ha_ids import KIND_STREAM, HaEntity

pytestmark = pytest.mark.timeout(60)

CollectorFactory = Callable[..., MqttCollector]


@pytest.fixture
def make_publisher(tmp_path: Path) -> Iterator[PublisherFactory]:
    """test_mqtt's factory of started publishers (fast reconnects), stopped at teardown."""
    yield from publisher_factory(tmp_path)


def _configs(messages: list[Received]) -> list[Received]:
    """Discovery configs (an empty payload clears one instead)."""
    return [m for m in messages if m.topic.endswith("/config") and m.payload]


def _clears(messages: list[Received]) -> list[Received]:
    return [m for m in messages if m.topic.endswith("/config") and not m.payload]


def test_home_assistant_discovery_and_resend(
    mosquitto: MosquittoBroker, mqtt_collector: CollectorFactory, make_publisher: PublisherFactory
) -> None:
    collector = mqtt_collector(mosquitto.port, ["homeassistant/#"])
    make_publisher(mosquitto.port, discovery=True, snapshots=True)
    # per camera: the event, a binary_sensor per action, the stream sensor, the camera
    wanted = (1 + len(ACTIONS) + 1 + 1) * len(CAMERAS)
    first_all = collector.wait_for(lambda ms: len(_configs(ms)) >= wanted, "discovery")
    first = _configs(first_all)
    payloads = {m.topic: json.loads(m.payload) for m in first}
    assert len(payloads) == wanted
    assert len({p["unique_id"] for p in payloads.values()}) == wanted
    streams = {
        f"homeassistant/binary_sensor/{DEVICE}/{HaEntity(DEVICE, c, KIND_STREAM).object_id}/config"
        for c in CAMERAS
    }
    for topic, config in payloads.items():
        assert config["unique_id"] == f"{DEVICE}_{topic.split('/')[3]}"
        assert config["device"]["identifiers"] == [DEVICE]
        assert config["device"]["name"] == f"actiond {DEVICE}"
        assert {"sw_version", "model"} <= set(config["device"])
        assert config["qos"] == 1, "Home Assistant must subscribe at the QoS we publish"
        assert "_" not in config["name"], config["name"]
        assert "availability_topic" not in config
        camera = next(c for c in CAMERAS if c in topic)
        device_only = [{"topic": f"{BASE}/status"}]
        component = topic.split("/")[1]
        if topic in streams:
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
    assert len(_clears(collector.messages())) == len(_clears(first_all)), "cleared once"


def _retained_now(mosquitto: MosquittoBroker, mqtt_collector: CollectorFactory) -> set[str]:
    """The discovery topics the broker holds retained: what a Home Assistant starting now
    receives (a marker published after subscribing arrives after every retained one)."""
    late = mqtt_collector(mosquitto.port, ["homeassistant/#"])
    late.wait_subscribed()
    late.publish("homeassistant/marker", "end")
    found = late.wait_for(lambda ms: any(m.topic == "homeassistant/marker" for m in ms), "marker")
    return {m.topic for m in found if m.retain}


def test_an_upgrade_clears_the_previous_release_discovery_topics(
    mosquitto: MosquittoBroker, mqtt_collector: CollectorFactory, make_publisher: PublisherFactory
) -> None:
    # What the previous release left retained: its object ids had no digest. The snapshot
    # camera is cleared too (that release may have run with snapshots on).
    old = {f"homeassistant/event/{DEVICE}/{c}_action/config" for c in CAMERAS}
    old |= {
        f"homeassistant/binary_sensor/{DEVICE}/{c}_{a}/config" for c in CAMERAS for a in ACTIONS
    }
    old |= {f"homeassistant/binary_sensor/{DEVICE}/{c}_camera_stream/config" for c in CAMERAS}
    old |= {f"homeassistant/camera/{DEVICE}/{c}_snapshot/config" for c in CAMERAS}
    other_box = "homeassistant/event/other-box/cam1_action/config"
    seeder = mqtt_collector(mosquitto.port, ["seeder/none"])
    seeder.wait_subscribed()  # connected
    for topic in sorted(old | {other_box}):
        seeder.publish(topic, json.dumps({"unique_id": topic}), retain=True)
    assert _retained_now(mosquitto, mqtt_collector) == old | {other_box}

    home_assistant = mqtt_collector(mosquitto.port, ["homeassistant/#"])
    home_assistant.wait_subscribed()
    make_publisher(mosquitto.port, discovery=True, snapshots=False)
    wanted = (1 + len(ACTIONS) + 1) * len(CAMERAS)
    seen = home_assistant.wait_for(
        lambda ms: len(_configs([m for m in ms if not m.retain])) >= wanted,
        "the new discovery configs",
    )
    live = [m for m in seen if not m.retain]  # what the publisher sent (not the seeds)
    assert {m.topic for m in _clears(live)} == old
    assert len(_clears(live)) == len(old), "each old topic cleared once"
    first_config = next(i for i, m in enumerate(live) if m.payload)
    assert first_config == len(old), "the old topics are cleared before the new configs"
    new = {m.topic for m in _configs(live)}
    assert len(new) == wanted and not new & old
    # A Home Assistant starting now sees the new entities only, and the other box's.
    assert _retained_now(mosquitto, mqtt_collector) == new | {other_box}
    # Home Assistant's birth: the configs again, nothing more cleared.
    home_assistant.publish("homeassistant/status", "online")
    home_assistant.wait_for(
        lambda ms: len(_configs([m for m in ms if not m.retain])) >= 2 * wanted, "configs again"
    )
    assert len(_clears(home_assistant.messages())) == len(old)


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
