"""A reload's new sinks leave the running sink's outbox state alone until the swap (real
SQLite): an event stored between build and swap keeps its snapshot, a reload that fails
leaves the old bounds, and the new bounds apply from the swap on."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.config import Config, MqttConfig
from daemon.outputs.sinks.protocol import SinkContext
from daemon.outputs.sinks.runner import SinkRunner, SinkSetupError

pytestmark = pytest.mark.timeout(30)

SNAPSHOT = b"\xff\xd8snapshot"


def event(i: int) -> dict[str, object]:
    return {
        "id": f"e{i}",
        "camera": "front",
        "action": "walk",
        "phase": "start",
        "score_max": 0.9,
        "started_at": "2026-01-01T00:00:00Z",
        "ended_at": None,
    }


def mqtt(max_events: int, **kw: object) -> Config:
    return Config(mqtt=MqttConfig(enabled=True, outbox_max_events=max_events, **kw))  # type: ignore[arg-type]


@pytest.fixture
def runner(tmp_path: Path) -> SinkRunner:
    runner = SinkRunner(tmp_path, SinkContext("box", ("front",), ("walk",), tmp_path))
    runner.swap(runner.build(mqtt(100), runner.context, ["mqtt"]), runner.context)  # not started
    return runner


def test_an_event_stored_between_build_and_swap_keeps_its_snapshot(runner: SinkRunner) -> None:
    built = runner.build(mqtt(50), runner.context, ["mqtt"])
    state = runner.outbox.sink_state("mqtt")
    assert (state.max_events, state.snapshots) == (100, True), "changed before the swap"
    runner.store(event(0), SNAPSHOT)  # the writer thread, while the reload builds
    [item] = runner.outbox.pending("mqtt")
    assert item.snapshot == SNAPSHOT
    runner.swap(built, runner.context)
    assert (state.max_events, state.snapshots) == (50, True)
    runner.close(0.0)


def test_a_failed_reload_leaves_the_running_bounds(runner: SinkRunner, tmp_path: Path) -> None:
    bad = mqtt(7, snapshots=False, tls=True, ca_file=str(tmp_path / "no-ca.pem"))
    with pytest.raises(SinkSetupError, match="ca_file"):
        runner.build(bad, runner.context, ["mqtt"])
    state = runner.outbox.sink_state("mqtt")
    assert (state.max_events, state.snapshots) == (100, True)
    runner.store(event(1), SNAPSHOT)
    assert runner.outbox.pending("mqtt")[0].snapshot == SNAPSHOT
    runner.close(0.0)


def test_a_reload_that_drops_snapshots_applies_at_the_swap(runner: SinkRunner) -> None:
    built = runner.build(mqtt(100, snapshots=False), runner.context, ["mqtt"])
    assert runner.outbox.sink_state("mqtt").snapshots
    runner.swap(built, runner.context)
    runner.store(event(2), SNAPSHOT)
    assert runner.outbox.pending("mqtt")[0].snapshot is None  # nobody wants it now
    runner.close(0.0)
