"""systemd integration without libsystemd: sd_notify(3) and reading unit-file settings.

The notification protocol is one AF_UNIX datagram of newline-separated KEY=VALUE lines
sent to $NOTIFY_SOCKET (a path, or an abstract name written with a leading '@').
"""

from __future__ import annotations

import logging
import math
import os
import re
import socket
from pathlib import Path
from types import MappingProxyType

log = logging.getLogger(__name__)

NOTIFY_SOCKET_ENV = "NOTIFY_SOCKET"
WATCHDOG_USEC_ENV = "WATCHDOG_USEC"
WATCHDOG_PID_ENV = "WATCHDOG_PID"
# systemd's DefaultTimeoutStopSec, used when a unit sets neither TimeoutStopSec nor TimeoutSec.
DEFAULT_TIMEOUT_STOP_S = 90.0
# sd_watchdog_enabled(3): "send WATCHDOG=1 ... at half the interval" leaves room for jitter.
WATCHDOG_PING_FRACTION = 0.5


class SystemdNotifier:
    """sd_notify for the daemon's main process: READY, STATUS, WATCHDOG, STOPPING.

    A no-op when NOTIFY_SOCKET is unset (not started by systemd, or not Type=notify).
    Only the process that constructed it sends: in a forked child every call is a no-op,
    because systemd (NotifyAccess=main) would ignore the message or, worse, with
    NotifyAccess=all take a worker's READY/WATCHDOG for the daemon's.
    `unset_environment=True` also removes NOTIFY_SOCKET and WATCHDOG_* from os.environ,
    so that spawned workers do not inherit them (like sd_notify's unset_environment).
    Sends never block: a full socket drops the message with a warning, since stalling the
    supervisor's event loop on systemd would be worse than one lost notification.
    """

    def __init__(self, unset_environment: bool = False) -> None:
        self._pid = os.getpid()
        self._address = _socket_address(os.environ.get(NOTIFY_SOCKET_ENV, ""))
        self._watchdog_s = _watchdog_from_env(self._pid)
        self._sock: socket.socket | None = None
        if self._address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.setblocking(False)
        if unset_environment:
            for name in (NOTIFY_SOCKET_ENV, WATCHDOG_USEC_ENV, WATCHDOG_PID_ENV):
                os.environ.pop(name, None)

    @property
    def enabled(self) -> bool:
        """True when notifications go somewhere: systemd is listening and we are main."""
        return self._sock is not None and os.getpid() == self._pid

    def ready(self, status: str | None = None) -> bool:
        """Startup finished (READY=1), optionally with a status line."""
        return self.notify("READY=1" + (f"\nSTATUS={_one_line(status)}" if status else ""))

    def status(self, text: str) -> bool:
        """Free-form status shown by `systemctl status`."""
        return self.notify(f"STATUS={_one_line(text)}")

    def watchdog(self) -> bool:
        """Keep-alive: send only when the daemon really is healthy, never from a timer."""
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        """Shutdown has begun (STOPPING=1)."""
        return self.notify("STOPPING=1")

    def reloading(self) -> bool:
        """A config reload has begun; send ready() again when it is done."""
        return self.notify("RELOADING=1")

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for `seconds` more before the current start/stop timeout fires."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={max(0, round(seconds * 1e6))}")

    def watchdog_interval_s(self) -> float | None:
        """systemd's watchdog timeout (WatchdogSec=) for this process, or None when off.

        None also when WATCHDOG_PID names another process, or in a forked child.
        """
        return self._watchdog_s if os.getpid() == self._pid else None

    def watchdog_ping_period_s(self) -> float | None:
        """How often to send watchdog(): half of watchdog_interval_s(), or None."""
        interval = self.watchdog_interval_s()
        return None if interval is None else interval * WATCHDOG_PING_FRACTION

    def notify(self, message: str) -> bool:
        """Send raw KEY=VALUE lines; True when the datagram was sent."""
        if self._sock is None or self._address is None or os.getpid() != self._pid:
            return False
        try:
            self._sock.sendto(message.encode("utf-8"), self._address)
        except OSError as exc:
            log.warning(
                "sd_notify to %s failed (%s): %s",
                _printable(self._address),
                exc.strerror or exc,
                message.splitlines()[0],
            )
            return False
        return True

    def close(self) -> None:
        """Release the socket; later calls are no-ops."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> SystemdNotifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _socket_address(value: str) -> str | None:
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]  # abstract namespace: no file, leading NUL
    if value.startswith("/"):
        return value
    # systemd 253+ may hand out vsock: addresses; this daemon targets 252 (Debian 12).
    log.warning(
        "%s=%r is not a socket path or @abstract name; systemd notifications are disabled",
        NOTIFY_SOCKET_ENV,
        value,
    )
    return None


def _watchdog_from_env(pid: int) -> float | None:
    usec_text = os.environ.get(WATCHDOG_USEC_ENV, "")
    pid_text = os.environ.get(WATCHDOG_PID_ENV, "")
    if not usec_text:
        return None
    if pid_text and pid_text != str(pid):
        return None  # the watchdog is meant for another process (e.g. our parent)
    if not usec_text.isdigit() or int(usec_text) == 0:
        log.warning(
            "ignoring %s=%r: not a positive number of microseconds", WATCHDOG_USEC_ENV, usec_text
        )
        return None
    return int(usec_text) / 1e6


def _one_line(text: str) -> str:
    # A newline would start a new KEY=VALUE assignment in the datagram.
    return " ".join(text.splitlines())


def _printable(address: str | None) -> str:
    return "?" if address is None else address.replace("\0", "@", 1)


# --- unit files ----------------------------------------------------------------------

_TIMESPAN_UNITS_S = MappingProxyType(
    {
        "us": 1e-6,
        "usec": 1e-6,
        "µs": 1e-6,
        "ms": 1e-3,
        "msec": 1e-3,
        "": 1.0,
        "s": 1.0,
        "sec": 1.0,
        "second": 1.0,
        "seconds": 1.0,
        "m": 60.0,
        "min": 60.0,
        "minute": 60.0,
        "minutes": 60.0,
        "h": 3600.0,
        "hr": 3600.0,
        "hour": 3600.0,
        "hours": 3600.0,
        "d": 86400.0,
        "day": 86400.0,
        "days": 86400.0,
        "w": 604800.0,
        "week": 604800.0,
        "weeks": 604800.0,
    }
)
_TIMESPAN_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zµ]*)\s*")


def parse_timespan_s(text: str) -> float:
    """Seconds in a systemd time span ("30", "1min 30s", "500ms", "infinity")."""
    text = text.strip()
    if text == "infinity":
        return math.inf
    total, pos = 0.0, 0
    while pos < len(text):
        match = _TIMESPAN_PART.match(text, pos)
        if not match or match.group(2) not in _TIMESPAN_UNITS_S:
            raise ValueError(f"not a systemd time span: {text!r}")
        total += float(match.group(1)) * _TIMESPAN_UNITS_S[match.group(2)]
        pos = match.end()
    if not text:
        raise ValueError("empty time span")
    return total


def unit_settings(path: str | Path, section: str) -> list[tuple[str, str]]:
    """(key, value) assignments of `[section]` in a unit file, in file order."""
    settings: list[tuple[str, str]] = []
    current, pending = "", ""
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = pending + raw.strip()
        if line.endswith("\\"):  # continuation: joined with a space, as systemd does
            pending = line[:-1] + " "
            continue
        pending = ""
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
        elif current == section and "=" in line:
            key, _, value = line.partition("=")
            settings.append((key.strip(), value.strip()))
    return settings


def unit_timeout_stop_s(path: str | Path) -> float:
    """The stop timeout a unit file gives its service: the last TimeoutStopSec= or
    TimeoutSec= in [Service]; systemd's default when neither is set (or one is reset)."""
    timeout = DEFAULT_TIMEOUT_STOP_S
    for key, value in unit_settings(path, "Service"):
        if key in ("TimeoutStopSec", "TimeoutSec"):
            timeout = parse_timespan_s(value) if value else DEFAULT_TIMEOUT_STOP_S
    return timeout
