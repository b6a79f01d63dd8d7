"""Pure supervisor logic: restart backoff and budget, reload planning, shutdown budget."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from daemon.config import CameraConfig, Config, MotionConfig, model_facts
from daemon.supervisor.app import SHUTDOWN_BUDGET_S
from daemon.supervisor.boot import Boot
from daemon.supervisor.reload import plan_reload
from daemon.supervisor.restart import CrashHistory, RestartPolicy
from daemon.systemd import unit_timeout_stop_s

REPO = Path(__file__).resolve().parent.parent
POLICY = RestartPolicy(
    backoff_min_s=0.5, backoff_max_s=4.0, stable_after_s=30.0, budget=5, window_s=60.0
)


def test_backoff_doubles_up_to_the_cap() -> None:
    history = CrashHistory(POLICY)
    delays = [history.record(now=float(i * 100), ran_s=1.0) for i in range(6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_backoff_resets_after_a_stable_run() -> None:
    history = CrashHistory(POLICY)
    assert history.record(0.0, 1.0) == 0.5
    assert history.record(1.0, 1.0) == 1.0
    assert history.record(200.0, ran_s=60.0) == 0.5


def test_crash_budget_within_the_window_gives_up() -> None:
    history = CrashHistory(POLICY)
    results = [history.record(float(i), 0.1) for i in range(6)]
    assert all(r is not None for r in results[:5])
    assert results[5] is None


def test_crashes_outside_the_window_do_not_count() -> None:
    history = CrashHistory(POLICY)
    for i in range(20):
        assert history.record(i * 20.0, 0.1) is not None


def test_shutdown_budget_fits_the_units_timeout_stop_sec() -> None:
    timeout = unit_timeout_stop_s(REPO / "systemd" / "actiond.service")
    assert SHUTDOWN_BUDGET_S < timeout


def _boot(cameras: tuple[CameraConfig, ...], **sections: object) -> Boot:
    config = dataclasses.replace(Config(cameras=cameras), **sections)
    facts = model_facts(config, "model.onnx", ("a", "b"), 8, "rgb+flow", 0, 0)
    return Boot(config, Path("config.toml"), "model.onnx", facts, ("CPUExecutionProvider",))


CAM_A = CameraConfig(name="a", source="test:bars")
CAM_B = CameraConfig(name="b", source="test:bars")


def test_reload_of_one_camera_source_restarts_only_it() -> None:
    new_b = dataclasses.replace(CAM_B, source="test:still")
    plan = plan_reload(_boot((CAM_A, CAM_B)), _boot((CAM_A, new_b)))
    assert not plan.rebuild and plan.cameras == ("b",)


def test_reload_without_changes_restarts_nothing() -> None:
    plan = plan_reload(_boot((CAM_A, CAM_B)), _boot((CAM_A, CAM_B)))
    assert not plan.rebuild and plan.cameras == ()


@pytest.mark.parametrize(
    "change",
    [
        {"cameras": (CAM_A,)},
        {"cameras": (CAM_A, dataclasses.replace(CAM_B, width=320))},
        {"cameras": (CAM_A, dataclasses.replace(CAM_B, ring_policy="block"))},
        {"motion": MotionConfig(method="farneback")},
    ],
)
def test_reload_that_reshapes_the_graph_rebuilds(change: dict[str, object]) -> None:
    cameras = change.pop("cameras", (CAM_A, CAM_B))
    plan = plan_reload(_boot((CAM_A, CAM_B)), _boot(cameras, **change))
    assert plan.rebuild and plan.reason
