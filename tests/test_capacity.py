"""The detect-replica advice: a replica per two cameras that run the person detector, at
most one per core; check-config and `run` warn when [perception] replicas is below it."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from daemon_proc import Daemon, check_config, wait_for

from daemon.exitcodes import ExitCode
from daemon.supervisor.boot import load_boot
from daemon.supervisor.capacity import (
    advised_replicas,
    capacity_warnings,
    detect_cameras,
    usable_cores,
)

pytestmark = pytest.mark.timeout(120)

START_S = 60.0


def _config(tmp_path: Path, cameras: list[str], replicas: int) -> Path:
    text = f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n[perception]\nreplicas = {replicas}\n'
    for i, kind in enumerate(cameras):
        pipeline, gated = ("clip", "true") if kind == "gated" else (kind, "false")
        text += (
            f'[[cameras]]\nname = "cam{i}"\nsource = "test:bars"\n'
            f'pipeline = "{pipeline}"\nrequire_person = {gated}\n'
        )
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("cameras", "cores", "advised"),
    [(0, 2, 1), (1, 2, 1), (2, 2, 1), (3, 2, 2), (4, 2, 2), (5, 2, 2), (8, 4, 4), (9, 16, 5)],
)
def test_a_replica_per_two_cameras_at_most_one_per_core(
    cameras: int, cores: int, advised: int
) -> None:
    assert advised_replicas(cameras, cores) == advised


def test_cameras_that_run_the_detector_are_counted(tmp_path: Path) -> None:
    # Person cameras and person-gated clip cameras use the detector; plain clip ones do not.
    config = load_boot(_config(tmp_path, ["person", "gated", "clip", "person"], 1)).config
    assert detect_cameras(config) == 3
    assert capacity_warnings(config, cores=1) == []
    (line,) = capacity_warnings(config, cores=2)
    assert "3 cameras share 1 detect process" in line and "set replicas = 2" in line
    enough = load_boot(_config(tmp_path, ["person", "gated", "person"], 2)).config
    assert capacity_warnings(enough, cores=2) == []


def test_check_config_warns_and_still_accepts(tmp_path: Path) -> None:
    if usable_cores() < 2:
        pytest.skip("one usable core: one replica is the advice, nothing to warn")
    done = check_config(_config(tmp_path, ["person"] * 3, 1))
    assert done.returncode == ExitCode.OK, done.stderr
    assert "actiond: warning: 3 cameras share 1 detect process(es)" in done.stderr
    assert "set replicas = 2" in done.stderr
    quiet = check_config(_config(tmp_path, ["person"] * 3, 2))
    assert quiet.returncode == ExitCode.OK and "warning" not in quiet.stderr, quiet.stderr


def test_run_logs_the_warning_at_start(tmp_path: Path, daemons: list[Daemon]) -> None:
    if usable_cores() < 2:
        pytest.skip("one usable core: one replica is the advice, nothing to warn")
    cameras: list[dict[str, object]] = [
        {"name": f"cam{i}", "source": "test:still", "pipeline": "person", "fps": 5}
        for i in range(3)
    ]
    d = Daemon(tmp_path, cameras)
    daemons.append(d.start())
    line = "WARNING MainProcess actiond: 3 cameras share 1 detect process(es)"
    wait_for(lambda: line in d.log(), START_S, "the capacity warning in the daemon's log")
    # A SIGTERM before the supervisor's loop took its signals ends the process by the
    # signal: nothing was made yet. Either way nothing is left in the shm dir.
    assert d.stop() in (ExitCode.OK, -signal.SIGTERM), d.log()
    assert d.leftovers() == []
