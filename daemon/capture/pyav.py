"""The part the FFmpeg backends (file.py, rtsp.py) share: decoding through PyAV (the `av`
package, FFmpeg's libraries bound for Python), which gives what OpenCV's reader does not:

- the decoder's skip_frame, from the camera's decode preset (daemon.capture.table);
- threading: replays decode frames and slices in parallel (thread_type "AUTO"); live
  sources slices only ("SLICE"), since frame threading holds several frames back in the
  decoder (5-20 by the core count) after their packets arrived, a delay that the
  capture-to-event latency, stamped when read() returns, would never show;
- only the video stream is read: every other stream (audio, data) is discarded in the
  demuxer, and a live read has one deadline, read_timeout_s, for its next video frame
  (PyAV's read timeout restarts at every packet, so audio alone would keep it alive);
- scaling in the same swscale pass that converts YUV to BGR: with OpenOptions.size set
  (a camera without crop) read() returns frames already at the camera's size, which
  FrameSource's crop_and_resize passes through (measured in README "Performance").

A backend on top of it names how to open its container (`_open_container`) and what an
unopenable source means (`_unopenable`: files raise SourceError, live sources are False).
A live backend sets `live`.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterator
from fractions import Fraction

import av
import numpy as np
from av.codec.context import CodecContext
from av.container import InputContainer
from av.packet import Packet
from av.stream import Discard
from av.video.frame import VideoFrame
from av.video.reformatter import VideoReformatter
from av.video.stream import VideoStream

from daemon.capture.protocol import OpenOptions

log = logging.getLogger(__name__)

# Packets in a row that fail to decode before the stream counts as lost (a replay: ended).
# Single damaged packets are skipped, as FFmpeg's own tools and OpenCV do.
MAX_BAD_PACKETS = 50
# Replays: frames and slices decoded in parallel (libavcodec picks the thread count from
# the cores). Live sources: slices only, no frame held back (see the module docstring).
REPLAY_THREAD_TYPE = "AUTO"
LIVE_THREAD_TYPE = "SLICE"
# A damaged packet is logged once, then at most one line per interval with the count
# skipped since (all of them are counted in actiond_lost_total{reason="undecodable"}).
DAMAGE_LOG_INTERVAL_S = 60.0
NO_DECODER = (
    "no decoder for its video codec in this FFmpeg (unknown or unsupported); re-encode "
    "it, or set the camera to send H.264, H.265 or MJPEG"
)


def frame_rate(rate: Fraction | None, guessed: Fraction | None) -> float:
    """The stream's average frame rate, else FFmpeg's guess; 0.0 when neither is known."""
    for value in (rate, guessed):
        if value is not None and value > 0:
            return float(value)
    return 0.0


def bgr_array(
    frame: VideoFrame, size: tuple[int, int] | None, reformatter: VideoReformatter
) -> np.ndarray:
    """`frame` as BGR uint8, scaled to size = (width, height) unless None: INTER_AREA's
    swscale counterpart when shrinking, bilinear when enlarging (as crop_and_resize).
    One reformatter per stream keeps its swscale context from frame to frame (a frame's
    own to_ndarray(width=...) builds a new one for every frame: ~1 ms more at 1080p)."""
    width, height = size if size is not None else (frame.width, frame.height)
    interpolation = "AREA" if frame.width > width else "BILINEAR"
    bgr = reformatter.reformat(
        frame, width=width, height=height, format="bgr24", interpolation=interpolation
    )
    return bgr.to_ndarray()


class PyAVCapture:
    """CaptureBackend over one PyAV input container at a time (see daemon.capture.protocol)."""

    live = False  # a live source: slice threading, one deadline per read

    def __init__(self, source: str, options: OpenOptions) -> None:
        self.source = source
        self.options = options
        self._container: InputContainer | None = None
        self._packets: Iterator[Packet[VideoStream]] | None = None
        self._decoded: deque[VideoFrame] = deque()
        self._bad_packets = 0
        self.undecodable_total = 0  # DamageCounter: packets skipped, across reopens
        self._start_pts = 0
        self._time_base: Fraction | None = None
        self._position_s: float | None = None
        self._fps = 0.0
        self._reformatter = VideoReformatter()
        self._damage_logged_at: float | None = None
        self._damage_unlogged = 0

    def _open_container(self) -> InputContainer:
        raise NotImplementedError

    def _unopenable(self, reason: str) -> bool:
        """What an open that failed for `reason` means: False (retry) or SourceError."""
        raise NotImplementedError

    def open(self) -> bool:
        self.release()
        try:
            container = self._open_container()
        except av.FFmpegError as exc:
            return self._unopenable(exc.strerror or str(exc))
        if not container.streams.video:
            container.close()
            return self._unopenable("it holds no video stream")
        stream = container.streams.video[0]
        codec_context: CodecContext | None = stream.codec_context  # None: no decoder
        if codec_context is None:
            container.close()
            return self._unopenable(NO_DECODER)
        for other in container.streams:
            if other.index != stream.index:
                other.discard = Discard.all  # the demuxer drops its packets itself
        stream.thread_type = LIVE_THREAD_TYPE if self.live else REPLAY_THREAD_TYPE
        codec_context.skip_frame = self.options.skip_frame
        self._container, self._packets = container, container.demux(stream)
        self._start_pts, self._time_base = stream.start_time or 0, stream.time_base
        self._fps = frame_rate(stream.average_rate, stream.guessed_rate)
        self._bad_packets = 0
        return True

    def read(self) -> np.ndarray | None:
        frame = self._next_frame()
        if frame is None:
            return None
        pts = frame.pts if frame.pts is not None else frame.dts
        base = self._time_base
        self._position_s = (
            None if pts is None or base is None else float((pts - self._start_pts) * base)
        )
        return bgr_array(frame, self.options.size, self._reformatter)

    def _next_frame(self) -> VideoFrame | None:
        """The next decoded frame; None at the end, on a lost stream or a read timeout
        (live: no video frame within read_timeout_s, whatever else arrived)."""
        deadline = time.monotonic() + self.options.read_timeout_s if self.live else None
        while not self._decoded:
            if self._packets is None:
                return None
            if deadline is not None and time.monotonic() > deadline:
                log.info(
                    "%s: reading stopped: no video frame within %g s",
                    self.source,
                    self.options.read_timeout_s,
                )
                self._packets = None
                return None
            try:
                packet = next(self._packets, None)
            except av.FFmpegError as exc:  # a read error or timeout: the stream is lost
                log.info("%s: reading stopped: %s", self.source, exc.strerror or exc)
                self._packets = None
                return None
            if packet is None:  # demux ended, after the packets that flush the decoder
                self._packets = None
                return None
            self._decode(packet)
        return self._decoded.popleft()

    def _decode(self, packet: Packet[VideoStream]) -> None:
        """Queue the frames `packet` completes; skip a packet that does not decode."""
        try:
            self._decoded.extend(
                frame for frame in packet.decode() if isinstance(frame, VideoFrame)
            )
        except av.FFmpegError as exc:  # mostly InvalidDataError: damaged data
            self._bad_packets += 1
            self.undecodable_total += 1
            self._log_damage(exc.strerror or str(exc))
            if self._bad_packets >= MAX_BAD_PACKETS:
                log.warning("%s: %d packets in a row do not decode", self.source, MAX_BAD_PACKETS)
                self._packets = None
            return
        self._bad_packets = 0

    def _log_damage(self, reason: str) -> None:
        """Log a skipped packet: the first, then one line per DAMAGE_LOG_INTERVAL_S."""
        now = time.monotonic()
        logged_at = self._damage_logged_at
        if logged_at is not None and now - logged_at < DAMAGE_LOG_INTERVAL_S:
            self._damage_unlogged += 1
            return
        since = (
            f" ({self._damage_unlogged} more since the last line)" if logged_at is not None else ""
        )
        log.info("%s: skipped a packet that does not decode: %s%s", self.source, reason, since)
        self._damage_logged_at, self._damage_unlogged = now, 0

    def release(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container, self._packets = None, None
        self._decoded.clear()
        self._position_s = None

    @property
    def fps(self) -> float:
        return self._fps if self._container is not None else 0.0

    def position_s(self) -> float | None:
        """The presentation time of the frame read last, from the stream's start."""
        return self._position_s
