"""The latest frame of an MJPEG view, encoded at most once, and its counters.

Shared by the HTTP server's client threads (daemon.display.mjpeg) and the overlay stage
that publishes into it; every method is thread-safe.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

import cv2
import numpy as np

from daemon.config import JPEG_QUALITY_RANGE, DisplayConfig

JPEG_QUALITY_MIN, JPEG_QUALITY_MAX = JPEG_QUALITY_RANGE  # the config's rule (config.schema)
DEFAULT_MAX_CLIENTS = DisplayConfig().mjpeg_max_clients


@dataclass
class MjpegCounters:
    """Counters for metrics; ``MjpegServer.counters`` hands out consistent copies."""

    clients: int = 0  # stream clients connected now
    clients_total: int = 0  # stream clients ever connected
    clients_refused: int = 0  # stream clients turned away: max_clients were connected
    frames_published: int = 0  # frames handed to publish()
    frames_encoded: int = 0  # JPEG encodes (at most one per published frame)
    frames_served: int = 0  # JPEGs sent: stream parts plus snapshots
    frames_skipped: int = 0  # frames stream clients missed by being slower than publish


class FrameHub:
    """The latest frame, encoded at most once, and the counters for metrics.

    ``publish`` encodes right away only while a stream client is connected; otherwise it
    keeps a copy of the raw frame and the first snapshot request encodes it, so an unwatched
    server costs a memcpy per frame instead of a JPEG encode.
    """

    def __init__(self, jpeg_quality: int, max_clients: int = DEFAULT_MAX_CLIENTS) -> None:
        self.max_clients = max_clients
        if not JPEG_QUALITY_MIN <= jpeg_quality <= JPEG_QUALITY_MAX:
            raise ValueError(
                f"display.jpeg_quality = {jpeg_quality}: must be between "
                f"{JPEG_QUALITY_MIN} and {JPEG_QUALITY_MAX}"
            )
        self._params = [int(cv2.IMWRITE_JPEG_QUALITY), jpeg_quality]
        self._cond = threading.Condition()
        self._lazy_lock = threading.Lock()
        self._seq = 0
        self._jpeg: bytes | None = None
        self._raw: np.ndarray | None = None
        self._closed = False
        self._counters = MjpegCounters()

    def publish(self, frame: np.ndarray) -> None:
        """Make ``frame`` the latest one and wake every waiting client."""
        _check_frame(frame)
        with self._cond:
            watched = self._counters.clients > 0
        # The caller's buffer may be a ring slot that is reused once we return: copy it.
        jpeg = self._encode(frame) if watched else None
        raw = None if watched else frame.copy()
        with self._cond:
            self._seq += 1
            self._jpeg, self._raw = jpeg, raw
            self._counters.frames_published += 1
            self._cond.notify_all()

    def latest(self) -> tuple[int, bytes] | None:
        """The newest frame as (sequence number, JPEG bytes), or None before the first."""
        with self._cond:
            seq, jpeg = self._seq, self._jpeg
        if jpeg is not None or seq == 0:
            return None if jpeg is None else (seq, jpeg)
        # Serialise lazy encodes so that clients arriving together encode a frame only once.
        with self._lazy_lock:
            with self._cond:
                seq, jpeg, raw = self._seq, self._jpeg, self._raw
            if jpeg is None and raw is not None:
                jpeg = self._encode(raw)
                with self._cond:
                    if self._seq == seq:
                        self._jpeg, self._raw = jpeg, None
        return None if jpeg is None else (seq, jpeg)

    def wait_newer(self, seq: int, timeout_s: float) -> tuple[int, bytes] | None:
        """Wait up to ``timeout_s`` for a frame newer than ``seq``; None on timeout/close."""
        with self._cond:
            fresh = self._cond.wait_for(lambda: self._closed or self._seq > seq, timeout_s)
            if not fresh or self._closed:
                return None
        return self.latest()

    def _encode(self, frame: np.ndarray) -> bytes:
        ok, buf = cv2.imencode(".jpg", frame, self._params)
        if not ok:
            raise ValueError(f"cv2.imencode could not encode a frame of shape {frame.shape}")
        with self._cond:
            self._counters.frames_encoded += 1
        return buf.tobytes()

    def client_joined(self) -> bool:
        """Count a stream client in (publish encodes eagerly while any is connected);
        False, and counted as refused, when max_clients are connected already."""
        with self._cond:
            if self._counters.clients >= self.max_clients:
                self._counters.clients_refused += 1
                return False
            self._counters.clients += 1
            self._counters.clients_total += 1
            return True

    def client_left(self) -> None:
        """Count a stream client out."""
        with self._cond:
            self._counters.clients -= 1

    def count_served(self, skipped: int) -> None:
        """Record one JPEG sent to a client after it missed ``skipped`` frames."""
        with self._cond:
            self._counters.frames_served += 1
            self._counters.frames_skipped += skipped

    def close(self) -> None:
        """Wake every waiting client so that it ends."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        """True once close() ran."""
        with self._cond:
            return self._closed

    def counters(self) -> MjpegCounters:
        """A consistent copy of the counters."""
        with self._cond:
            return replace(self._counters)


def _check_frame(frame: np.ndarray) -> None:
    channels = frame.shape[2] if frame.ndim == 3 else 1
    if frame.dtype != np.uint8 or frame.ndim not in (2, 3) or channels not in (1, 3, 4):
        raise ValueError(
            f"MJPEG frames must be uint8 HxW or HxWx3 (BGR); got {frame.dtype} {frame.shape}"
        )
