"""Reload planning (pure): every config section and [daemon] key has a planned effect,
found from the Config dataclass's fields; keys that cannot change live are kept."""

from __future__ import annotations

import dataclasses
from dataclasses import fields
from pathlib import Path

import pytest

from daemon.config import (
    CameraConfig,
    Config,
    DaemonConfig,
    DisplayConfig,
    EventsConfig,
    InferenceConfig,
    JsonlConfig,
    MetricsConfig,
    MotionConfig,
    MqttConfig,
    model_facts,
)
from daemon.outputs.sinks.table import SINK_KINDS
from daemon.stages.registry import KINDS
from daemon.supervisor import reload
from daemon.supervisor.boot import Boot
from daemon.supervisor.reload import (
    ALL_KINDS,
    DAEMON_KEY_EFFECTS,
    SECTION_EFFECTS,
    plan_reload,
    planned_effect,
)

CAM_A = CameraConfig(name="a", source="test:bars")
CAM_B = CameraConfig(name="b", source="test:bars")
BASE = Config(cameras=(CAM_A, CAM_B), mqtt=MqttConfig(enabled=True))


def boot(config: Config = BASE, labels: tuple[str, ...] = ("walk", "still")) -> Boot:
    facts = model_facts(config, "model.onnx", labels, 8, "rgb+flow", 0, 0)
    return Boot(config, Path("config.toml"), "model.onnx", facts, ("CPUExecutionProvider",))


def changed(**sections: object) -> Boot:
    return boot(dataclasses.replace(BASE, **sections))


def test_every_config_section_and_daemon_key_has_a_planned_effect() -> None:
    for section in fields(Config):
        effect = SECTION_EFFECTS.get(section.name)
        assert effect, f"[{section.name}] has no entry in reload.SECTION_EFFECTS"
    for key in fields(DaemonConfig):
        assert planned_effect("daemon", key.name), f"daemon.{key.name} has no planned effect"
    assert set(DAEMON_KEY_EFFECTS) == {f.name for f in fields(DaemonConfig)}


def test_a_section_nobody_planned_for_rebuilds_everything(monkeypatch) -> None:
    """A new section is compared (fields(Config)) even before it is given an effect."""
    monkeypatch.setattr(
        reload, "SECTION_EFFECTS", {k: v for k, v in SECTION_EFFECTS.items() if k != "display"}
    )
    plan = plan_reload(boot(), changed(display=DisplayConfig(jpeg_quality=50)))
    assert plan.rebuild and "[display]" in plan.reason


MQTT = {"mqtt"}
BOTH = {"mqtt", "jsonl"}


@pytest.mark.parametrize(
    "sections, expect",
    [
        ({"mqtt": MqttConfig(enabled=True, prefix="other")}, {"sinks": MQTT}),
        ({"jsonl": JsonlConfig(enabled=True)}, {"sinks": {"jsonl"}}),
        ({"metrics": MetricsConfig(listen="127.0.0.1:9999")}, {"metrics": True}),
        ({"events": EventsConfig(threshold=0.9)}, {"kinds": {"overlay"}, "sinks": MQTT}),
        (
            {"events": EventsConfig(threshold=0.9), "jsonl": JsonlConfig(enabled=True)},
            {"kinds": {"overlay"}, "sinks": BOTH},
        ),
        ({"display": DisplayConfig(jpeg_quality=50)}, {"kinds": {"overlay"}}),
        ({"daemon": DaemonConfig(status_interval_s=1.0)}, {"live": True}),
        ({"daemon": DaemonConfig(log_level="debug")}, {"live": True, "kinds": {ALL_KINDS}}),
        ({"daemon": DaemonConfig(device_id="box2")}, {"sinks": MQTT}),
        ({"cameras": (CAM_A, dataclasses.replace(CAM_B, fps=5.0))}, {"cameras": ("b",)}),
        ({"motion": MotionConfig(method="farneback")}, {"rebuild": True}),
        ({"inference": InferenceConfig(stride=8)}, {"rebuild": True}),
        ({"cameras": (CAM_A,)}, {"rebuild": True, "sinks": MQTT}),
        ({"cameras": (CAM_A,), "mqtt": MqttConfig()}, {"rebuild": True, "sinks": MQTT}),
    ],
)
def test_each_section_has_its_effect(
    sections: dict[str, object], expect: dict[str, object]
) -> None:
    plan = plan_reload(boot(), changed(**sections))
    got = {
        "sinks": set(plan.sinks),
        "metrics": plan.metrics,
        "live": plan.live,
        "rebuild": plan.rebuild,
        "kinds": set(plan.worker_kinds),
        "cameras": plan.cameras,
    }
    want = {
        "sinks": set(),
        "metrics": False,
        "live": False,
        "rebuild": False,
        "kinds": set(),
        "cameras": (),
        **expect,
    }
    assert got == want
    assert not plan.empty and plan.effects()


def test_restart_only_keys_are_kept_and_named() -> None:
    new = changed(daemon=DaemonConfig(shm_dir="/elsewhere", status_interval_s=2.0))
    plan = plan_reload(boot(), new)
    assert plan.kept == ("daemon.shm_dir",)
    assert plan.boot.config.daemon.shm_dir == BASE.daemon.shm_dir
    assert plan.boot.config.daemon.status_interval_s == 2.0
    assert plan.changed == ("daemon.status_interval_s",) and plan.live
    only = plan_reload(boot(), changed(daemon=DaemonConfig(state_dir="/elsewhere")))
    assert only.empty and only.kept == ("daemon.state_dir",)


def test_every_sink_kind_is_a_config_section_with_a_planned_effect() -> None:
    """A sink added to the table gets its section re-opened by a reload, nothing more."""
    sections = {f.name for f in fields(Config)}
    for name, kind in SINK_KINDS.items():
        assert name in sections, f"sink {name} has no [{name}] section in Config"
        assert planned_effect(name) == frozenset({reload.Effect.SINKS})
        running = getattr(BASE, name)
        assert isinstance(running, kind.config)
        section = dataclasses.replace(running, enabled=not running.enabled)
        assert set(plan_reload(boot(), changed(**{name: section})).sinks) == {name}


def test_a_new_model_rebuilds_and_reopens_the_sinks() -> None:
    plan = plan_reload(boot(), boot(labels=("walk", "wave", "still")))
    assert plan.rebuild and plan.reason == "the model" and plan.sinks == {"mqtt"}


def test_no_change_plans_nothing() -> None:
    plan = plan_reload(boot(), boot())
    assert plan.empty and plan.effects() == "nothing to restart"


def test_the_kinds_restarted_for_a_section_are_those_that_declare_it() -> None:
    """reload names no stage: a section whose effect is STAGES restarts the kinds that
    declare it in reload_sections, and every declared section has that effect."""
    declared = {s for kind in KINDS.values() for s in kind.reload_sections}
    staged = {
        name
        for name, effect in SECTION_EFFECTS.items()
        if not isinstance(effect, dict) and reload.Effect.STAGES in effect
    }
    assert declared == staged
    assert declared <= {f.name for f in fields(Config)}, "not a config section"
    display = plan_reload(boot(), changed(display=DisplayConfig(jpeg_quality=50)))
    readers = {name for name, kind in KINDS.items() if "display" in kind.reload_sections}
    assert display.worker_kinds == readers and "overlay" in readers
