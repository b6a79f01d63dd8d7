"""Which actions the sinks (MQTT topics, Home Assistant discovery) and the events metric
are given when cameras run the person pipeline: the people engine's, not the clip
model's labels."""

from __future__ import annotations

from pathlib import Path

import pytest
from daemon_proc import write_config

from daemon.config import PEOPLE_ACTIONS
from daemon.events import event_actions
from daemon.supervisor.boot import load_boot
from daemon.supervisor.outputs import boot_sink_context

pytestmark = pytest.mark.timeout(60)


def _boot(tmp_path: Path, pipelines: list[str], people: dict[str, object] | None = None):
    cameras = [
        {"name": f"cam{i}", "source": "test:bars", "pipeline": p} for i, p in enumerate(pipelines)
    ]
    sections: dict[str, dict[str, object]] = {
        "daemon": {"state_dir": str(tmp_path / "state"), "device_id": "box"}
    }
    if people:
        sections["people"] = people
    return load_boot(write_config(tmp_path / "config.toml", sections, cameras))


def test_person_cameras_offer_the_people_actions(tmp_path: Path) -> None:
    boot = _boot(tmp_path, ["person"])
    assert boot_sink_context(boot).actions == PEOPLE_ACTIONS
    assert boot.actions(boot.labels) == PEOPLE_ACTIONS  # the events metric's series


def test_a_mixed_box_offers_both(tmp_path: Path) -> None:
    boot = _boot(tmp_path, ["clip", "person"], {"actions": ["in_zone", "fall"]})
    clip = event_actions(boot.labels, boot.config.events.ignore)
    assert clip and not set(clip) & set(PEOPLE_ACTIONS)
    assert boot_sink_context(boot).actions == (*clip, "in_zone", "fall")


def test_clip_cameras_keep_the_model_labels(tmp_path: Path) -> None:
    boot = _boot(tmp_path, ["clip"])
    assert boot_sink_context(boot).actions == event_actions(boot.labels, boot.config.events.ignore)
