"""What actiond puts on MQTT: topic layout, event records, Home Assistant discovery.

Topics live under `<prefix>/<device_id>/`:
- `status`: retained `online` / `offline` (Last Will): the daemon's availability;
- `<camera>/availability`: retained `online` while the camera's frames flow, `offline`
  before the first frame, while its stream is lost, and when it failed or stopped;
- `<camera>/event`: one JSON record per event phase (QoS 1);
- `<camera>/state`: retained current action or `idle`;
- `<camera>/snapshot`: JPEG bytes of an event's best frame (QoS 1, right after the event);
- `stats`: periodic JSON (QoS 0).

Discovery (https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery) publishes,
retained, under `<discovery_prefix>/<component>/<node_id>/<object_id>/config`: per camera
an `event` entity fed by the event topic (event_types = the actions; our event JSON carries
`event_type`), a `binary_sensor` per action fed by the state topic, a connectivity
`binary_sensor` for the camera's stream, and a `camera` entity for the snapshots when they
are enabled. All belong to one device: this daemon. The actions offered are the labels
that can make events (daemon.events.event_actions): background labels such as `idle` are
not actions. Home Assistant's event entity fires on `start` records only (its value
template renders an `end` record empty, which Home Assistant ignores), so an automation
runs once per detection; the MQTT records keep both phases. Entities are available only
while both the daemon and their camera are (`availability_mode: all`).

Object and unique ids (daemon.outputs.ha_ids) end in a digest of the exact (device,
camera, kind, action), so they never collide within a box or across a fleet. On each
connection the config topics of the previous release's ids (no digest) are cleared
first (legacy_clears: an empty retained payload), so Home Assistant drops those entities
instead of showing each twice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from daemon.config.fields import name_problem, topic_prefix_problem
from daemon.events import PHASE_END, PHASE_START
from daemon.outputs.ha_ids import (
    KIND_ACTION,
    KIND_EVENT,
    KIND_STREAM,
    HaEntity,
    camera_entities,
    ha_id,
)

STATE_IDLE = "idle"
PAYLOAD_ONLINE = "online"
PAYLOAD_OFFLINE = "offline"
DEVICE_MODEL = "actiond edge action recognition"
DISCOVERY_QOS = 1  # what Home Assistant subscribes with: events are QoS 1
# https://www.home-assistant.io/integrations/event/#device-class and
# https://www.home-assistant.io/integrations/binary_sensor/#device-class
EVENT_DEVICE_CLASS = "motion"
ACTION_DEVICE_CLASS = "motion"
STREAM_DEVICE_CLASS = "connectivity"
# Home Assistant ignores an event message that renders empty: it fires on starts only.
EVENT_START_ONLY_TEMPLATE = (
    "{{ value if value_json.phase == " + json.dumps(PHASE_START) + " else '' }}"
)
REQUIRED_EVENT_KEYS = ("id", "camera", "action", "phase", "started_at", "ended_at")
CLEAR_PAYLOAD = b""  # retained and empty: the broker drops the topic, HA the entity


def check_topic_level(kind: str, value: str) -> None:
    """Raise ValueError when `value` cannot be one MQTT topic level: the config's rule for
    camera names and device ids (daemon.config.fields), so both say the same."""
    reason = name_problem(value)
    if reason:
        raise ValueError(f"{kind} {value!r} cannot be used in an MQTT topic: it {reason}")


def check_topic_prefix(kind: str, value: str) -> None:
    """Raise ValueError unless `value` can start topics (daemon.config.fields' rule)."""
    reason = topic_prefix_problem(value)
    if reason:
        raise ValueError(f"{kind} {value!r} cannot be used as an MQTT topic prefix: it {reason}")


def readable(name: str) -> str:
    """A label or camera name as words: "walk_left" -> "Walk left"."""
    words = " ".join(name.replace("_", " ").replace("-", " ").split())
    return words[:1].upper() + words[1:]


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

    def availability(self, camera: str) -> str:
        """Retained online/offline of one camera: do its frames flow?"""
        return f"{self.base}/{camera}/availability"

    def snapshot(self, camera: str) -> str:
        """JPEG snapshots of one camera."""
        return f"{self.base}/{camera}/snapshot"

    def discovery(self, component: str, object_id: str) -> str:
        """Config topic of one Home Assistant entity."""
        return (
            f"{self.discovery_prefix}/{component}/{ha_id(self.device_id)}/{ha_id(object_id)}/config"
        )


class CameraStates:
    """The retained per-camera topics: current action (`state`) and `availability`.

    Each method returns the (topic, payload) messages to publish, retained at QoS 1.
    A camera starts offline: it is online once the supervisor says its frames flow.
    """

    def __init__(self, topics: TopicLayout, cameras: Sequence[str]) -> None:
        self._topics = topics
        self._active: dict[str, list[str]] = {camera: [] for camera in cameras}
        self._available: dict[str, bool] = {camera: False for camera in cameras}

    def event(self, camera: str, action: str, phase: str) -> tuple[str, str]:
        """An event record changes the camera's state: its newest open action, or idle."""
        active = self._active[camera]
        if action in active:
            active.remove(action)
        if phase == PHASE_START:
            active.append(action)
        return self._topics.state(camera), active[-1] if active else STATE_IDLE

    def set_available(self, camera: str, available: bool) -> list[tuple[str, str]]:
        """The message to send if the camera's availability changed (none for a camera
        these states were not made for: a reload's new publisher reports it)."""
        if self._available.get(camera, available) == available:
            return []
        self._available[camera] = available
        return [self._availability(camera)]

    def retained(self) -> list[tuple[str, str]]:
        """Every camera's availability and state (sent on each connect)."""
        out = [self._availability(camera) for camera in self._available]
        for camera, active in self._active.items():
            out.append((self._topics.state(camera), active[-1] if active else STATE_IDLE))
        return out

    def offline(self) -> list[tuple[str, str]]:
        """Every camera offline (a clean stop)."""
        return [(self._topics.availability(camera), PAYLOAD_OFFLINE) for camera in self._available]

    def _availability(self, camera: str) -> tuple[str, str]:
        payload = PAYLOAD_ONLINE if self._available[camera] else PAYLOAD_OFFLINE
        return self._topics.availability(camera), payload


def event_payload(
    event: Mapping[str, Any], device_id: str, cameras: Sequence[str] | None = None
) -> dict[str, Any]:
    """The JSON record of an event (ActionEvent.to_json_dict() or alike), validated; every
    event sink gets this record (the outbox stores it).

    Adds `event_type` (Home Assistant's event entity reads it) and `device_id`; leaves
    out `snapshot` bytes, which travel on the snapshot topic. ValueError for a record
    that lacks a key or names a camera not in `cameras` (when given).
    """
    missing = [key for key in REQUIRED_EVENT_KEYS if key not in event]
    if "score" not in event and "score_max" not in event:
        missing.append("score")
    if missing:
        raise ValueError(f"event lacks {', '.join(missing)}: {dict(event)!r}")
    if event["phase"] not in (PHASE_START, PHASE_END):
        raise ValueError(
            f"event phase must be {PHASE_START!r} or {PHASE_END!r}, got {event['phase']!r}"
        )
    if cameras is not None and event["camera"] not in cameras:
        raise ValueError(
            f"unknown camera {event['camera']!r}; configured cameras: "
            f"{', '.join(cameras) or 'none'}"
        )
    record = {key: value for key, value in event.items() if key != "snapshot"}
    record.setdefault("event_type", event["action"])
    record["device_id"] = device_id
    try:
        json.dumps(record)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"event {event['id']!r} is not JSON-serialisable: {exc}") from exc
    return record


def event_key(record: Mapping[str, Any]) -> str:
    """The outbox key of an event record: one start and one end per event id."""
    return f"{record['id']}:{record['phase']}"


def _device_block(device_id: str, sw_version: str) -> dict[str, object]:
    return {
        "identifiers": [device_id],
        "name": f"actiond {device_id}",
        "sw_version": sw_version,
        "model": DEVICE_MODEL,
        "manufacturer": "actiond",
    }


def _common(
    topics: TopicLayout, entity: HaEntity, name: str, sw_version: str, camera_bound: bool = True
) -> dict[str, object]:
    """Fields every entity has; available while the daemon (and, when `camera_bound`,
    its camera) is."""
    availability = [{"topic": topics.status}]
    if camera_bound:
        availability.append({"topic": topics.availability(entity.camera)})
    return {
        "name": name,
        "unique_id": entity.unique_id,
        "availability": availability,
        "availability_mode": "all",
        "payload_available": PAYLOAD_ONLINE,
        "payload_not_available": PAYLOAD_OFFLINE,
        "qos": DISCOVERY_QOS,
        "device": _device_block(topics.device_id, sw_version),
        "origin": {"name": "actiond", "sw_version": sw_version},
    }


def _entity_config(
    topics: TopicLayout, entity: HaEntity, actions: Sequence[str], sw_version: str
) -> dict[str, object]:
    """The discovery config of one entity of a camera offering `actions`. The stream's
    own sensor depends on the daemon only: it says "off" (not "unavailable") while the
    camera is lost, so automations can act on it."""
    name, fields = _kind_fields(topics, entity, actions)
    config = _common(topics, entity, name, sw_version, entity.kind != KIND_STREAM)
    config.update(fields)
    return config


def _kind_fields(
    topics: TopicLayout, entity: HaEntity, actions: Sequence[str]
) -> tuple[str, dict[str, object]]:
    """An entity's name and the fields of its kind."""
    camera, words = entity.camera, readable(entity.camera)
    if entity.kind == KIND_EVENT:
        return f"{words} action", {
            "state_topic": topics.event(camera),
            "event_types": list(actions),
            "value_template": EVENT_START_ONLY_TEMPLATE,
            "device_class": EVENT_DEVICE_CLASS,
        }
    if entity.kind == KIND_ACTION:
        # json.dumps gives a double-quoted literal, which Jinja accepts, so any action
        # name (quotes included) compares safely.
        template = "{{ 'ON' if value == " + json.dumps(entity.action) + " else 'OFF' }}"
        return f"{words} {readable(entity.action).lower()}", {
            "state_topic": topics.state(camera),
            "value_template": template,
            "payload_on": "ON",
            "payload_off": "OFF",
            "device_class": ACTION_DEVICE_CLASS,
        }
    if entity.kind == KIND_STREAM:
        return f"{words} stream", {
            "state_topic": topics.availability(camera),
            "payload_on": PAYLOAD_ONLINE,
            "payload_off": PAYLOAD_OFFLINE,
            "device_class": STREAM_DEVICE_CLASS,
            "entity_category": "diagnostic",
        }
    return f"{words} snapshot", {"topic": topics.snapshot(camera)}


def _own_actions(
    actions: Sequence[str] | Mapping[str, Sequence[str]], camera: str
) -> Sequence[str]:
    return actions.get(camera, ()) if isinstance(actions, Mapping) else actions


def discovery_messages(
    topics: TopicLayout,
    cameras: Sequence[str],
    actions: Sequence[str] | Mapping[str, Sequence[str]],
    snapshots: bool,
    sw_version: str,
) -> list[tuple[str, bytes]]:
    """(topic, JSON payload) of every discovery config, to publish retained. `actions`:
    each camera's own (a mapping by camera name), or one list for every camera. Ids:
    daemon.outputs.ha_ids."""
    messages: list[tuple[str, bytes]] = []
    for camera in cameras:
        own = _own_actions(actions, camera)
        for entity in camera_entities(topics.device_id, camera, own, snapshots):
            config = _entity_config(topics, entity, own, sw_version)
            topic = topics.discovery(entity.component, entity.object_id)
            messages.append((topic, json.dumps(config, sort_keys=True).encode()))
    return messages


def legacy_clears(
    topics: TopicLayout,
    cameras: Sequence[str],
    actions: Sequence[str] | Mapping[str, Sequence[str]],
    current: Sequence[str],
) -> list[tuple[str, bytes]]:
    """(topic, empty payload) for the config topics the previous release used for these
    entities (object id = the readable part alone, snapshot camera included), to publish
    retained so the broker forgets them and Home Assistant removes their entities;
    topics in `current` (the configs being published now) are left alone."""
    keep, clears = set(current), dict[str, bytes]()
    for camera in cameras:
        for entity in camera_entities(
            topics.device_id, camera, _own_actions(actions, camera), True
        ):
            topic = topics.discovery(entity.component, entity.readable)
            if topic not in keep:
                clears[topic] = CLEAR_PAYLOAD
    return list(clears.items())


class HaDiscovery:
    """One publisher's discovery messages, made once from its config."""

    def __init__(
        self,
        topics: TopicLayout,
        cameras: Sequence[str],
        actions: Sequence[str] | Mapping[str, Sequence[str]],
        snapshots: bool,
        sw_version: str,
    ) -> None:
        self.configs = discovery_messages(topics, cameras, actions, snapshots, sw_version)
        self.clears = legacy_clears(topics, cameras, actions, [t for t, _ in self.configs])

    def messages(self, birth: bool) -> list[tuple[str, bytes]]:
        """What to publish retained: on a connection's birth the previous release's
        topics cleared first, then the configs; the configs alone when Home Assistant
        asks again (its own birth)."""
        return [*self.clears, *self.configs] if birth else list(self.configs)
