"""Two daemons sharing one shm_dir, as two containers sharing /dev/shm do.

A run is alive while it holds its run lock (daemon/ipc/runlock.py), whatever PID namespace
it lives in: a start in another namespace, where the first daemon's pid does not exist,
must leave the first daemon's rings alone; a SIGKILLed run's files go at the next start.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from daemon_proc import Daemon, wait_for

from daemon.exitcodes import ExitCode

START_S = 60.0  # spawning 4 workers that import cv2 + onnxruntime on 2 busy cores
STOP_S = 30.0
FRAMES_AFTER = 30  # frames daemon A must still show once B runs beside it
SMALL: dict[str, dict[str, object]] = {
    "motion": {"width": 32, "height": 32},
    "inference": {"stride": 2},
}
UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]


def camera(name: str) -> dict[str, object]:
    return {"name": name, "source": "test:moving-box", "fps": 15, "width": 96, "height": 64}


def unshare_usable() -> str:
    """Why `unshare --pid` cannot run here, or "" when it can."""
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    proc = subprocess.run(
        [*UNSHARE, "true"], capture_output=True, text=True, timeout=20, check=False
    )
    if proc.returncode != 0:
        return (
            f"unshare --pid is not permitted here (needs root or CAP_SYS_ADMIN): "
            f"{proc.stderr.strip()}"
        )
    return ""


def run_files(shm_dir: Path, pid: int) -> list[str]:
    """The files in `shm_dir` of the run whose supervisor has pid `pid` (in its namespace)."""
    return sorted(p.name for p in shm_dir.iterdir() if p.name.startswith(f"actiond-{pid}-"))


def namespace_child(unshare_pid: int) -> int:
    """The pid (in our namespace) of the process that `unshare --fork` started."""
    children = Path(f"/proc/{unshare_pid}/task/{unshare_pid}/children").read_text().split()
    return int(children[0]) if children else 0


def pid_running(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not: an orphan waits for a busy init to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def daemon(tmp: Path, cameras: list[dict[str, object]], shm_dir: Path | None = None) -> Daemon:
    tmp.mkdir()
    sections = {k: dict(v) for k, v in SMALL.items()}
    if shm_dir is not None:
        sections["daemon"] = {"shm_dir": str(shm_dir)}
    return Daemon(tmp, cameras, sections)


@pytest.mark.timeout(240)
def test_a_start_in_another_pid_namespace_keeps_a_live_daemons_rings(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    reason = unshare_usable()
    if reason:
        pytest.skip(reason)
    a = daemon(tmp_path / "a", [camera("cama")])
    daemons.append(a.start())
    wait_for(lambda: len(a.frames()) > 5, START_S, "frames from daemon A")
    a_proc = a.proc
    assert a_proc is not None
    a_files = run_files(a.shm_dir, a_proc.pid)
    assert a_files, a.leftovers()
    # B's supervisor is pid 1 in its own namespace, where A's pid does not exist.
    b = daemon(tmp_path / "b", [camera("camb")], shm_dir=a.shm_dir)
    b.command = [*UNSHARE, *b.command]
    b.start()
    assert b.proc is not None
    try:
        wait_for(lambda: len(b.frames()) > 5, START_S, "frames from daemon B")
        shown = len(a.frames())
        wait_for(
            lambda: len(a.frames()) > shown + FRAMES_AFTER or a_proc.poll() is not None,
            START_S,
            "daemon A to keep showing frames",
        )
        assert a_proc.poll() is None, a.log()[-4000:]
        assert run_files(a.shm_dir, a_proc.pid) == a_files
        assert "left by a dead run" not in b.log(), b.log()[-4000:]
        assert "RingNotFound" not in a.log(), a.log()[-4000:]
        os.kill(namespace_child(b.proc.pid), signal.SIGTERM)  # unshare forwards no signal
        assert b.wait(STOP_S) == ExitCode.OK, b.log()[-4000:]
        assert run_files(a.shm_dir, 1) == [], "B's clean stop removes B's files only"
        assert a.stop() == ExitCode.OK, a.log()[-4000:]
        assert a.leftovers() == []
    finally:
        b.cleanup()  # kills unshare, whose --kill-child takes B's namespace with it
        for name in run_files(a.shm_dir, 1):
            # Not left to `daemons`: kill_orphans would read B's namespace-local pids.
            (a.shm_dir / name).unlink(missing_ok=True)


@pytest.mark.timeout(240)
def test_a_sigkilled_runs_files_are_removed_by_the_next_start(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    first = daemon(tmp_path / "first", [camera("cam")])
    daemons.append(first.start())
    wait_for(lambda: len(first.frames()) > 5, START_S, "frames from the first run")
    assert first.proc is not None
    dead_pid = first.proc.pid
    dead_files = run_files(first.shm_dir, dead_pid)
    assert any(name.endswith(".lock") for name in dead_files), dead_files
    workers = [first.worker_pid(w) for w in ("cam.source", "cam.motion", "cam.overlay", "infer.0")]
    first.proc.kill()
    first.proc.wait(STOP_S)
    # Its workers notice that the supervisor is gone and exit; their rings stay behind.
    wait_for(
        lambda: not any(pid_running(pid) for pid in workers),
        STOP_S,
        "the dead run's workers to exit",
    )
    assert run_files(first.shm_dir, dead_pid) == dead_files
    second = daemon(tmp_path / "second", [camera("cam")], shm_dir=first.shm_dir)
    daemons.append(second.start())
    wait_for(lambda: len(second.frames()) > 5, START_S, "frames from the second run")
    assert run_files(first.shm_dir, dead_pid) == []
    assert f"removed {len(dead_files)} shared-memory segment(s) left by a dead run" in second.log()
    assert second.stop() == ExitCode.OK, second.log()[-4000:]
    assert second.leftovers() == [] and first.leftovers() == []
