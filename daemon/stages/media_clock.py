"""Media time of a replay: the capture timestamps a file's frames carry.

A replayed file's frames carry their media time (the time into the stream at which the
frame is meant to be shown) in the ring's capture-timestamp field, not the moment they
were decoded. Every window, hysteresis, dwell and cooldown downstream runs on those
timestamps, so a file gives the same events paced (realtime = true) or read as fast as
the pipeline goes (realtime = false). Live sources keep time.monotonic_ns().

The media time is the backend's presentation time (a video file's PTS) when it has one,
else frame index / frame rate. It never goes backwards: a looped replay continues after
the last frame of the previous pass (one frame period later), and a PTS that repeats or
steps back (a broken container) is replaced by the previous time plus one period.
"""

from __future__ import annotations

import math

NS_PER_S = 1_000_000_000
# A replay with no frame rate of its own and no configured fps: frame index / this rate.
FALLBACK_MEDIA_FPS = 25.0


class MediaClock:
    """Stamps one replay's frames with media time in nanoseconds, pass after pass.

    `first_ns` is where the first pass starts (0 for a fresh stream; a restarted
    source worker continues after the time it had published last).
    """

    def __init__(self, first_ns: int = 0) -> None:
        self._pass_start_ns = first_ns
        self._period_ns = int(NS_PER_S / FALLBACK_MEDIA_FPS)
        self._index = 0
        self._last_ns: int | None = None

    @property
    def last_ns(self) -> int | None:
        """The media time given to the latest frame, None before the first."""
        return self._last_ns

    def start_pass(self, fps: float) -> None:
        """The replay was (re)opened at its beginning; `fps` is its frame rate (0 when
        unknown). A later pass starts one period after the last frame of this one."""
        if self._last_ns is not None:
            self._pass_start_ns = self._last_ns + self._period_ns
        rate = fps if math.isfinite(fps) and fps > 0 else FALLBACK_MEDIA_FPS
        self._period_ns = max(1, int(NS_PER_S / rate))
        self._index = 0

    def stamp(self, position_s: float | None) -> int:
        """The media time of the next frame, from its presentation time in seconds
        into this pass (None when the backend does not know it)."""
        if position_s is not None and math.isfinite(position_s) and position_s >= 0.0:
            t_ns = self._pass_start_ns + round(position_s * NS_PER_S)
        else:
            t_ns = self._pass_start_ns + self._index * self._period_ns
        if self._last_ns is not None and t_ns <= self._last_ns:
            t_ns = self._last_ns + self._period_ns
        self._index += 1
        self._last_ns = t_ns
        return t_ns
