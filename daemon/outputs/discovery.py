"""What actiond puts on MQTT: topic layout, event records, Home Assistant discovery.

Topics live under `<prefix>/<device_id>/`:
- `status`: retained `online` / `offline` (Last Will), the availability of every entity;
- `<camera>/event`: one JSON record per event phase (QoS 1);
- `<camera>/state`: retained current action or `idle`;
- `<camera>/snapshot`: JPEG bytes (QoS 0);
- `stats`: periodic JSON (QoS 0).

Discovery (https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery) publishes,
retained, under `<discovery_prefix>/<component>/<node_id>/<object_id>/config`: per camera
an `event` entity fed by the event topic (event_types = the actions; our event JSON carries
`event_type`), a `binary_sensor` per action fed by the state topic, and a `camera` entity
for the snapshots when they are enabled. All belong to one device: this daemon.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from daemon.events import PHASE_END, PHASE_START

STATE_IDLE = "idle"
PAYLOAD_ONLINE = "online"
PAYLOAD_OFFLINE = "offline"
DEVICE_MODEL = "actiond edge action recognition"
REQUIRED_EVENT_KEYS = ("id", "camera", "action", "phase", "started_at", "ended_at")
_UNSAFE_ID_CHARS = re.compile(r"[^a-zA-Z0-9_-]")
# Characters with a meaning in MQTT topic filters, or that would split a topic level.
_TOPIC_FORBIDDEN = ("+", "#", "/", "\x00")


def check_topic_level(kind: str, value: str) -> None:
    """Raise ValueError when `value` cannot be one MQTT topic level."""
    if not value or any(ch in value for ch in _TOPIC_FORBIDDEN):
        raise ValueError(f"{kind} {value!r} cannot be used in an MQTT topic: it must be "
                         f"non-empty and contain none of '+', '#', '/', NUL")


def check_topic_prefix(kind: str, value: str) -> None:
    """Raise ValueError unless `value` is one or more non-empty levels without wildcards."""
    levels = value.split("/")
    if not all(levels) or any(ch in value for ch in ("+", "#", "\x00")):
        raise ValueError(f"{kind} {value!r} cannot be used as an MQTT topic prefix: it must "
                         f"be non-empty levels separated by '/', without '+', '#', NUL")


def ha_id(value: str) -> str:
    """`value` reduced to the characters Home Assistant allows in node/object ids."""
    return _UNSAFE_ID_CHARS.sub("_", value)


@dataclass(frozen=True)
class TopicLayout:
    """Every topic actiond publishes or subscribes to, derived from the config."""

    prefix: str
    device_id: str
    discovery_prefix: str

    def __post_init__(self) -> None:
        check_topic_prefix("mqtt.prefix", self.prefix)
        check_topic_level("daemon.device_id", self.device_id)
        check_topic_prefix("mqtt.discovery_prefix", self.discovery_prefix)

    @property
    def base(self) -> str:
        """`<prefix>/<device_id>`."""
        return f"{self.prefix}/{self.device_id}"

    @property
    def status(self) -> str:
        """Availability topic (retained online/offline, Last Will)."""
        return f"{self.base}/status"

    @property
    def stats(self) -> str:
        """Periodic statistics topic."""
        return f"{self.base}/stats"

    @property
    def ha_status(self) -> str:
        """Home Assistant's birth topic: `online` there means "send discovery again"."""
        return f"{self.discovery_prefix}/status"

    def event(self, camera: str) -> str:
        """Event records of one camera."""
        return f"{self.base}/{camera}/event"

    def state(self, camera: str) -> str:
        """Retained current action of one camera."""
        return f"{self.base}/{camera}/state"

    def snapshot(self, camera: str) -> str:
        """JPEG snapshots of one camera."""
        return f"{self.base}/{camera}/snapshot"

    def discovery(self, component: str, object_id: str) -> str:
        """Config topic of one Home Assistant entity."""
        return (f"{self.discovery_prefix}/{component}/{ha_id(self.device_id)}/"
                f"{ha_id(object_id)}/config")


def event_payload(event: Mapping[str, Any], device_id: str) -> dict[str, Any]:
    """The JSON record of an event (ActionEvent.to_json_dict() or alike), validated.

    Adds `event_type` (Home Assistant's event entity reads it) and `device_id`; leaves
    out `snapshot` bytes, which travel on the snapshot topic.
    """
    missing = [key for key in REQUIRED_EVENT_KEYS if key not in event]
    if "score" not in event and "score_max" not in event:
        missing.append("score")
    if missing:
        raise ValueError(f"MQTT: event lacks {', '.join(missing)}: {dict(event)!r}")
    if event["phase"] not in (PHASE_START, PHASE_END):
        raise ValueError(f"MQTT: event phase must be {PHASE_START!r} or {PHASE_END!r}, "
                         f"got {event['phase']!r}")
    record = {key: value for key, value in event.items() if key != "snapshot"}
    record.setdefault("event_type", event["action"])
    record["device_id"] = device_id
    try:
        json.dumps(record)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"MQTT: event {event['id']!r} is not JSON-serialisable: "
                         f"{exc}") from exc
    return record


def _device_block(device_id: str, sw_version: str) -> dict[str, object]:
    return {"identifiers": [device_id], "name": device_id, "sw_version": sw_version,
            "model": DEVICE_MODEL, "manufacturer": "actiond"}


def _common(topics: TopicLayout, unique_id: str, name: str,
            sw_version: str) -> dict[str, object]:
    return {
        "name": name,
        "unique_id": ha_id(unique_id),
        "availability_topic": topics.status,
        "payload_available": PAYLOAD_ONLINE,
        "payload_not_available": PAYLOAD_OFFLINE,
        "device": _device_block(topics.device_id, sw_version),
        "origin": {"name": "actiond", "sw_version": sw_version},
    }


def _camera_entities(topics: TopicLayout, camera: str, actions: Sequence[str],
                     snapshots: bool, sw_version: str) -> list[tuple[str, dict[str, object]]]:
    base_id = f"{topics.device_id}_{camera}"
    event = _common(topics, f"{base_id}_action", f"{camera} action", sw_version)
    event.update({"state_topic": topics.event(camera), "event_types": list(actions)})
    entities = [(topics.discovery("event", f"{camera}_action"), event)]
    for action in actions:
        sensor = _common(topics, f"{base_id}_{action}", f"{camera} {action}", sw_version)
        # json.dumps gives a double-quoted literal, which Jinja accepts, so any action
        # name (quotes included) compares safely.
        sensor.update({
            "state_topic": topics.state(camera),
            "value_template": "{{ 'ON' if value == %s else 'OFF' }}" % json.dumps(action),
            "payload_on": "ON",
            "payload_off": "OFF",
        })
        entities.append((topics.discovery("binary_sensor", f"{camera}_{action}"), sensor))
    if snapshots:
        camera_entity = _common(topics, f"{base_id}_snapshot", f"{camera} snapshot",
                                sw_version)
        camera_entity["topic"] = topics.snapshot(camera)
        entities.append((topics.discovery("camera", f"{camera}_snapshot"), camera_entity))
    return entities


def discovery_messages(topics: TopicLayout, cameras: Sequence[str], actions: Sequence[str],
                       snapshots: bool, sw_version: str) -> list[tuple[str, bytes]]:
    """(topic, JSON payload) of every discovery config, to publish retained."""
    messages: list[tuple[str, bytes]] = []
    for camera in cameras:
        for topic, config in _camera_entities(topics, camera, actions, snapshots, sw_version):
            messages.append((topic, json.dumps(config, sort_keys=True).encode()))
    return messages
