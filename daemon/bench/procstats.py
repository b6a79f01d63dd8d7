"""Run the real daemon for a benchmark and measure it from the outside.

BenchDaemon writes a config, starts `python -m daemon run` in a subprocess with a private
shm directory (a folder under /dev/shm) and a temporary state directory, and looks inside
it the way an operator's tools would: worker pids and counters from the stats blocks in
the shm directory, ring counters through ring_stats(), CPU seconds, RSS and open fds of
every process from /proc. Used by `bench load` and `bench soak`; Linux only (/proc).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2

from daemon.bench.proc import (
    ProcSample,
    child_pids,
    parent_pid,
    process_label,
    read_proc,
    system_cpu_ticks,
)
from daemon.config import ASSETS_DIR
from daemon.ipc import RingError, RingStats, ring_stats
from daemon.ipc.runlock import LOCK_NAME
from daemon.ipc.stats import PID, StatsBlock

SHM_ROOT = "/dev/shm"
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the directory holding `daemon`
# The sample clips beside a development checkout (<checkout>/../shared/media, where the
# project keeps them); ACTIOND_BENCH_MEDIA overrides it.
MEDIA_DIR_ENV = "ACTIOND_BENCH_MEDIA"
DEV_MEDIA_DIR = Path(__file__).resolve().parents[3] / "shared" / "media"
CLIP_SUFFIXES = (".mp4", ".mkv", ".avi", ".webm", ".mov")
FFMPEG_LOG_LEVEL_ENV = "OPENCV_FFMPEG_LOGLEVEL"
FFMPEG_QUIET = "-8"  # AV_LOG_QUIET
START_TIMEOUT_S = 120.0
# The supervisor's staged shutdown takes at most ~18 s (daemon.supervisor.app).
STOP_TIMEOUT_S = 40.0
POLL_S = 0.1
LOG_TAIL_CHARS = 2000
_SEGMENT_RE = re.compile(r"^actiond-\d+-[0-9a-f]+-(?P<name>.+)$")
_DIED_RE = re.compile(r"^.*\(pid \S+\) died \(", re.MULTILINE)


class BenchError(RuntimeError):
    """The benchmarked daemon could not be started, measured or stopped."""


@dataclass(frozen=True)
class Clip:
    """A video file a benchmark camera plays, with its native frame rate."""

    path: Path
    fps: float
    width: int
    height: int


def probe_clip(path: Path) -> Clip:
    # FFmpeg's own line for a file it cannot read ("moov atom not found") would come
    # before ours and say less: quiet in this process (OpenCV reads the variable at its
    # first open); restored, so the daemons it starts keep FFmpeg's errors in their logs.
    saved = os.environ.get(FFMPEG_LOG_LEVEL_ENV)
    os.environ.setdefault(FFMPEG_LOG_LEVEL_ENV, FFMPEG_QUIET)
    cap = cv2.VideoCapture(str(path))
    if saved is None:
        del os.environ[FFMPEG_LOG_LEVEL_ENV]
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        if not cap.isOpened() or not 0 < fps <= 1000 or not all(size):
            raise BenchError(f"{path}: not a video file OpenCV can read with a frame rate")
    finally:
        cap.release()
    return Clip(path.resolve(), fps, *size)


def sample_media_dir() -> Path:
    """$ACTIOND_BENCH_MEDIA, else the development sample clips, else the bundled ones."""
    env = os.environ.get(MEDIA_DIR_ENV, "")
    if env:
        return Path(env)
    return DEV_MEDIA_DIR if DEV_MEDIA_DIR.is_dir() else ASSETS_DIR


def default_clip_paths() -> list[Path]:
    return [sample_media_dir()]


def find_clips(paths: list[Path]) -> list[Clip]:
    """The clips named by `paths` (files, or directories of clips, sorted by name)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix.lower() in CLIP_SUFFIXES)
        elif path.is_file():
            files.append(path)
        else:
            raise BenchError(f"{path}: no such clip or directory; pass --clip FILE|DIR")
    if not files:
        raise BenchError(
            f"no video clips ({', '.join(CLIP_SUFFIXES)}) in "
            f"{', '.join(map(str, paths))}; pass --clip FILE|DIR"
        )
    return [probe_clip(p) for p in files]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- config -----------------------------------------------------------------------------


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (int, float, str)):
        return json.dumps(value)  # a JSON string or number is a valid TOML one
    raise TypeError(f"cannot write {type(value).__name__} {value!r} to TOML")


def toml_document(sections: dict[str, dict[str, object]], cameras: list[dict[str, object]]) -> str:
    """A config.toml text: the tables, then one [[cameras]] entry per camera."""
    lines: list[str] = []
    for name, table in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in table.items()]
    for camera in cameras:
        lines.append("[[cameras]]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in camera.items()]
    return "\n".join(lines) + "\n"


# -- the daemon -------------------------------------------------------------------------


@dataclass
class Snapshot:
    """Everything measured at one moment of a benchmark run."""

    at_s: float
    workers: dict[str, dict[str, float]]
    rings: dict[str, RingStats]
    procs: dict[str, ProcSample]
    system_ticks: tuple[int, int]
    shm_entries: int

    def counter(self, worker: str, name: str) -> float:
        return self.workers.get(worker, {}).get(name, 0.0)


def count_restarts(log: str) -> int:
    """Worker restarts the supervisor logged (daemon.supervisor.arbiter: "... died (...)")."""
    return len(_DIED_RE.findall(log))


class BenchDaemon:
    """`actiond run` on a generated config in a subprocess, with its own shm and state dirs."""

    def __init__(
        self, sections: dict[str, dict[str, object]], cameras: list[dict[str, object]]
    ) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="actiond-bench-"))
        self.shm_dir = Path(tempfile.mkdtemp(prefix="actiond-bench-", dir=SHM_ROOT))
        daemon = {
            "shm_dir": str(self.shm_dir),
            "state_dir": str(self.tmp / "state"),
            **sections.get("daemon", {}),
        }
        self.config = self.tmp / "config.toml"
        self.config.write_text(toml_document({**sections, "daemon": daemon}, cameras))
        self.log_path = self.tmp / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> BenchDaemon:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        # After a failure the log and config stay for a look (error messages name them).
        self.close(keep_files=exc_type is not None)

    def start(self) -> None:
        # The daemon runs this very package, installed or not, from any working directory.
        path = os.pathsep.join(p for p in (str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")) if p)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "daemon", "run", "-c", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONPATH": path},
            )

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise BenchError("the daemon was not started")
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def check_alive(self) -> None:
        if not self.alive():
            code = None if self.proc is None else self.proc.returncode
            raise BenchError(
                f"the daemon exited (status {code}); the end of its log "
                f"({self.log_path}):\n{self.log_text()[-LOG_TAIL_CHARS:]}"
            )

    def wait_flowing(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Wait until every camera's overlay has drawn a frame."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.check_alive()
            overlays = {n: s for n, s in self.worker_stats().items() if n.endswith(".overlay")}
            if overlays and all(s.get("frames_out_total", 0) > 0 for s in overlays.values()):
                return
            if time.monotonic() > deadline:
                tail = self.log_text()[-LOG_TAIL_CHARS:]
                raise BenchError(
                    f"no frames reached every overlay within {timeout_s:.0f} s; "
                    f"the end of the daemon's log ({self.log_path}):\n{tail}"
                )
            time.sleep(POLL_S)

    def hold(self, seconds: float) -> None:
        """Let the daemon run for `seconds`, failing early if it exits."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.check_alive()
            time.sleep(min(left, 1.0))

    def _segments(self, suffix: str) -> dict[str, Path]:
        found = {}
        for path in sorted(self.shm_dir.iterdir()):
            match = _SEGMENT_RE.match(path.name)
            try:
                regular = stat.S_ISREG(path.stat().st_mode)
            except FileNotFoundError:
                continue  # unlinked by a stopping daemon while we looked
            if match and regular and path.name.endswith(suffix):
                found[match.group("name").removesuffix(suffix)] = path
        return found

    def worker_stats(self) -> dict[str, dict[str, float]]:
        out = {}
        for name, path in self._segments(".stats").items():
            try:
                block = StatsBlock.attach(path)
            except (OSError, RingError):
                continue
            try:
                out[name] = block.snapshot()
            finally:
                block.close()
        return out

    def rings(self) -> dict[str, RingStats]:
        out = {}
        for name, path in self._segments("").items():
            if not name.endswith(".stats") and name != LOCK_NAME:  # the run's flock file
                try:
                    out[name] = ring_stats(path)
                except (OSError, RingError):
                    continue
        return out

    def processes(self, workers: dict[str, dict[str, float]]) -> dict[str, int]:
        """Label -> pid of the supervisor, every worker and any other child process."""
        procs = {"supervisor": self.pid}
        children = child_pids(self.pid)
        by_pid = {int(s.get(PID, 0)): name for name, s in workers.items()}
        for pid in children:
            # A restarted worker is nameless until its first beat: label it by pid then.
            label = by_pid.get(pid) or process_label(pid)
            procs[f"{label}.{pid}" if label in procs else label] = pid
        return procs

    def shm_entries(self) -> list[str]:
        return sorted(p.name for p in self.shm_dir.iterdir()) if self.shm_dir.exists() else []

    def snapshot(self) -> Snapshot:
        workers = self.worker_stats()
        at_s = time.monotonic()  # the frame counters' moment: fps divide by these
        procs = {}
        for label, pid in self.processes(workers).items():
            sample = read_proc(pid)
            if sample is not None:
                procs[label] = sample
        return Snapshot(
            at_s, workers, self.rings(), procs, system_cpu_ticks(), len(self.shm_entries())
        )

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> tuple[int, list[str]]:
        """SIGTERM and wait: (exit status, names left in the shm dir)."""
        if self.proc is None:
            return 0, self.shm_entries()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise BenchError(
                f"the daemon did not stop within {timeout_s:.0f} s of SIGTERM; see {self.log_path}"
            ) from exc
        return code, self.shm_entries()

    def close(self, keep_files: bool = False) -> None:
        """Kill what is left (daemon, orphaned workers); remove the shm dir and, unless
        `keep_files`, the temporary dir with the config and the daemon's log."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        for stats in self.worker_stats().values():
            pid = int(stats.get(PID, 0))
            # Only a worker of ours that outlived the daemon (reparented to init); a pid
            # that is gone or was reused by another program is left alone.
            if pid > 0 and parent_pid(pid) == 1 and process_label(pid) == "spawn":
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
        shutil.rmtree(self.shm_dir, ignore_errors=True)
        if not keep_files:
            shutil.rmtree(self.tmp, ignore_errors=True)
