"""Each camera's own actions, by the pipeline it runs: boot loads the clip model only
when a camera runs it, check-config says per camera which pipeline and actions it runs,
and Home Assistant discovery offers each camera its own actions (a person camera the
[people] rules and its skeleton classifiers' labels, a clip camera its model's labels)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from daemon_proc import check_config
from test_people_skeleton import META, tiny_model

from daemon.config import PEOPLE_ACTIONS
from daemon.events import event_actions
from daemon.exitcodes import ExitCode
from daemon.outputs.discovery import TopicLayout, discovery_messages
from daemon.outputs.ha_ids import KIND_ACTION, KIND_EVENT, HaEntity
from daemon.supervisor.boot import load_boot
from daemon.supervisor.outputs import boot_sink_context

pytestmark = pytest.mark.timeout(120)

SKELETON_LABELS = ("hands_low", "hands_up")


def _config(tmp_path: Path, pipelines: list[str], extra: str = "") -> Path:
    text = f'[daemon]\nstate_dir = "{tmp_path / "state"}"\ndevice_id = "box"\n{extra}\n'
    for i, pipeline in enumerate(pipelines):
        text += f'[[cameras]]\nname = "cam{i}"\nsource = "test:bars"\npipeline = "{pipeline}"\n'
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def _junk_model(tmp_path: Path) -> str:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not an onnx model")
    return f'[inference]\nmodel = "{junk}"\n'


def test_boot_loads_the_clip_model_only_when_a_camera_runs_it(tmp_path: Path) -> None:
    junk = _junk_model(tmp_path)
    people_only = check_config(_config(tmp_path, ["person"], junk))
    assert people_only.returncode == ExitCode.OK, people_only.stderr
    assert "junk.onnx" not in people_only.stdout
    assert f"cam0: pipeline person, actions {', '.join(PEOPLE_ACTIONS)})" in people_only.stdout
    with_clip = check_config(_config(tmp_path, ["person", "clip"], junk))
    assert with_clip.returncode == ExitCode.CONFIG
    assert "model error" in with_clip.stderr and "junk.onnx" in with_clip.stderr
    boot = load_boot(_config(tmp_path, ["person"], junk))
    assert boot.model_path == "" and boot.providers == ()


def test_check_config_says_each_cameras_pipeline_and_actions(tmp_path: Path) -> None:
    config = _config(tmp_path, ["clip", "person"], '[people]\nactions = ["in_zone", "fall"]\n')
    done = check_config(config)
    assert done.returncode == ExitCode.OK, done.stderr
    boot = load_boot(config)
    clip = event_actions(boot.labels, boot.config.events.ignore)
    assert clip and not set(clip) & set(PEOPLE_ACTIONS)
    model = Path(boot.model_path).name
    assert f"cam0: pipeline clip (model {model}), actions {', '.join(clip)};" in done.stdout
    assert "cam1: pipeline person, actions in_zone, fall)" in done.stdout


def _classifier(tmp_path: Path) -> str:
    model = tiny_model(tmp_path / "skeleton.onnx", META)
    return f'[[people.classifiers]]\nmodel = "{model}"\nthreshold = 0.5\n'


def test_discovery_offers_each_camera_its_own_actions(tmp_path: Path) -> None:
    boot = load_boot(_config(tmp_path, ["clip", "person"], _classifier(tmp_path)))
    clip = event_actions(boot.labels, boot.config.events.ignore)
    people = (*PEOPLE_ACTIONS, *SKELETON_LABELS)
    context = boot_sink_context(boot)
    assert context.by_camera == {"cam0": clip, "cam1": people}
    assert boot.actions(boot.labels)[-2:] == SKELETON_LABELS  # the events metric's series
    topics = TopicLayout("actiond", "box", "homeassistant")
    messages = dict(discovery_messages(topics, context.cameras, context.by_camera, False, "t"))
    for camera, actions in context.by_camera.items():
        event_id = HaEntity("box", camera, KIND_EVENT).object_id
        event = json.loads(messages[f"homeassistant/event/box/{event_id}/config"])
        assert tuple(event["event_types"]) == actions
        sensors = {
            json.loads(payload)["name"]
            for t, payload in messages.items()
            if t.startswith(f"homeassistant/binary_sensor/box/{camera}_")
        }
        assert len(sensors) == len(actions) + 1  # an action sensor each, the stream's
        for action in actions:
            object_id = HaEntity("box", camera, KIND_ACTION, action).object_id
            assert f"homeassistant/binary_sensor/box/{object_id}/config" in messages
    # One list for every camera still works (tools and tests that have no per-camera view).
    shared = dict(discovery_messages(topics, ["cam0"], ["walk"], False, "t"))
    event_id = HaEntity("box", "cam0", KIND_EVENT).object_id
    assert json.loads(shared[f"homeassistant/event/box/{event_id}/config"])["event_types"] == [
        "walk"
    ]


def test_an_unfit_skeleton_classifier_is_a_config_error(tmp_path: Path) -> None:
    clash = tiny_model(tmp_path / "clash.onnx", {**META, "labels": "fall,hands_up"})
    extra = f'[[people.classifiers]]\nmodel = "{clash}"\n'
    done = check_config(_config(tmp_path, ["person"], extra))
    assert done.returncode == ExitCode.CONFIG
    assert "people.classifiers" in done.stderr and "fall" in done.stderr
