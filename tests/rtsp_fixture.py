"""pytest fixture for a real RTSP server (tests/rtsp_server.py under Debian's python3).

Register in conftest.py with `pytest_plugins = ["rtsp_fixture"]` (or import the names).
`rtsp_server` yields a started RtspServer; `require_rtsp` skips a test only when the
Debian packages that the server needs are missing (CI installs them).
"""

from __future__ import annotations

import glob
import os
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")
START_TIMEOUT_S = 20.0
EXIT_TIMEOUT_S = 10.0
RETRY_PAUSE_S = 0.2
APT_PACKAGES = (
    "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good "
    "gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav"
)
# Files whose presence shows the apt packages are installed; globs cover the multiarch dir.
REQUIRED_GLOBS = (
    SYSTEM_PYTHON,
    "/usr/lib/python3/dist-packages/gi/__init__.py",
    "/usr/lib/*/girepository-1.0/GstRtspServer-1.0.typelib",
    "/usr/lib/*/gstreamer-1.0/libgstx264.so",
    "/usr/lib/*/gstreamer-1.0/libgstrtp.so",
    "/usr/lib/*/gstreamer-1.0/libgstvideotestsrc.so",
)


def missing_rtsp_requirements() -> tuple[str, ...]:
    """The required files that are absent (empty when the RTSP server can run)."""
    return tuple(pattern for pattern in REQUIRED_GLOBS if not glob.glob(pattern))


MISSING_RTSP_REQUIREMENTS = missing_rtsp_requirements()
require_rtsp = pytest.mark.skipif(
    bool(MISSING_RTSP_REQUIREMENTS),
    reason=(
        f"RTSP test server needs Debian packages ({APT_PACKAGES}); missing: "
        f"{', '.join(MISSING_RTSP_REQUIREMENTS)}. Install with apt-get install {APT_PACKAGES}"
    ),
)


class RtspServer:
    """A gst-rtsp-server subprocess that can be killed, paused and restarted on its port."""

    def __init__(self, log_path: Path, extra_args: tuple[str, ...] = ()) -> None:
        self.port = 0  # 0 until the first start binds a free port
        self.url = ""
        self.log_path = log_path
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start serving (again on the same port after the first start); wait for READY."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError(f"RTSP server already running (pid {self.process.pid})")
        deadline = time.monotonic() + timeout_s
        last_error = ""
        while time.monotonic() < deadline:
            line = self._spawn_and_wait(deadline)
            if line.startswith("READY "):
                _, port, url = line.split()
                self.port, self.url = int(port), url
                return
            last_error = line or "no output"
            self._reap()
            # The port can stay busy for a moment after a kill: a pause between retries
            # (not synchronisation; the READY line is what start() waits for).
            time.sleep(RETRY_PAUSE_S)
        raise RuntimeError(
            f"RTSP server did not start on port {self.port}: {last_error}; see {self.log_path}"
        )

    def _spawn_and_wait(self, deadline: float) -> str:
        """Spawn the server and return its first stdout line ('' at EOF or deadline)."""
        command = [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(self.port), *self.extra_args]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log)
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        buffer = b""
        while b"\n" not in buffer:
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0 or not select.select([fd], [], [], remaining_s)[0]:
                return ""
            chunk = os.read(fd, 4096)
            if not chunk:
                return ""
            buffer += chunk
        return buffer.split(b"\n", 1)[0].decode(errors="replace").strip()

    def stop(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` (SIGKILL by default, like a crash) and reap the process."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        if sig == signal.SIGSTOP:
            return
        self._reap()

    def pause(self) -> None:
        """SIGSTOP: the TCP connection stays open but no data flows (a stalled camera)."""
        self.stop(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after pause()."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    def _reap(self) -> None:
        """Wait for the process to exit, killing it if it will not."""
        if self.process is None:
            return
        try:
            self.process.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=EXIT_TIMEOUT_S)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def close(self) -> None:
        """Kill and reap the server if it runs (also resumes a paused one first)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.stop(signal.SIGKILL)
        self._reap()


@pytest.fixture
def rtsp_server(tmp_path: Path) -> Iterator[RtspServer]:
    """A started RTSP server serving a 320x240 25 fps H.264 test pattern at server.url."""
    if MISSING_RTSP_REQUIREMENTS:
        pytest.skip(
            f"RTSP test server unavailable: missing {MISSING_RTSP_REQUIREMENTS}; "
            f"apt-get install {APT_PACKAGES}"
        )
    server = RtspServer(tmp_path / "rtsp_server.log")
    try:
        server.start()
        yield server
    finally:
        server.close()
