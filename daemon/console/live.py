"""Each camera's live image for the console: the overlay's latest annotated JPEG from the
camera's live slot (daemon/ipc/liveslot.py), which the overlay fills only while a reader
asked within the last few seconds. A camera without a slot file, or whose slot has no
frame yet, has no image: the page shows "connecting" instead.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

from daemon.ipc.liveslot import LiveSlotError, LiveSlotReader

STREAM_POLL_S = 0.05  # how often a stream looks for a new frame
MAX_STREAM_FPS = 15.0  # at most this many frames per second per viewer


class LiveImages:
    """The live slot readers, one per camera (thread-safe; opened on first use)."""

    def __init__(self, slots: Mapping[str, Path]) -> None:
        self._slots = dict(slots)
        self._readers: dict[str, tuple[LiveSlotReader, int]] = {}  # camera -> (reader, inode)
        self._lock = threading.Lock()

    def knows(self, camera: str) -> bool:
        return camera in self._slots

    def latest(self, camera: str) -> tuple[int, bytes] | None:
        """(seq, jpeg) of the camera's newest frame, asking the overlay for more; None
        when it has none (yet)."""
        path = self._slots.get(camera)
        if path is None:
            return None
        try:
            inode = path.stat().st_ino
        except OSError:
            return None  # no slot yet: the overlay has not started
        with self._lock:
            reader, opened = self._readers.get(camera, (None, 0))
            if reader is not None and opened != inode:  # a new slot (a rebuilt graph)
                reader.close()
                reader = None
            if reader is None:
                reader = LiveSlotReader(path)
                self._readers[camera] = (reader, inode)
            try:
                reader.request()
                frame = reader.read()
            except (LiveSlotError, OSError, ValueError):
                reader.close()
                del self._readers[camera]
                return None
        return None if frame is None else (frame[0], frame[2])

    def close(self) -> None:
        with self._lock:
            for reader, _ in self._readers.values():
                reader.close()
            self._readers.clear()
