"""daemon.config.rules: the rules between keys and the values derived from them, each
defined once and used both by the load checks and by the parts that act on them."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.config import (
    ASSETS_DIR,
    ActionThreshold,
    CameraConfig,
    Config,
    ConfigError,
    DisplayConfig,
    EventsConfig,
    MotionConfig,
    camera_display,
    check_model_rules,
    event_actions,
    ignored_labels,
    load_config,
    model_facts,
)
from daemon.config.fields import name_problem, topic_prefix_problem
from daemon.outputs.discovery import check_topic_level, check_topic_prefix
from daemon.stages.model import ActionModel
from daemon.supervisor.boot import DEFAULT_MODEL, Boot, load_boot
from daemon.supervisor.reload import plan_reload

pytestmark = pytest.mark.timeout(60)

CAMERA = '[[cameras]]\nname = "{name}"\nsource = "test:bars"\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_model_facts_stay_out_of_the_users_config(tmp_path: Path) -> None:
    path = write(tmp_path, CAMERA.format(name="cam") + "[motion]\nwidth = 96\nheight = 80\n")
    boot = load_boot(path)
    # The config is the user's, as loaded: 0 still means "the model's own".
    assert boot.config == load_config(path)
    assert (boot.config.inference.clip_length, boot.config.inference.input) == (0, "")
    contract = ActionModel(boot.config.inference, str(DEFAULT_MODEL)).contract
    assert boot.facts.clip_length == contract.clip_length > 0
    assert boot.facts.inputs == contract.inputs
    assert boot.facts.labels == contract.labels == boot.labels
    # The model's own input size, or the motion size where the model leaves it free.
    assert boot.facts.clip_size == (contract.width or 96, contract.height or 80)


def test_events_naming_a_label_the_model_lacks_are_refused_at_boot(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        CAMERA.format(name="cam") + '[[events.actions]]\nname = "juggle"\nthreshold = 0.5\n',
    )
    with pytest.raises(ConfigError) as info:
        load_boot(path)
    assert (info.value.file, info.value.key) == (str(path), "events")
    assert "['juggle']" in info.value.reason and DEFAULT_MODEL.name in info.value.reason
    assert "\n" not in str(info.value)


def test_event_rules_against_the_model_labels() -> None:
    config = Config(cameras=(CameraConfig("cam", "test:bars"),))
    facts = model_facts(config, "m.onnx", ("idle", "wave", "fall"), 8, "rgb", 0, 0)
    check_model_rules(config, facts, "c.toml")  # the defaults name no label
    assert ignored_labels(facts.labels, ()) == ("idle",)
    assert event_actions(facts.labels, ()) == ("wave", "fall")
    assert event_actions(facts.labels, ("fall",)) == ("idle", "wave")
    for events in (
        EventsConfig(ignore=("sleep",)),
        EventsConfig(actions=(ActionThreshold("run", 0.3),)),
    ):
        bad = Config(cameras=config.cameras, events=events)
        with pytest.raises(ConfigError, match="labels the model does not have"):
            check_model_rules(bad, facts, "c.toml")


def test_camera_display_derives_port_and_recording_per_camera() -> None:
    display = DisplayConfig(mjpeg_listen="127.0.0.1:9000", record="/tmp/out.mp4")
    first, third = camera_display(display, "a", 0), camera_display(display, "c", 2)
    assert (first.mjpeg_listen, first.record) == ("127.0.0.1:9000", "/tmp/out-a.mp4")
    assert (third.mjpeg_listen, third.record) == ("127.0.0.1:9002", "/tmp/out-c.mp4")
    # Port 0: the OS picks a free port for every camera.
    assert camera_display(DisplayConfig(mjpeg_listen=":0"), "c", 2).mjpeg_listen == ":0"


def test_the_mjpeg_port_check_holds_the_port_the_camera_serves(tmp_path: Path) -> None:
    cams = "".join(CAMERA.format(name=n) for n in ("a", "b", "c"))
    path = write(
        tmp_path,
        cams + '[display]\nmjpeg_listen = "127.0.0.1:9000"\n[metrics]\nlisten = "127.0.0.1:9002"\n',
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == "display.mjpeg_listen"
    assert "camera c (cameras[2]) would serve MJPEG on port 9002" in info.value.reason
    served = camera_display(DisplayConfig(mjpeg_listen="127.0.0.1:9000"), "c", 2)
    assert served.mjpeg_listen.endswith(":9002")


@pytest.mark.parametrize("value", ["cam", "a+b", "a/b", "", "x" * 65, "caméra"])
def test_discovery_topic_levels_follow_the_config_name_rule(value: str) -> None:
    refused = name_problem(value) is not None
    try:
        check_topic_level("camera name", value)
    except ValueError as exc:
        assert refused and str(name_problem(value)) in str(exc)
    else:
        assert not refused


@pytest.mark.parametrize("value", ["actiond", "a/b", "a//b", "/a", "a/+", "x" * 1025])
def test_discovery_topic_prefixes_follow_the_config_rule(value: str) -> None:
    refused = topic_prefix_problem(value) is not None
    try:
        check_topic_prefix("mqtt.prefix", value)
    except ValueError:
        assert refused
    else:
        assert not refused


def test_the_bundled_assets_are_found() -> None:
    # daemon/config moved one level down: the assets must still be daemon/assets.
    assert ASSETS_DIR == Path(__file__).resolve().parent.parent / "daemon" / "assets"
    assert DEFAULT_MODEL.is_file()


def test_the_config_package_imports_nothing_heavy_and_no_pipeline_part() -> None:
    # Stages, supervisor and outputs import the config; it imports none of them (only the
    # capture table, for what a source string names), so it stays light to import.
    code = (
        "import sys, daemon.config; ours = sorted(m for m in sys.modules "
        "if m.startswith('daemon.') and m != 'daemon.capture' and not m.startswith(("
        "'daemon.config', 'daemon.capture.table', 'daemon.ipc'))); heavy = {'cv2', 'numpy', "
        "'onnxruntime'} & set(sys.modules); assert not ours and not heavy, (ours, heavy)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr


def _boot(config: Config, clip_length: int = 8, width: int = 0) -> Boot:
    facts = model_facts(config, "m.onnx", ("idle", "wave"), clip_length, "rgb", width, width)
    return Boot(config, Path("c.toml"), "m.onnx", facts, ("CPUExecutionProvider",))


def test_a_rewritten_model_file_rebuilds_though_the_config_is_the_same() -> None:
    # The facts are not in the config any more: the reload plan compares them itself.
    config = Config(cameras=(CameraConfig("cam", "test:bars"),))
    plan = plan_reload(_boot(config), _boot(config, clip_length=16))
    assert plan.rebuild and plan.changed == ("the model",)
    assert plan_reload(_boot(config), _boot(config)).empty


def test_a_motion_change_is_not_reported_as_a_model_change() -> None:
    # A free-size model's clips follow [motion]: its facts change with it.
    old = Config(cameras=(CameraConfig("cam", "test:bars"),))
    new = dataclasses.replace(old, motion=MotionConfig(width=96, height=96))
    plan = plan_reload(_boot(old), _boot(new))
    assert plan.rebuild and plan.changed == ("[motion]",)
    both = plan_reload(_boot(old), _boot(new, clip_length=16))  # and a rewritten model
    assert both.changed == ("[motion]", "the model")
