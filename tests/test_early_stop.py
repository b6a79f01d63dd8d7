"""A stop requested before the supervisor starts its workers (SIGTERM while the rings are
made or the outputs open): the run ends cleanly, starts no worker, leaves no file."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
import uvloop
from daemon_proc import Daemon

from daemon.exitcodes import ExitCode
from daemon.supervisor.app import Supervisor
from daemon.supervisor.boot import load_boot


@pytest.mark.timeout(120)
def test_a_stop_before_the_workers_start_starts_none(tmp_path: Path, daemons: list[Daemon]) -> None:
    # Daemon: its shm dir and config, run here in-process instead of as `actiond run`.
    d = Daemon(tmp_path, [{"name": "cam", "source": "test:still", "fps": 5}])
    daemons.append(d)
    supervisor = Supervisor(load_boot(d.config))
    supervisor.handle_term()  # as the loop's SIGTERM handler does, before run() builds
    assert uvloop.run(supervisor.run()) == ExitCode.OK
    assert multiprocessing.active_children() == []
    assert not supervisor.arbiter.workers, "no worker was started"
    assert d.leftovers() == []
