"""A stop requested before the supervisor starts its workers (SIGTERM while the rings are
made or the outputs open): the run ends cleanly, starts no worker, leaves no file."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest
import uvloop
from daemon_proc import write_config

from daemon.exitcodes import ExitCode
from daemon.supervisor.app import Supervisor
from daemon.supervisor.boot import load_boot


@pytest.mark.timeout(120)
def test_a_stop_before_the_workers_start_starts_none(tmp_path: Path) -> None:
    shm_dir = Path("/dev/shm") / f"actiond-test-{os.getpid()}-{time.monotonic_ns()}"
    shm_dir.mkdir()
    try:
        sections: dict[str, dict[str, object]] = {
            "daemon": {"shm_dir": str(shm_dir), "state_dir": str(tmp_path / "state")},
            "metrics": {"listen": ""},
        }
        camera: dict[str, object] = {"name": "cam", "source": "test:still", "fps": 5}
        config = write_config(tmp_path / "config.toml", sections, [camera])
        supervisor = Supervisor(load_boot(config))
        supervisor.handle_term()  # as the loop's SIGTERM handler does, before run() builds
        assert uvloop.run(supervisor.run()) == ExitCode.OK
        assert multiprocessing.active_children() == []
        assert not supervisor.arbiter.workers, "no worker was started"
        assert sorted(p.name for p in shm_dir.iterdir()) == []
    finally:
        for path in shm_dir.iterdir():
            path.unlink()
        shm_dir.rmdir()
