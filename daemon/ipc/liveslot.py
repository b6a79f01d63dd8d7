"""A camera's live JPEG slot: the overlay's latest annotated frame, for the console.

One fixed-size shared-memory file per camera, beside the run's rings and named with the
run's prefix (so the run lock's clean-up of a dead run removes it). One writer (the
camera's overlay worker) and any number of readers (the console, in the supervisor).

Layout: a header of 8-byte words, then the JPEG bytes.

- ``seq``: a seqlock counter. The writer makes it odd, writes the JPEG, its length and
  frame id, then makes it even. A reader copies everything between two reads of ``seq``
  and keeps the copy only if both were the same even value, so it never returns a torn
  JPEG; no lock is held across processes, and a writer killed mid-write leaves ``seq``
  odd, which readers see as "nothing readable" until a new writer publishes.
- ``request_ns``: when a reader last asked for frames (CLOCK_MONOTONIC, shared by every
  process of the host). The writer encodes only while a reader asked within WANTED_S, so
  a camera nobody watches costs nothing.

Aligned 8-byte stores and loads are single instructions, and x86's total store order
keeps the writer's stores in program order for a reader on another core. Python gives no
memory barrier, so on a weakly ordered CPU (arm64) a reader also checks that the bytes it
copied are a whole JPEG (starts FF D8, ends FF D9) before it returns them. Readers retry
a slot being written for at most READ_RETRY_S.
"""

from __future__ import annotations

import errno
import mmap
import os
import time
from pathlib import Path

import numpy as np

_MAGIC = 0x6C69_7665_736C_6F31  # "liveslo1"
_HEADER_WORDS = 8
_HEADER_BYTES = 8 * _HEADER_WORDS
# header word indexes
_W_MAGIC, _W_CAPACITY, _W_SEQ, _W_FRAME_ID, _W_LENGTH, _W_REQUEST_NS, _W_SKIPPED = range(7)
WANTED_S = 3.0  # a reader's request() keeps the writer publishing this long
READ_RETRY_S = 0.05  # a reader retries a slot being written this long, then gives up
_READ_PAUSE_S = 0.0005
MIN_SLOT_BYTES = 65536


def _whole_jpeg(data: bytes) -> bool:
    return data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"


class LiveSlotError(RuntimeError):
    """The file is not a live slot (wrong magic or too small)."""


def slot_bytes_for(width: int, height: int) -> int:
    """Room for one JPEG of a width x height frame: one byte per pixel, which a JPEG of a
    camera image stays far below at any quality the config allows (at least 64 KiB)."""
    return max(MIN_SLOT_BYTES, width * height)


def create_slot(path: str | Path, max_bytes: int) -> Path:
    """Create (or re-initialise) the slot file; published under its name only once its
    header is written (made under a temporary name, then renamed)."""
    target = Path(path)
    temp = target.with_name(target.name + ".creating")
    fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        size = _HEADER_BYTES + max_bytes
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
            os.ftruncate(fd, size)
        with mmap.mmap(fd, _HEADER_BYTES) as mm:
            head = np.ndarray((_HEADER_WORDS,), np.int64, buffer=mm)
            head[_W_CAPACITY] = max_bytes
            head[_W_MAGIC] = _MAGIC
            del head
    except BaseException:
        os.close(fd)
        temp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.rename(temp, target)
    return target


class _Mapped:
    """The slot's mapping: header words and the JPEG area."""

    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            if size < _HEADER_BYTES:
                raise LiveSlotError(f"{path} is not an actiond live slot ({size} bytes)")
            self._mm = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.head = np.ndarray((_HEADER_WORDS,), np.int64, buffer=self._mm)
        capacity = int(self.head[_W_CAPACITY])
        if int(self.head[_W_MAGIC]) != _MAGIC or _HEADER_BYTES + capacity > size:
            self.close()
            raise LiveSlotError(f"{path} is not an actiond live slot")
        self.capacity = capacity
        self.data = np.ndarray((capacity,), np.uint8, buffer=self._mm, offset=_HEADER_BYTES)

    def close(self) -> None:
        if self._mm.closed:
            return
        del self.head
        if hasattr(self, "data"):
            del self.data
        self._mm.close()


class LiveSlotWriter:
    """The overlay's side: publish(jpeg, frame_id) while wanted()."""

    def __init__(self, path: str | Path, max_bytes: int) -> None:
        self.path = Path(path)
        if not self.path.exists():
            create_slot(self.path, max_bytes)
        self._slot = _Mapped(self.path)
        head = self._slot.head
        if int(head[_W_SEQ]) % 2:  # a writer died mid-write: what is there is torn
            head[_W_LENGTH] = 0
            head[_W_SEQ] = int(head[_W_SEQ]) + 1
        self.published = 0
        self.skipped_too_large = 0

    @property
    def max_bytes(self) -> int:
        return self._slot.capacity

    def wanted(self) -> bool:
        """Whether a reader asked for frames within the last WANTED_S."""
        asked = int(self._slot.head[_W_REQUEST_NS])
        return asked > 0 and time.monotonic_ns() - asked < WANTED_S * 1e9

    def publish(self, jpeg: bytes, frame_id: int) -> bool:
        """Put `jpeg` in the slot; False (and counted in skipped_too_large) when it does
        not fit."""
        head, n = self._slot.head, len(jpeg)
        if n > self._slot.capacity:
            self.skipped_too_large += 1
            head[_W_SKIPPED] = int(head[_W_SKIPPED]) + 1
            return False
        seq = int(head[_W_SEQ])
        head[_W_SEQ] = seq + 1  # odd: being written
        self._slot.data[:n] = np.frombuffer(jpeg, np.uint8)
        head[_W_LENGTH] = n
        head[_W_FRAME_ID] = frame_id
        head[_W_SEQ] = seq + 2
        self.published += 1
        return True

    def close(self) -> None:
        self._slot.close()


class LiveSlotReader:
    """The console's side: request() to say "I am watching", read() the latest JPEG."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._slot: _Mapped | None = None

    def _mapped(self) -> _Mapped | None:
        if self._slot is None:
            try:
                self._slot = _Mapped(self.path)
            except FileNotFoundError:
                return None
        return self._slot

    def request(self) -> None:
        """Mark the slot wanted now (the writer publishes for WANTED_S from now)."""
        slot = self._mapped()
        if slot is not None:
            slot.head[_W_REQUEST_NS] = time.monotonic_ns()

    def read(self) -> tuple[int, int, bytes] | None:
        """(seq, frame_id, jpeg) of the latest published frame; None when nothing was
        published yet, there is no file, or the writer stayed mid-write for
        READ_RETRY_S (it may have died there)."""
        slot = self._mapped()
        if slot is None:
            return None
        head = slot.head
        deadline = time.monotonic() + READ_RETRY_S
        while True:
            before = int(head[_W_SEQ])
            if before % 2 == 0:
                if before == 0:
                    return None
                n = min(int(head[_W_LENGTH]), slot.capacity)
                frame_id = int(head[_W_FRAME_ID])
                jpeg = slot.data[:n].tobytes()
                if int(head[_W_SEQ]) == before and (n == 0 or _whole_jpeg(jpeg)):
                    return (before // 2, frame_id, jpeg) if n else None
            if time.monotonic() >= deadline:
                return None
            time.sleep(_READ_PAUSE_S)

    @property
    def skipped_too_large(self) -> int:
        """JPEGs the writers of this slot skipped because they did not fit."""
        slot = self._mapped()
        return int(slot.head[_W_SKIPPED]) if slot is not None else 0

    def close(self) -> None:
        if self._slot is not None:
            self._slot.close()
            self._slot = None
