"""What every capture backend is: the CaptureBackend protocol and its open options.

A backend decodes one source string into raw frames (any size, BGR / grey / BGRA
uint8). Everything else is the source stage's FrameSource and the same for every
backend: the first frame that proves a replay, crop and resize, pacing to fps, looping,
and for live backends reconnecting with backoff and counting stalls and reconnects.

Whether a backend is live (never ends; reconnected when lost) or replays, and whether a
replay reaches an end, are facts of its entry in daemon.capture.table: they are known
without opening the source or importing cv2 (the config loader and the overlay ask).

This module imports nothing of ours, so backends and tests can implement it freely.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np

# FFmpeg's AVCodecContext.skip_frame, by the names PyAV gives its values.
SkipFrame = Literal["NONE", "DEFAULT", "NONREF", "BIDIR", "NONINTRA", "NONKEY", "ALL"]


class SourceError(RuntimeError):
    """A source that cannot be used: missing, unreadable or undecodable file, bad pattern
    or crop. The message names the source and what to fix."""


@dataclass(frozen=True)
class OpenOptions:
    """What a backend may need from the camera's config when it opens.

    open_timeout_s / read_timeout_s bound a network open and read (they only take
    effect when passed at open time); fps is the camera's configured rate (0 = the
    source's own), which generated sources use as theirs. skip_frame: the FFmpeg
    decoder's skip_frame ("DEFAULT", "NONREF", ...) of the camera's decode preset
    (daemon.capture.table.DECODE_PRESETS), for FFmpeg backends. size: (width, height) a
    backend may scale its frames to while decoding (the camera's size when it has no
    crop); None, or a backend that does not scale, gives raw frames (FrameSource then
    resizes them).
    """

    open_timeout_s: float = 10.0
    read_timeout_s: float = 5.0
    fps: float = 0.0
    skip_frame: SkipFrame = "DEFAULT"
    size: tuple[int, int] | None = None


class CaptureBackend(Protocol):
    """One source, opened and reopened by FrameSource.

    The constructor takes (source, OpenOptions) and does no I/O. open() may be called
    again after release() (a rewind for replays, a reconnect for live sources).
    """

    def open(self) -> bool:
        """Open the source. True when it is open. A replay that can never work raises
        SourceError naming the source and the fix; a live source that cannot be reached
        now returns False (FrameSource retries with backoff)."""
        ...

    def read(self) -> np.ndarray | None:
        """The next raw frame, or None at the end of a replay or on a lost stream. A
        live read blocks at most about read_timeout_s."""
        ...

    def release(self) -> None:
        """Close the source; harmless when not open."""
        ...

    @property
    def fps(self) -> float:
        """The frame rate the open source reports; 0.0 when unknown or not open."""
        ...


@runtime_checkable
class PresentationClock(Protocol):
    """A backend that knows when each frame is meant to be shown (a video file's PTS).

    FrameSource stamps a replay's frames with this media time, so everything downstream
    runs on the file's own clock, whatever the replay speed. Backends without it (image
    sequences, patterns) get frame index / frame rate instead.
    """

    def position_s(self) -> float | None:
        """Presentation time in seconds of the frame read() returned last; None when
        the container does not say."""
        ...


@runtime_checkable
class DamageCounter(Protocol):
    """A backend that skips damaged data (a packet that does not decode) and goes on.

    FrameSource reports the count; the source stage exports it as lost frames.
    """

    @property
    def undecodable_total(self) -> int:
        """Packets skipped because they did not decode, since the backend was made
        (across reopens)."""
        ...
