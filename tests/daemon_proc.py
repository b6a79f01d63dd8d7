"""Run the real daemon (`python -m daemon run`) as a subprocess and look inside it.

Each test gets its own shm directory (a folder under /dev/shm), so the daemon's rings and
stats blocks can be found by name, worker pids read from their stats blocks, and
leftovers checked after it stops. Waiting is always `wait_for(condition, deadline)`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from daemon.bench.procstats import toml_document
from daemon.ipc import ring_stats
from daemon.ipc.mapping import RingStats
from daemon.ipc.stats import StatsBlock

REPO = Path(__file__).resolve().parent.parent
POLL_S = 0.05


def wait_for(condition: Callable[[], object], timeout_s: float, what: str) -> object:
    """Poll `condition` until it is truthy; AssertionError naming `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(POLL_S)


def check_config(config: Path, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    """`actiond check-config -c config`, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "daemon", "check-config", "-c", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(
    path: Path, sections: dict[str, dict[str, object]], cameras: list[dict[str, object]]
) -> Path:
    path.write_text(toml_document(sections, cameras))
    return path


class Daemon:
    """A running `actiond run` process with its own shm dir, log file and frame log."""

    def __init__(
        self,
        tmp: Path,
        cameras: list[dict[str, object]],
        sections: dict[str, dict[str, object]] | None = None,
        env: dict[str, str] | None = None,
        console_script: bool = False,
    ) -> None:
        self.tmp = tmp
        # `actiond` as installed (the systemd unit's way), or `python -m daemon`.
        self.command = (
            [str(Path(sys.executable).with_name("actiond"))]
            if console_script
            else [sys.executable, "-m", "daemon"]
        )
        self.shm_dir = Path("/dev/shm") / f"actiond-test-{os.getpid()}-{time.monotonic_ns()}"
        self.shm_dir.mkdir()
        self.frame_log = tmp / "frames.jsonl"
        base: dict[str, dict[str, object]] = {
            "daemon": {
                "shm_dir": str(self.shm_dir),
                "state_dir": str(tmp / "state"),
                "status_interval_s": 1.0,
                "heartbeat_timeout_s": 5.0,
                "restart_backoff_min_s": 0.2,
                "restart_backoff_max_s": 1.0,
            },
            "metrics": {"listen": ""},
            "display": {"frame_log": str(self.frame_log)},
        }
        for name, table in (sections or {}).items():
            base.setdefault(name, {}).update(table)
        self.config = write_config(tmp / "config.toml", base, cameras)
        self.log_path = tmp / "daemon.log"
        self._env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Daemon:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*self.command, "run", "-c", str(self.config)],
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env,
            )
        return self

    # -- looking inside ---------------------------------------------------------------

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def frames(self) -> list[dict[str, object]]:
        if not self.frame_log.exists():
            return []
        lines = self.frame_log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]

    def _file(self, suffix: str) -> Path | None:
        matches = [p for p in self.shm_dir.iterdir() if p.name.endswith(suffix)]
        return matches[0] if matches else None

    def stats(self, worker: str) -> dict[str, float]:
        path = self._file(f"-{worker}.stats")
        if path is None:
            return {}
        block = StatsBlock.attach(path)
        try:
            return block.snapshot()
        finally:
            block.close()

    def ring(self, name: str) -> RingStats | None:
        """The ring's stats, or None before the daemon has created it."""
        path = self._file(f"-{name}")
        return None if path is None else ring_stats(path)

    def worker_pid(self, worker: str) -> int:
        return int(self.stats(worker).get("pid", 0))

    def heartbeat_fresh(self, worker: str, max_age_s: float = 2.0) -> bool:
        beat = self.stats(worker).get("heartbeat_monotonic_s", 0.0)
        return beat > 0 and time.monotonic() - beat < max_age_s

    def leftovers(self) -> list[str]:
        return sorted(p.name for p in self.shm_dir.iterdir()) if self.shm_dir.exists() else []

    # -- stopping -----------------------------------------------------------------------

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout_s: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout_s)

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout_s)

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        kill_orphans(self.shm_dir)
        for path in self.shm_dir.iterdir():
            path.unlink()
        self.shm_dir.rmdir()


def kill_orphans(shm_dir: Path) -> None:
    """SIGKILL worker processes a failed test may have left (found via stats blocks)."""
    for path in shm_dir.glob("*.stats"):
        try:
            block = StatsBlock.attach(path)
            pid = int(block.get("pid"))
            block.close()
        except (OSError, ValueError):
            continue
        if pid > 0:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue


class FrameLogTail:
    """Reads a daemon's frame log incrementally: a fault test polls it many times a second,
    and re-reading the whole growing file each time would load the 2-core box."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""
        self.records: list[dict[str, object]] = []
        self.newest_id: dict[str, int] = {}  # camera -> highest frame id shown

    def poll(self) -> list[dict[str, object]]:
        """The records appended since the last poll (complete lines only)."""
        if not self.path.exists():
            return []
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        new = [json.loads(line) for line in lines if line.strip()]
        for record in new:
            camera = str(record.get("camera", ""))
            self.newest_id[camera] = max(self.newest_id.get(camera, -1), int(record["frame_id"]))
        self.records.extend(new)
        return new

    def shown_after(self, camera: str, frame_id: int) -> bool:
        """Whether `camera` has shown a frame newer than `frame_id` (polls first)."""
        self.poll()
        return self.newest_id.get(camera, -1) > frame_id
