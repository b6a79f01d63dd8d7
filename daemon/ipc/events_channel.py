"""Event records from workers to the supervisor: one Unix datagram per event.

Events are small (a JSON header and an optional JPEG snapshot), rare, and must not wait
behind frames, so they do not go through the frame rings. A datagram socket needs no
connection state: a restarted worker just sends again, and a reload that re-opens the
supervisor's outputs keeps this socket open.

Backpressure, not loss: the socket is blocking with a send timeout (SO_SNDTIMEO). On
Linux a datagram sent to a peer whose queue is full (net.unix.max_dgram_qlen, as low as
10) waits for room instead of failing with EAGAIN, so a burst of events paces the
sending worker to the supervisor's intake; the supervisor stops reading while its outbox
writer is behind (daemon/supervisor/intake.py), so the wait reaches the worker. Only a
supervisor that takes no event for `send_timeout_s` (kept below the worker heartbeat
timeout), a supervisor that is gone, or a send that fails outright loses an event, and
each loss is counted by reason in `lost`; a snapshot too large for one datagram is sent
without its snapshot and counted in `snapshots_lost`.
"""

from __future__ import annotations

import errno
import json
import logging
import socket
import struct
from collections import Counter
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_HEADER = struct.Struct("!I")  # length of the JSON part
_TIMEVAL = struct.Struct("@ll")  # struct timeval for SO_SNDTIMEO
MAX_DATAGRAM_BYTES = 200_000  # below Linux's default AF_UNIX send buffer
SNAPSHOT_HEADROOM_BYTES = 4096  # room for the JSON header beside a snapshot
# For AF_UNIX datagrams the receiver's queue is bounded by net.unix.max_dgram_qlen
# datagrams and by each sender's SO_SNDBUF (a datagram is charged to its sender until
# read), not by this; set anyway, it bounds the bytes a reader may have queued.
RECV_BUFFER_BYTES = 4 * 1024 * 1024
SEND_TIMEOUT_S = 2.0  # default; callers keep it below the heartbeat timeout

# Why an event, or its snapshot, was lost on its way to the supervisor: the `reason` label
# of actiond_lost_total{stage="overlay",item="event"|"snapshot"}.
LOST_SEND_TIMEOUT = "send_timeout"  # the supervisor took nothing for send_timeout_s
LOST_SUPERVISOR_GONE = "supervisor_gone"  # no socket, or nobody reading it
LOST_SEND_FAILED = "send_failed"  # any other error of sendto()
LOST_REASONS = (LOST_SEND_TIMEOUT, LOST_SUPERVISOR_GONE, LOST_SEND_FAILED)
SNAPSHOT_TOO_LARGE = "too_large"
SNAPSHOT_LOST_REASONS = (SNAPSHOT_TOO_LARGE,)
_GONE_ERRNOS = (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTCONN)


def encode(record: dict[str, Any], snapshot: bytes | None) -> bytes:
    head = json.dumps(record).encode()
    return _HEADER.pack(len(head)) + head + (snapshot or b"")


def decode(datagram: bytes) -> tuple[dict[str, Any], bytes | None]:
    (n,) = _HEADER.unpack_from(datagram)
    record = json.loads(datagram[_HEADER.size : _HEADER.size + n])
    snapshot = datagram[_HEADER.size + n :]
    return record, snapshot or None


class EventReceiver:
    """The supervisor's end: a bound datagram socket to add_reader() on."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.unlink(missing_ok=True)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER_BYTES)
        self._sock.bind(str(self.path))
        self._sock.setblocking(False)
        self.malformed_total = 0

    def fileno(self) -> int:
        return self._sock.fileno()

    def receive(self, limit: int | None = None) -> list[tuple[dict[str, Any], bytes | None]]:
        """Up to `limit` datagrams waiting now (all of them for None); never blocks. What
        is left stays queued, and its senders wait (see the module docstring)."""
        out: list[tuple[dict[str, Any], bytes | None]] = []
        while limit is None or len(out) < limit:
            try:
                datagram = self._sock.recv(MAX_DATAGRAM_BYTES + 65536)
            except BlockingIOError:
                return out
            try:
                out.append(decode(datagram))
            except (ValueError, struct.error) as exc:
                self.malformed_total += 1
                log.error("dropped a malformed event record (%d bytes): %s", len(datagram), exc)
        return out

    def close(self) -> None:
        """Close and unlink the socket. Idempotent."""
        self._sock.close()
        self.path.unlink(missing_ok=True)


class EventSender:
    """A worker's end: sends each record, waiting up to `send_timeout_s` for room."""

    def __init__(self, path: str | Path, send_timeout_s: float = SEND_TIMEOUT_S) -> None:
        if not send_timeout_s > 0:
            raise ValueError(
                f"send_timeout_s must be > 0 (got {send_timeout_s!r}): 0 "
                "would make a full supervisor queue drop events"
            )
        self.path = str(path)
        self.send_timeout_s = send_timeout_s
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        # Blocking with a kernel timeout, not Python's settimeout(): Python's timeout mode
        # polls for POLLOUT, which an unconnected datagram socket always reports, and then
        # spins on EAGAIN; the kernel instead sleeps until the peer's queue has room.
        self._sock.setblocking(True)
        seconds = int(send_timeout_s)
        self._sock.setsockopt(
            socket.SOL_SOCKET,
            socket.SO_SNDTIMEO,
            _TIMEVAL.pack(seconds, int((send_timeout_s - seconds) * 1_000_000)),
        )
        self.lost: Counter[str] = Counter()
        self.snapshots_lost: Counter[str] = Counter()

    def send(self, record: dict[str, Any], snapshot: bytes | None = None) -> bool:
        """True if the supervisor's socket took the record; a loss is counted and logged."""
        if snapshot is not None and len(snapshot) > MAX_DATAGRAM_BYTES - SNAPSHOT_HEADROOM_BYTES:
            self._snapshot_lost(record, len(snapshot))
            snapshot = None
        try:
            self._sock.sendto(encode(record, snapshot), self.path)
            return True
        except OSError as exc:
            if snapshot is not None and exc.errno in (errno.EMSGSIZE, errno.ENOBUFS):
                self._snapshot_lost(record, len(snapshot))
                return self.send(record, None)
            self._lost(record, exc)
        return False

    def _snapshot_lost(self, record: dict[str, Any], size: int) -> None:
        self.snapshots_lost[SNAPSHOT_TOO_LARGE] += 1
        log.warning(
            "event %s: its snapshot of %d bytes does not fit one datagram; sending "
            "the event without it (lower display.jpeg_quality)",
            record.get("id"),
            size,
        )

    def _lost(self, record: dict[str, Any], exc: OSError) -> None:
        if isinstance(exc, BlockingIOError) or exc.errno == errno.EAGAIN:
            reason, why = (
                LOST_SEND_TIMEOUT,
                (f"the supervisor took no event for {self.send_timeout_s:g} s"),
            )
        elif exc.errno in _GONE_ERRNOS:
            reason, why = LOST_SUPERVISOR_GONE, f"the supervisor is gone ({exc.strerror})"
        else:
            reason, why = LOST_SEND_FAILED, exc.strerror or str(exc)
        self.lost[reason] += 1
        log.error(
            "event %s %s of camera %s is lost: %s",
            record.get("id"),
            record.get("phase"),
            record.get("camera"),
            why,
        )

    def close(self) -> None:
        self._sock.close()
