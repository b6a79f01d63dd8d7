"""Frame sources: one camera's frames from any capture backend (daemon.capture).

FrameSource opens the backend that daemon.capture.table names for the source (video
files, RTSP/network streams, V4L2 devices, test patterns, image sequences...) and hands
out BGR frames already cropped and resized to the camera's configured size, each with
its capture time: time.monotonic_ns() for live sources, the frame's media time for
replays (daemon.stages.media_clock: the file's PTS, continuing across loops), so that
events from a file do not depend on the replay speed. Nothing here depends on the
backend:

- Replays (files, `test:<pattern>`, `images:<glob>`) are paced to their frame rate when
  cam.realtime, else as fast as read() is called; cam.loop starts them again at the end.
- Live sources (rtsp://..., other URLs, /dev/video*) never end: a failed or stalled read
  releases the capture and reopens it with capped exponential backoff. Backoff waits on
  the caller's stop event; a blocking open or read is bounded by the backend's use of
  the camera's open_timeout_s / read_timeout_s (FFmpeg enforces them for streams).
"""

from __future__ import annotations

import logging
import math
import threading
import time

import cv2
import numpy as np

from daemon.capture.protocol import (
    CaptureBackend,
    DamageCounter,
    OpenOptions,
    PresentationClock,
    SourceError,
)
from daemon.capture.table import DECODE_PRESETS, SOURCES, SourceTable
from daemon.config import CameraConfig
from daemon.stages.media_clock import MediaClock

log = logging.getLogger(__name__)

__all__ = [
    "Backoff",
    "FrameSource",
    "SourceError",
    "apply_crop",
    "crop_and_resize",
    "period_ns",
    "plausible_fps",
]
# RTSP streams often report their 90 kHz clock or nonsense as fps; such values mean "unknown".
MAX_PLAUSIBLE_FPS = 240.0
# Replay pacing that falls further behind than this resynchronises instead of bursting.
PACING_MAX_LAG_PERIODS = 2
# A live frame may arrive this share of a period early and still count as due (jitter).
LIVE_RATE_TOLERANCE = 0.25
# A failed read that took this share of read_timeout_s ended by the timeout: a stall.
STALL_TIMEOUT_SHARE = 0.9


def plausible_fps(value: float) -> float:
    """`value` if it is a believable frame rate, else 0.0 (unknown)."""
    return value if math.isfinite(value) and 0.0 < value <= MAX_PLAUSIBLE_FPS else 0.0


def period_ns(fps: float) -> int:
    """Frame period in nanoseconds; 0 for an unknown rate (no pacing)."""
    return int(1e9 / fps) if fps > 0 else 0


def apply_crop(frame: np.ndarray, crop: tuple[int, int, int, int]) -> np.ndarray:
    """The (x, y, w, h) region of `frame`, clipped to the frame (a view, not a copy)."""
    x, y, w, h = crop
    frame_h, frame_w = frame.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, frame_w), min(y + h, frame_h)
    if x1 <= x0 or y1 <= y0:
        raise SourceError(
            f"crop {crop} (x, y, w, h) lies outside the {frame_w}x{frame_h} "
            "source frame; fix the camera's crop"
        )
    return frame[y0:y1, x0:x1]


def crop_and_resize(
    frame: np.ndarray, crop: tuple[int, int, int, int] | None, width: int, height: int
) -> np.ndarray:
    """A new contiguous BGR uint8 (height, width, 3) image from any decoded frame."""
    if frame.ndim == 2:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    elif frame.shape[2] == 4:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    if crop is not None:
        frame = apply_crop(frame, crop)
    if frame.shape[:2] == (height, width):
        copied: np.ndarray = frame.copy()  # never hand out the decoder's (or a pattern's) buffer
        return copied
    shrinking = frame.shape[1] > width
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(frame, (width, height), interpolation=interpolation)


class Backoff:
    """Capped exponential delays: min_s, 2*min_s, ... up to max_s; reset() after success."""

    def __init__(self, min_s: float, max_s: float) -> None:
        self.min_s = min_s
        self.max_s = max(max_s, min_s)
        self._next_s = min_s

    def next_delay(self) -> float:
        """The delay to wait now; the one after it doubles (up to max_s)."""
        delay = self._next_s
        self._next_s = min(self._next_s * 2, self.max_s)
        return delay

    def reset(self) -> None:
        """Start again from min_s."""
        self._next_s = self.min_s


class FrameSource:
    """One camera's frames, cropped and resized to (cam.height, cam.width, 3) BGR uint8.

    Counters (plain ints, read by the worker for its stats block): frames_total (frames
    returned), reconnects_total (reopen attempts of a live source), stalls_total (reads
    that ran into read_timeout_s), frames_skipped_total (live frames dropped to honour
    cam.fps), frames_undecodable_total (damaged packets the backend skipped).
    native_fps is the rate the source reports (0.0 when unknown).

    The backend comes from `table` (daemon.capture.table.SOURCES unless a test passes
    its own); kind is the name of the source's kind there.
    """

    def __init__(
        self, cam: CameraConfig, source: str, table: SourceTable = SOURCES, first_media_ns: int = 0
    ) -> None:
        self.cam = cam
        self.source = source
        kind = table.kind_of(source)
        self.kind, self._live = kind.name, kind.live
        options = OpenOptions(
            open_timeout_s=cam.open_timeout_s,
            read_timeout_s=cam.read_timeout_s,
            fps=cam.fps,
            skip_frame=DECODE_PRESETS[cam.decode].skip_frame,
            # Scaled while decoding where the backend can: crop_and_resize then only copies.
            size=(cam.width, cam.height) if cam.crop is None else None,
        )
        try:
            self._backend: CaptureBackend = table.backend(source, options)
        except ValueError as exc:
            raise SourceError(f"camera {cam.name}: {exc}") from exc
        self._connected = False
        self.frames_total = 0
        self.reconnects_total = 0
        self.stalls_total = 0
        self.frames_skipped_total = 0
        self.native_fps = 0.0
        # The frame decoded by open() to prove the file, with its media time.
        self._pending: tuple[np.ndarray, int] | None = None
        self._media = MediaClock(first_media_ns)
        self._backoff = Backoff(cam.reconnect_backoff_min_s, cam.reconnect_backoff_max_s)
        self._period_ns = 0
        self._next_due_ns: int | None = None
        self._connected_s = 0.0  # when the live capture opened (monotonic)
        self._frames_since_open = 0  # frames the live capture gave since then
        self._opened = False
        self._closed = False
        self._never_set = threading.Event()

    @property
    def is_live(self) -> bool:
        """Network streams and devices: they never end and are reconnected when lost."""
        return self._live

    @property
    def frames_undecodable_total(self) -> int:
        """Packets the backend skipped because they did not decode (0 for backends that
        do not skip damaged data)."""
        backend = self._backend
        return backend.undecodable_total if isinstance(backend, DamageCounter) else 0

    @property
    def connected(self) -> bool:
        """Whether a capture is open right now (False while a live source is reconnecting)."""
        return self._connected

    def open(self) -> None:
        """Open the source. Files and patterns raise SourceError when unusable; a live
        source that cannot be reached now is only logged: read() keeps reconnecting."""
        self._opened = True
        if self.is_live:
            self._open_live()
        else:
            self._open_replayable()

    def read(self, stop: threading.Event | None = None) -> tuple[np.ndarray, int] | None:
        """(frame, capture time in ns: monotonic for live sources, media time for
        replays), or None at the end of a non-looping replay, after close(), or once
        `stop` is set."""
        stop = stop if stop is not None else self._never_set
        if not self._opened:
            self.open()
        if self._closed or stop.is_set():
            return None
        got = self._read_live(stop) if self.is_live else self._read_replayable(stop)
        if got is None:
            return None
        raw, captured_ns = got
        self.frames_total += 1
        frame = crop_and_resize(raw, self.cam.crop, self.cam.width, self.cam.height)
        return frame, captured_ns

    def close(self) -> None:
        """Release the capture; later reads return None."""
        self._closed = True
        self._release()

    def _release(self) -> None:
        if self._connected:
            self._backend.release()
            self._connected = False

    @property
    def last_media_ns(self) -> int | None:
        """A replay's latest media time (None for live sources and before a frame)."""
        return self._media.last_ns

    # Replayed sources: files, test patterns, image sequences.

    def _open_replayable(self) -> None:
        if not self._backend.open():  # replay backends raise with the reason instead
            raise SourceError(f"cannot open {self.source!r}; fix the camera's source")
        self.native_fps = plausible_fps(self._backend.fps)
        self._media.start_pass(self.native_fps or self.cam.fps)
        first = self._decode_replay()
        if first is None:
            self._backend.release()
            raise SourceError(
                f"video file {self.source!r} holds no decodable video frames "
                "(corrupt or truncated); check it with ffprobe"
            )
        self._connected, self._pending = True, first
        rate = self.cam.fps if self.cam.fps > 0 else self.native_fps
        self._period_ns = period_ns(rate) if self.cam.realtime else 0
        if self.cam.realtime and rate == 0:
            log.warning(
                "camera %s: %s reports no frame rate and fps is not set; reading unpaced",
                self.cam.name,
                self.source,
            )

    def _read_replayable(self, stop: threading.Event) -> tuple[np.ndarray, int] | None:
        got = self._next_replay_frame()
        if got is None or not self._pace(stop):
            return None
        return got

    def _decode_replay(self) -> tuple[np.ndarray, int] | None:
        """The backend's next frame with its media time (see daemon.stages.media_clock)."""
        frame = self._backend.read()
        if frame is None:
            return None
        backend = self._backend
        position = backend.position_s() if isinstance(backend, PresentationClock) else None
        return frame, self._media.stamp(position)

    def _next_replay_frame(self) -> tuple[np.ndarray, int] | None:
        if self._pending is not None:
            got, self._pending = self._pending, None
            return got
        if not self._connected:  # released at the end of a non-looping replay
            return None
        decoded = self._decode_replay()
        if decoded is not None:
            return decoded
        self._release()
        if not self.cam.loop:
            return None
        # Reopening is the portable rewind: seeking to frame 0 fails on some containers.
        self._open_replayable()
        rewound, self._pending = self._pending, None
        return rewound

    def _pace(self, stop: threading.Event) -> bool:
        """Wait until the next frame is due; False if `stop` was set meanwhile."""
        if self._period_ns == 0:
            return True
        now_ns = time.monotonic_ns()
        lag_ns = now_ns - (self._next_due_ns or now_ns)
        if self._next_due_ns is None or lag_ns > self._period_ns * PACING_MAX_LAG_PERIODS:
            self._next_due_ns = now_ns
        delay_ns = self._next_due_ns - now_ns
        if delay_ns > 0 and stop.wait(delay_ns / 1e9):
            return False
        self._next_due_ns += self._period_ns
        return True

    # Live sources: network streams and V4L2 devices.

    def _open_live(self) -> None:
        if not self._backend.open():
            log.warning(
                "camera %s: cannot open %s; retrying with backoff", self.cam.name, self.source
            )
            return
        self._connected = True
        self._connected_s, self._frames_since_open = time.monotonic(), 0
        self.native_fps = plausible_fps(self._backend.fps)
        self._period_ns = period_ns(self.cam.fps)
        log.info(
            "camera %s: opened %s (%.1f fps reported)", self.cam.name, self.source, self.native_fps
        )

    def _read_live(self, stop: threading.Event) -> tuple[np.ndarray, int] | None:
        while not stop.is_set():
            if not self._connected:
                self._reconnect(stop)
                continue
            started_s = time.monotonic()
            frame = self._backend.read()
            elapsed_s = time.monotonic() - started_s
            if frame is None:
                self._lose_stream(elapsed_s)
                continue
            if elapsed_s > self.cam.read_timeout_s:
                self.stalls_total += 1  # a device read that blocked past the timeout
            self._frames_since_open += 1
            self._backoff.reset()
            now_ns = time.monotonic_ns()
            if self._live_frame_due(now_ns):
                return frame, now_ns
            self.frames_skipped_total += 1
        return None

    def _lose_stream(self, read_s: float) -> None:
        """A read failed after `read_s`: log how long the stream had run, then release."""
        stalled = read_s >= self.cam.read_timeout_s * STALL_TIMEOUT_SHARE
        if stalled:
            self.stalls_total += 1
        what = (
            f"no frame within read_timeout_s ({self.cam.read_timeout_s:g} s)"
            if stalled
            else "stream lost"
        )
        log.warning(
            "camera %s: %s after %.1f s of streaming (%d frames); reconnecting",
            self.cam.name,
            what,
            time.monotonic() - self._connected_s,
            self._frames_since_open,
        )
        self._release()

    def _reconnect(self, stop: threading.Event) -> None:
        if stop.wait(self._backoff.next_delay()):
            return
        self.reconnects_total += 1
        self._open_live()

    def _live_frame_due(self, now_ns: int) -> bool:
        """Rate limit to cam.fps (when set) by dropping frames that come too early."""
        if self._period_ns == 0:
            return True
        due_ns = self._next_due_ns
        if due_ns is not None and now_ns < due_ns - int(self._period_ns * LIVE_RATE_TOLERANCE):
            return False
        on_schedule = due_ns is not None and now_ns - due_ns < self._period_ns
        self._next_due_ns = (
            due_ns if due_ns is not None and on_schedule else now_ns
        ) + self._period_ns
        return True
