"""Wake-up FIFOs: one named pipe per ring endpoint.

A named pipe can be opened by path from any process (no fd passing through spawn), a
blocking worker can select() on it and an asyncio loop can add_reader() it. Opening with
O_RDWR never blocks and never fails for want of a reader on Linux. A full pipe (nobody
draining) makes the write fail with EAGAIN, which is fine: the reader has wake-ups
pending already. The write/read syscall pair also orders the payload stores before the
reader's loads on weakly ordered CPUs (ARM), which plain Python stores would not.
"""

from __future__ import annotations

import os
import select
import time
from pathlib import Path

_WAKE = b"\x01"
_DRAIN_BYTES = 65536


def consumer_fifo(base: Path, group: int, member: int) -> Path:
    return base.with_name(f"{base.name}.c{group}.{member}")


def producer_fifo(base: Path, index: int) -> Path:
    return base.with_name(f"{base.name}.p{index}")


def make_fifo(path: Path) -> None:
    os.mkfifo(path, 0o600)


def open_fifo(path: Path) -> int:
    """Open a FIFO for both reading and writing without blocking."""
    return os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)


def wake(fd: int) -> None:
    try:
        os.write(fd, _WAKE)
    except BlockingIOError:
        pass  # pipe full: the reader already has wake-ups queued


def drain(fd: int) -> None:
    """Consume all pending wake-ups."""
    try:
        while len(os.read(fd, _DRAIN_BYTES)) == _DRAIN_BYTES:
            continue
    except BlockingIOError:
        return


def wait_readable(fd: int, deadline: float | None) -> bool:
    """Block until `fd` is readable or the monotonic `deadline` passes."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while True:
        if deadline is None:
            timeout_ms = None
        else:
            timeout_ms = max(0, int((deadline - time.monotonic()) * 1000) + 1)
        if poller.poll(timeout_ms):
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
