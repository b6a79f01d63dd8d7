"""Home Assistant ids of actiond's entities: discovery object ids and unique ids that
never collide, neither within one box nor across a fleet of boxes on one broker.

An entity is the exact tuple (device_id, camera, kind, action): `kind` says which of a
camera's entities it is (KIND_COMPONENTS), `action` names the action of an action
sensor. Its object id is a readable part, the camera and what the entity shows joined by
`_` (`cam1_walk_left`, `cam1_action`, `cam1_camera_stream`, `cam1_snapshot`, reduced to
the characters Home Assistant allows), then `_` and the first DIGEST_HEX_CHARS hex
digits of the SHA-256 of the exact tuple; the unique id is `<device_id>_<object id>`.

Joining names with `_` alone is ambiguous: device `a_b` + camera `c` and device `a` +
camera `b_c`, camera `door_walk` + action `left` and camera `door` + action `walk_left`,
actions `walk left` and `walk_left` (ha_id makes both `walk_left`), an action called
`camera_stream` and the stream sensor. The digest is of the exact names, so such
entities get distinct ids; two different entities share an id only if 48-bit digests
agree (for 10,000 entities on one broker: about 2e-7). The readable part is what the
previous release used as the whole id (LEGACY: its discovery topics are cleared once
the new ones are published, see discovery.legacy_clears).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import MappingProxyType

DIGEST_HEX_CHARS = 12  # 48 bits of SHA-256
KIND_EVENT = "event"  # the camera's event entity: every action, fires on starts
KIND_ACTION = "action"  # a binary sensor per action: on while that action is current
KIND_STREAM = "stream"  # the camera's connectivity sensor
KIND_SNAPSHOT = "snapshot"  # the camera entity showing event snapshots
# The Home Assistant component of each kind.
KIND_COMPONENTS = MappingProxyType(
    {
        KIND_EVENT: "event",
        KIND_ACTION: "binary_sensor",
        KIND_STREAM: "binary_sensor",
        KIND_SNAPSHOT: "camera",
    }
)
# What the readable part says after the camera (an action sensor: its action).
_READABLE_WHAT = MappingProxyType(
    {KIND_EVENT: "action", KIND_STREAM: "camera_stream", KIND_SNAPSHOT: "snapshot"}
)
_UNSAFE_ID_CHARS = re.compile(r"[^a-zA-Z0-9_-]")


def ha_id(value: str) -> str:
    """`value` reduced to the characters Home Assistant allows in node/object ids."""
    return _UNSAFE_ID_CHARS.sub("_", value)


@dataclass(frozen=True)
class HaEntity:
    """One Home Assistant entity of a box, by its exact names."""

    device_id: str
    camera: str
    kind: str  # one of KIND_COMPONENTS
    action: str = ""  # KIND_ACTION only

    def __post_init__(self) -> None:
        if self.kind not in KIND_COMPONENTS:
            raise ValueError(f"unknown entity kind {self.kind!r}; known: {list(KIND_COMPONENTS)}")
        if self.action and self.kind != KIND_ACTION:
            raise ValueError(f"only an {KIND_ACTION!r} entity names an action")

    @property
    def component(self) -> str:
        """Home Assistant's component (the discovery topic's second level)."""
        return KIND_COMPONENTS[self.kind]

    @property
    def readable(self) -> str:
        """Camera and what the entity shows (the previous release's object id)."""
        what = self.action if self.kind == KIND_ACTION else _READABLE_WHAT[self.kind]
        return ha_id(f"{self.camera}_{what}")

    @property
    def digest(self) -> str:
        """Short SHA-256 of the exact tuple: what makes the ids unique."""
        exact = json.dumps([self.device_id, self.camera, self.kind, self.action])
        return hashlib.sha256(exact.encode()).hexdigest()[:DIGEST_HEX_CHARS]

    @property
    def object_id(self) -> str:
        """The discovery topic's object id: `<readable>_<digest>`."""
        return f"{self.readable}_{self.digest}"

    @property
    def unique_id(self) -> str:
        """Home Assistant's unique id: `<device_id>_<readable>_<digest>`."""
        return f"{ha_id(self.device_id)}_{self.object_id}"


def camera_entities(
    device_id: str, camera: str, actions: Sequence[str], snapshots: bool
) -> Iterator[HaEntity]:
    """A camera's entities in discovery order: the event entity, a sensor per action,
    the stream sensor, and the snapshot camera when `snapshots`."""
    yield HaEntity(device_id, camera, KIND_EVENT)
    for action in actions:
        yield HaEntity(device_id, camera, KIND_ACTION, action)
    yield HaEntity(device_id, camera, KIND_STREAM)
    if snapshots:
        yield HaEntity(device_id, camera, KIND_SNAPSHOT)
