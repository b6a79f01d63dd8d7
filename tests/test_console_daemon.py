"""The console in a real daemon, over real HTTP: the camera's state and figures come from
the supervisor, events reach the history through the durable outbox, a reload moves the
console to a new port (the sink is re-opened; the old port closes), and the history is
still there after the daemon restarts."""

from __future__ import annotations

import json
import signal
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from daemon_proc import Daemon, free_port, wait_for

from daemon.bench.procstats import toml_document
from daemon.exitcodes import ExitCode

CAMERA = "hall"
UNSET_TOKEN_ENV = "ACTIOND_TEST_CONSOLE_TOKEN_NEVER_SET"

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]


def _get(port: int, path: str) -> Any:
    """The JSON answer, or None when nothing answers on the port."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, ConnectionError):
        return None


def _daemon(tmp: Path, port: int) -> Daemon:
    # The moving box makes the demo clip model's walk events every few seconds.
    camera = {"name": CAMERA, "source": "test:moving-box", "fps": 10.0}
    console = {"enabled": True, "listen": f"127.0.0.1:{port}"}
    return Daemon(tmp, [camera], {"console": console})


def _camera(port: int) -> dict[str, Any] | None:
    body = _get(port, "/api/cameras")
    return None if body is None else dict(body["cameras"][0])


def _events(port: int) -> list[dict[str, Any]]:
    body = _get(port, "/api/events")
    return [] if body is None else list(body["events"])


def test_console_state_events_reload_and_restart(tmp_path: Path) -> None:
    first, second = free_port(), free_port()
    daemon = _daemon(tmp_path, first).start()
    try:
        running = wait_for(
            lambda: (cam := _camera(first)) and cam["state"] == "running" and cam["fps"] > 0,
            90,
            "the camera running with an fps",
        )
        assert running
        wait_for(lambda: _events(first), 120, "an event in the console's history")
        # A reload moves the console: the new port answers, the old one closes.
        data = tomllib.loads(daemon.config.read_text())
        cameras = data.pop("cameras")
        data["console"]["listen"] = f"127.0.0.1:{second}"
        daemon.config.write_text(toml_document(data, cameras))
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: _events(second), 60, "the console on its new port, with its history")
        wait_for(lambda: _get(first, "/api/cameras") is None, 30, "the old port to close")
        kept = {e["id"] for e in _events(second)}
        assert daemon.stop() == 0
    finally:
        daemon.cleanup()
    # The history is a file under state_dir: a new daemon on the same state serves it.
    again = _daemon(tmp_path, second).start()
    try:
        wait_for(lambda: kept <= {e["id"] for e in _events(second)}, 60, "the kept history")
        assert again.stop() == 0
    finally:
        again.cleanup()
    assert "Traceback" not in daemon.log()


def test_an_unset_token_variable_stops_the_daemon_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(UNSET_TOKEN_ENV, raising=False)
    camera = {"name": CAMERA, "source": "test:moving-box", "fps": 10.0}
    console = {
        "enabled": True,
        "listen": f"0.0.0.0:{free_port()}",
        "auth_token_env": UNSET_TOKEN_ENV,
    }
    daemon = Daemon(tmp_path, [camera], {"console": console}).start()
    try:
        assert daemon.wait(60) == ExitCode.CONFIG
    finally:
        daemon.cleanup()
    log = daemon.log()
    lines = [line for line in log.splitlines() if UNSET_TOKEN_ENV in line]
    assert len(lines) == 1, log
    assert "console.auth_token_env" in lines[0] and "not set in the environment" in lines[0]
    assert "Traceback" not in log
