"""Event records from workers to the supervisor: one Unix datagram per event.

Events are small (a JSON header and an optional JPEG snapshot), rare, and must not wait
behind frames, so they do not go through the frame rings. A datagram socket needs no
connection state: a restarted worker just sends again, and a send never blocks the
worker (a full socket buffer drops the snapshot first, then reports the loss).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import struct
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_HEADER = struct.Struct("!I")          # length of the JSON part
MAX_DATAGRAM_BYTES = 200_000           # below Linux's default AF_UNIX send buffer
RECV_BUFFER_BYTES = 4 * 1024 * 1024    # room for a burst of events with snapshots


def encode(record: dict[str, Any], snapshot: bytes | None) -> bytes:
    head = json.dumps(record).encode()
    return _HEADER.pack(len(head)) + head + (snapshot or b"")


def decode(datagram: bytes) -> tuple[dict[str, Any], bytes | None]:
    (n,) = _HEADER.unpack_from(datagram)
    record = json.loads(datagram[_HEADER.size: _HEADER.size + n])
    snapshot = datagram[_HEADER.size + n:]
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

    def fileno(self) -> int:
        return self._sock.fileno()

    def receive_all(self) -> list[tuple[dict[str, Any], bytes | None]]:
        """Every datagram waiting now (never blocks)."""
        out = []
        while True:
            try:
                datagram = self._sock.recv(MAX_DATAGRAM_BYTES + 65536)
            except BlockingIOError:
                return out
            try:
                out.append(decode(datagram))
            except (ValueError, struct.error) as exc:
                log.error("dropped a malformed event record (%d bytes): %s", len(datagram), exc)

    def close(self) -> None:
        self._sock.close()
        self.path.unlink(missing_ok=True)


class EventSender:
    """A worker's end: sends records to the supervisor's socket without blocking."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self.lost_total = 0

    def send(self, record: dict[str, Any], snapshot: bytes | None = None) -> bool:
        """True if the supervisor's socket took the record."""
        if snapshot is not None and len(snapshot) > MAX_DATAGRAM_BYTES - 4096:
            log.warning("event snapshot of %d bytes is too large; sending without it",
                        len(snapshot))
            snapshot = None
        for attempt in ([snapshot, None] if snapshot is not None else [None]):
            try:
                self._sock.sendto(encode(record, attempt), self.path)
                return True
            except (BlockingIOError, OSError) as exc:
                if attempt is None:
                    self.lost_total += 1
                    log.error("event %s could not reach the supervisor: %s",
                              record.get("id"), os.strerror(exc.errno or 0))
        return False

    def close(self) -> None:
        self._sock.close()
