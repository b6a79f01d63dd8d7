"""One event clip's WebM file: VP8 encoded by libvpx in real-time mode through PyAV.

VP8 in WebM plays in every current browser. OpenCV's VideoWriter wrote the same format
but passed libvpx no options, so it ran in its "good" quality mode at about 17-23 ms of
CPU per 640 x 360 frame; real-time mode at its fastest speed takes about 4 ms at a
PSNR 0.3-0.5 dB lower and a quarter fewer bytes (tools/measure_clip_encoding.py).

Frames are given as BGR arrays, each with the number of slots of the clip's frame rate
it stands for (a camera slower than the clip, or a gap in the stream): it is encoded
once and its timestamp says how long it stays on screen, so a repeated frame costs
nothing. A keyframe starts every KEYFRAME_EVERY_S of the clip's time (by its slots, not
by the frames encoded, which are fewer for a slow camera). Errors are raised as
WRITE_ERRORS for the caller to fail that one clip.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import av.error
import cv2
import numpy as np
from av.container import OutputContainer
from av.video.frame import PictureType
from av.video.stream import VideoStream

CODEC = "libvpx"  # VP8; "libvpx-vp9" would cost several times more per frame
# libvpx's speed: negative is a fixed speed, and -16 its fastest. A positive value lets
# libvpx pick the speed by how long frames take to encode (so by the box's load).
VP8_CPU_USED = -16
VP8_BITRATE_BPS = 600_000  # a target; the bundled room clip takes 380-580 kbit/s
KEYFRAME_EVERY_S = 5.0  # how far a browser decodes from to seek; more keyframes cost bytes
ENCODER_THREADS = 1  # one per clip thread: more threads cost more CPU on a small box
FPS_DENOMINATOR_MAX = 1001  # the clip's frame rate as a fraction (29.97 = 30000/1001)
# What writing a clip can raise: FFmpeg's errors, the file's, and a frame OpenCV or PyAV
# cannot take (a shape or type other than BGR uint8).
WRITE_ERRORS = (av.error.FFmpegError, OSError, cv2.error, ValueError)


class WebmWriter:
    """Open a clip at `path` (its frames `size` (width, height) at `fps`), write(), close()."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]) -> None:
        rate = Fraction(fps).limit_denominator(FPS_DENOMINATOR_MAX)
        self._size = size
        self._container: OutputContainer = av.open(str(path), "w", format="webm")
        try:
            # PyAV types only the codec names it lists; libvpx is a video encoder.
            self._stream = cast(VideoStream, self._container.add_stream(CODEC, rate=rate))
            codec = self._stream.codec_context
            codec.width, codec.height, codec.pix_fmt = size[0], size[1], "yuv420p"
            codec.bit_rate = VP8_BITRATE_BPS
            # libvpx's own keyframes count encoded frames; write() forces one every
            # KEYFRAME_EVERY_S by slots, always first, so libvpx never needs to.
            self._keyframe_slots = max(1, round(KEYFRAME_EVERY_S * fps))
            codec.gop_size = self._keyframe_slots
            codec.thread_count = ENCODER_THREADS
            codec.options = {"deadline": "realtime", "cpu-used": str(VP8_CPU_USED)}
        except WRITE_ERRORS:
            self._container.close()
            raise
        self._last: av.VideoFrame | None = None
        self._last_pts = -1
        self._next_keyframe_slot = 0
        self.slots = 0  # the clip's length so far, in slots of its frame rate

    def write(self, image: np.ndarray, slots: int = 1) -> None:
        """Add `image` (BGR uint8) standing for `slots` slots of the frame rate."""
        if slots < 1:
            return
        frame = _to_frame(image, self._size)
        self._last_pts = self.slots
        self._encode(frame, self.slots)
        self._last = frame
        self.slots += slots

    def _encode(self, frame: av.VideoFrame, slot: int) -> None:
        """Encode `frame` at `slot`: a keyframe if it is the first at or after the next
        multiple of KEYFRAME_EVERY_S."""
        key = slot >= self._next_keyframe_slot
        if key:
            self._next_keyframe_slot = (slot // self._keyframe_slots + 1) * self._keyframe_slots
        frame.pts = slot
        frame.pict_type = PictureType.I if key else PictureType.NONE
        self._container.mux(self._stream.encode(frame))

    def close(self) -> None:
        """Flush the encoder and finish the file. A last frame standing for several
        slots is written again at its last one, so the clip lasts them all."""
        try:
            if self._last is not None and self._last_pts < self.slots - 1:
                self._encode(self._last, self.slots - 1)
            self._container.mux(self._stream.encode(None))
        finally:
            self._last = None
            self._container.close()


def _to_frame(image: np.ndarray, size: tuple[int, int]) -> av.VideoFrame:
    """The BGR image as a yuv420p frame of `size`; OpenCV's conversion costs a quarter of
    swscale's (0.4 vs 1.7 ms at 640 x 360), and takes even sides only."""
    if (image.shape[1], image.shape[0]) != size:  # every frame of a clip has one size
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    if size[0] % 2 or size[1] % 2:
        return av.VideoFrame.from_ndarray(image, format="bgr24")
    yuv = np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420), dtype=np.uint8)
    return av.VideoFrame.from_ndarray(yuv, format="yuv420p")
