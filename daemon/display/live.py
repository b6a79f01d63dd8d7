"""The overlay's feed of the console's live view: its annotated frame, as JPEG, into the
camera's live slot (daemon.ipc.liveslot), only while a reader asked for it and at most
LIVE_MAX_FPS; a camera nobody watches costs one header read per frame."""

from __future__ import annotations

import logging
import time

import cv2
import numpy as np

from daemon.ipc.liveslot import LiveSlotWriter, slot_bytes_for

LIVE_MAX_FPS = 10.0

log = logging.getLogger(__name__)


class LivePublisher:
    """offer(image, frame_id) on every drawn frame; encodes only when it is due."""

    def __init__(self, path: str, quality: int, size: tuple[int, int]) -> None:
        self._writer = LiveSlotWriter(path, slot_bytes_for(*size))
        self._params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
        self._next_s = 0.0
        self.encode_failed = 0

    @property
    def too_large(self) -> int:
        """JPEGs skipped because they did not fit the slot."""
        return self._writer.skipped_too_large

    def offer(self, image: np.ndarray, frame_id: int) -> bool:
        """Publish `image` if a reader wants frames and the last one is 1 / LIVE_MAX_FPS
        old; True when published."""
        now = time.monotonic()
        if now < self._next_s or not self._writer.wanted():
            return False
        self._next_s = now + 1.0 / LIVE_MAX_FPS
        ok, buf = cv2.imencode(".jpg", image, self._params)
        if not ok:
            self.encode_failed += 1
            return False
        return self._writer.publish(buf.tobytes(), frame_id)

    def close(self) -> None:
        self._writer.close()
