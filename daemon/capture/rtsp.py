"""Network streams: rtsp://, rtsps:// and any other URL FFmpeg opens (http://, udp://...),
decoded through PyAV (daemon.capture.pyav).

The camera's open_timeout_s bounds the open, and again the probing of the streams that
follows it (each its own budget, so a stream may take up to twice open_timeout_s before
its first frame); read_timeout_s each read (PyAV's interrupt callback for a blocked
read, and one deadline for the next video frame; FFmpeg's own default would wait 30 s or
for ever).

FFmpeg options for the stream's input (protocol and demuxer options, such as
rtsp_transport, buffer_size or fflags) come from OPENCV_FFMPEG_CAPTURE_OPTIONS, as
"key;value|key;value" (the variable's name and format as when OpenCV read it). They apply
to streams only, not to video files; keys that only OpenCV read (OPENCV_ONLY_KEYS) are
warned about once and ignored, as FFmpeg ignores keys it does not know.
"""

from __future__ import annotations

import functools
import logging
import os

import av
from av.container import InputContainer

from daemon.capture.pyav import PyAVCapture

log = logging.getLogger(__name__)

FFMPEG_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
RTSP_SCHEMES = ("rtsp://", "rtsps://")
RTSP_TCP_OPTION = "rtsp_transport;tcp"
# Keys OpenCV's FFmpeg reader took from the variable itself, never passed to FFmpeg.
OPENCV_ONLY_KEYS = ("avdiscard", "video_codec")


def ffmpeg_capture_options(current: str | None) -> str:
    """OPENCV_FFMPEG_CAPTURE_OPTIONS with RTSP over TCP unless a transport is chosen.

    FFmpeg defaults to UDP, which loses packets (smeared frames) on busy links and is
    blocked by most NATs; options set for other reasons must not silently drop TCP.
    """
    if not current:
        return RTSP_TCP_OPTION
    keys = {item.split(";", 1)[0].strip() for item in current.split("|") if item.strip()}
    if "rtsp_transport" in keys:
        if RTSP_TCP_OPTION not in current:
            log.warning(
                "%s=%r chooses a non-TCP RTSP transport; expect packet loss",
                FFMPEG_OPTIONS_ENV,
                current,
            )
        return current
    return f"{current}|{RTSP_TCP_OPTION}"


def options_dict(entries: str) -> dict[str, str]:
    """FFmpeg options from `entries`, "key;value|key;value" (a key alone sets "")."""
    pairs = (item.split(";", 1) for item in entries.split("|") if item.strip())
    return {pair[0].strip(): pair[1].strip() if len(pair) > 1 else "" for pair in pairs}


@functools.cache  # once per key and process: every camera's every reopen comes here
def warn_opencv_only_key(key: str) -> None:
    """Warn that `key`, an option only OpenCV's reader understood, is ignored."""
    log.warning(
        "%s: %r was an option of OpenCV's reader, not of FFmpeg: ignored; remove it "
        "(the camera's decode setting chooses which frames are decoded)",
        FFMPEG_OPTIONS_ENV,
        key,
    )


def stream_options(source: str, current: str | None) -> dict[str, str]:
    """The input options for `source`: the operator's, plus RTSP over TCP for rtsp(s)://."""
    if source.startswith(RTSP_SCHEMES):
        options = options_dict(ffmpeg_capture_options(current))
    else:
        options = options_dict(current or "")
    for key in sorted(set(options) & set(OPENCV_ONLY_KEYS)):
        warn_opencv_only_key(key)
    return {key: value for key, value in options.items() if key not in OPENCV_ONLY_KEYS}


class StreamCapture(PyAVCapture):
    """A URL opened by FFmpeg with the camera's open and read timeouts; a stream that
    cannot be reached now is False (FrameSource retries with backoff)."""

    live = True

    def _open_container(self) -> InputContainer:
        return av.open(
            self.source,
            container_options=stream_options(self.source, os.environ.get(FFMPEG_OPTIONS_ENV)),
            timeout=(self.options.open_timeout_s, self.options.read_timeout_s),
        )

    def _unopenable(self, reason: str) -> bool:
        log.info("cannot open %s: %s", self.source, reason)
        return False
