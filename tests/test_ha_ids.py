"""Home Assistant ids (daemon.outputs.ha_ids): names that joined with '_' read the same,
across boxes or within one, get distinct unique ids, object ids and discovery topics;
the previous release's topics are what an upgrade clears."""

from __future__ import annotations

import itertools
import json
import re

import pytest

from daemon.outputs.discovery import (
    CLEAR_PAYLOAD,
    HaDiscovery,
    TopicLayout,
    discovery_messages,
    legacy_clears,
)
from daemon.outputs.ha_ids import (
    DIGEST_HEX_CHARS,
    KIND_ACTION,
    KIND_EVENT,
    KIND_SNAPSHOT,
    KIND_STREAM,
    HaEntity,
)

pytestmark = pytest.mark.timeout(30)

HA_ID = re.compile(r"[a-zA-Z0-9_-]+")


def _action(device: str, camera: str, action: str) -> HaEntity:
    return HaEntity(device, camera, KIND_ACTION, action)


def test_the_issue_examples_get_distinct_ids() -> None:
    across = _action("a_b", "c", "walk"), _action("a", "b_c", "walk")
    within = _action("box", "door_walk", "left"), _action("box", "door", "walk_left")
    replaced = _action("box", "cam", "walk left"), _action("box", "cam", "walk_left")
    for one, other in (across, within, replaced):
        # The readable parts alone (the previous release's ids) are the same ...
        assert f"{one.device_id}_{one.readable}" == f"{other.device_id}_{other.readable}"
        # ... the ids are not.
        assert one.unique_id != other.unique_id
        assert one.object_id != other.object_id
    # Same device: different object ids give different discovery topics.
    topics = TopicLayout("actiond", "box", "homeassistant")
    for one, other in (within, replaced):
        assert topics.discovery(one.component, one.object_id) != topics.discovery(
            other.component, other.object_id
        )


def test_an_action_named_like_another_entity_gets_its_own_id() -> None:
    clashes = [
        (_action("box", "cam", "camera_stream"), HaEntity("box", "cam", KIND_STREAM)),
        (_action("box", "cam", "action"), HaEntity("box", "cam", KIND_EVENT)),
        (_action("box", "cam", "snapshot"), HaEntity("box", "cam", KIND_SNAPSHOT)),
    ]
    for action, entity in clashes:
        assert action.readable == entity.readable
        assert action.unique_id != entity.unique_id


def test_every_split_of_the_same_words_gives_distinct_ids() -> None:
    # Every way to cut "a_b_c_d_e" into device, camera and action reads the same joined
    # with '_'; every one must be a different entity to Home Assistant.
    words = "a_b_c_d_e".split("_")
    entities = []
    for i, j in itertools.combinations(range(1, len(words)), 2):
        device, camera, action = ("_".join(p) for p in (words[:i], words[i:j], words[j:]))
        entities.append(_action(device, camera, action))
    assert len(entities) == 6
    assert len({e.unique_id for e in entities}) == len(entities)
    assert len({f"{e.device_id}_{e.readable}" for e in entities}) == 1


def test_ids_are_readable_safe_and_stable() -> None:
    entity = _action("edge1", "cam1", "walk")
    # Pinned: a changed id makes Home Assistant see new entities (and the old ones stay
    # until cleared), so the format must not change by accident.
    assert entity.object_id == "cam1_walk_b4fd34d53244"
    assert entity.unique_id == "edge1_cam1_walk_b4fd34d53244"
    assert HaEntity("edge1", "cam1", KIND_EVENT).object_id == "cam1_action_89938a57c74d"
    odd = _action("edge1", "cam1", "wave 'hi'/bye")
    assert HA_ID.fullmatch(odd.object_id) and HA_ID.fullmatch(odd.unique_id)
    assert odd.object_id.startswith("cam1_wave__hi__bye_")
    assert len(odd.digest) == DIGEST_HEX_CHARS


def test_entity_kinds_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown entity kind"):
        HaEntity("box", "cam", "gauge")
    with pytest.raises(ValueError, match="names an action"):
        HaEntity("box", "cam", KIND_STREAM, "walk")


def test_a_box_whose_names_clash_publishes_distinct_entities() -> None:
    topics = TopicLayout("actiond", "box", "homeassistant")
    by_camera = {
        "door_walk": ("left",),
        "door": ("walk_left", "walk left", "camera_stream", "action", "snapshot"),
    }
    messages = discovery_messages(topics, list(by_camera), by_camera, True, "t")
    # per camera: the event entity, a sensor per action, the stream, the snapshot camera
    assert len(messages) == (3 + 1) + (3 + 5)
    assert len({topic for topic, _ in messages}) == len(messages)
    unique_ids = [json.loads(payload)["unique_id"] for _, payload in messages]
    assert len(set(unique_ids)) == len(unique_ids)
    for topic, payload in messages:
        object_id = topic.split("/")[3]
        assert HA_ID.fullmatch(object_id)
        assert json.loads(payload)["unique_id"] == f"box_{object_id}"


def test_an_upgrade_clears_the_previous_release_topics() -> None:
    topics = TopicLayout("actiond", "box", "homeassistant")
    discovery = HaDiscovery(topics, ["cam1"], ["walk"], False, "t")
    old = [
        "homeassistant/event/box/cam1_action/config",
        "homeassistant/binary_sensor/box/cam1_walk/config",
        "homeassistant/binary_sensor/box/cam1_camera_stream/config",
        "homeassistant/camera/box/cam1_snapshot/config",  # an earlier config may have had it
    ]
    assert discovery.clears == [(topic, CLEAR_PAYLOAD) for topic in old]
    assert CLEAR_PAYLOAD == b""
    # A connection's birth clears first, then publishes; Home Assistant's birth, configs.
    assert discovery.messages(birth=True) == [*discovery.clears, *discovery.configs]
    assert discovery.messages(birth=False) == discovery.configs
    # A topic published now is never cleared, whatever it looks like.
    current = [topic for topic, _ in discovery.configs] + [old[1]]
    assert [t for t, _ in legacy_clears(topics, ["cam1"], ["walk"], current)] == [
        t for t in old if t != old[1]
    ]
