"""Links from events to the web console (clip_url, snapshot_url): the pure function
(sinks/protocol.py event_links), the console's base URL from [console] (runner
console_url), check-config's public_url rule, and the MQTT event payload against a real
broker."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mosquitto_fixture import MosquittoBroker, MqttCollector, wait_until

from daemon.config import Config, ConsoleConfig, MqttConfig
from daemon.config.console_rules import public_url_problem
from daemon.outputs.mqtt import MqttPublisher, mqtt_sink
from daemon.outputs.outbox import Outbox
from daemon.outputs.sinks.protocol import event_links
from daemon.outputs.sinks.runner import console_url, sink_context

pytestmark = pytest.mark.timeout(60)

DEVICE = "edge1"
BASE = f"actiond/{DEVICE}"


def test_links_name_the_console_routes_of_the_event() -> None:
    record = {"id": "ev 1/x", "clip": "front/ev 1.webm", "has_snapshot": True}
    assert event_links(record, "https://box.example:8443") == {
        "clip_url": "https://box.example:8443/api/events/ev%201%2Fx/clip",
        "snapshot_url": "https://box.example:8443/api/events/ev%201%2Fx/snapshot.jpg",
    }
    assert event_links({"id": "a", "clip": None, "has_snapshot": False}, "http://h:1") == {}
    assert event_links({"id": "a", "clip": "c/a.webm"}, "http://h:1") == {
        "clip_url": "http://h:1/api/events/a/clip"
    }
    assert event_links(record, "") == {}, "console off: no links"
    assert event_links({"clip": "c/a.webm"}, "http://h:1") == {}, "no id: no link"


@pytest.mark.parametrize(
    ("settings", "url"),
    [
        ({"enabled": False}, ""),
        ({}, "http://127.0.0.1:8090"),
        ({"listen": "[::1]:8090"}, "http://[::1]:8090"),
        ({"listen": "192.0.2.7:80"}, "http://192.0.2.7:80"),
        ({"listen": ":8090"}, ""),
        ({"listen": "0.0.0.0:8090"}, ""),
        ({"listen": "127.0.0.1:0"}, ""),
        (
            {"listen": ":8090", "public_url": "https://box.example:8443/"},
            "https://box.example:8443",
        ),
    ],
)
def test_console_url_from_the_config(settings: dict[str, Any], url: str) -> None:
    cfg = ConsoleConfig(**{"enabled": True, **settings})
    assert console_url(cfg) == url
    config = dataclasses.replace(Config(), console=cfg)
    assert sink_context(config, ("walk",)).console_url == url


def test_public_url_must_be_a_base_url() -> None:
    assert public_url_problem("") is None
    assert public_url_problem("https://box.example:8443") is None
    for bad in ("box.example:8443", "ftp://box", "https://u:p@box", "https://box/?a=1", "http://"):
        problem = public_url_problem(bad)
        assert problem and repr(bad) in problem


@pytest.fixture
def make_sink(tmp_path: Path) -> Iterator[Callable[[int, str], MqttPublisher]]:
    made: list[tuple[MqttPublisher, Outbox]] = []

    def make(port: int, public_url: str) -> MqttPublisher:
        cfg = MqttConfig(enabled=True, host="127.0.0.1", port=port, discovery=False)
        console = ConsoleConfig(enabled=bool(public_url), public_url=public_url)
        config = dataclasses.replace(Config(), mqtt=cfg, console=console)
        config = dataclasses.replace(
            config, daemon=dataclasses.replace(config.daemon, device_id=DEVICE)
        )
        outbox = Outbox(tmp_path / f"outbox{len(made)}.sqlite3")
        context = sink_context(config, ("walk",), {"cam1": ("walk",)})
        context = dataclasses.replace(context, cameras=("cam1",))
        sink = mqtt_sink(cfg, context, outbox.queue("mqtt", 100, snapshots=True))
        made.append((sink, outbox))
        sink.start()
        return sink

    yield make
    for sink, outbox in made:
        sink.close(timeout_s=2.0)
        outbox.close()


def _event(i: int, clip: str | None) -> dict[str, Any]:
    return {
        "id": f"ev{i}",
        "camera": "cam1",
        "action": "walk",
        "phase": "start",
        "score": 0.9,
        "started_at": 1_700_000_000.0,
        "ended_at": None,
        "clip": clip,
        "has_snapshot": True,
    }


@pytest.mark.parametrize("public_url", ["https://box.example:8443", ""])
def test_mqtt_event_payload_links_the_console_copy(
    mosquitto: MosquittoBroker,
    mqtt_collector: Callable[..., MqttCollector],
    make_sink: Callable[[int, str], MqttPublisher],
    public_url: str,
) -> None:
    collector = mqtt_collector(mosquitto.port, [f"{BASE}/+/event"])
    sink = make_sink(mosquitto.port, public_url)
    assert sink.wait_connected(10)
    sink.publish_event(_event(1, "cam1/ev1.webm"), snapshot=b"\xff\xd8jpeg\xff\xd9")
    sink.publish_event(_event(2, None))
    first, second = (json.loads(m.payload) for m in _two(collector))
    assert first["clip"] == "cam1/ev1.webm"
    if not public_url:
        assert "clip_url" not in first and "snapshot_url" not in first
        return
    assert first["clip_url"] == f"{public_url}/api/events/ev1/clip"
    assert first["snapshot_url"] == f"{public_url}/api/events/ev1/snapshot.jpg"
    assert "clip_url" not in second and second["snapshot_url"].endswith("/ev2/snapshot.jpg")


def _two(collector: MqttCollector) -> list[Any]:
    topic = f"{BASE}/cam1/event"
    wait_until(lambda: len(collector.messages(topic)) >= 2, "both events")
    return collector.messages(topic)[:2]
