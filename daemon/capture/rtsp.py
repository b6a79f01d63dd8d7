"""Network streams: rtsp://, rtsps:// and any other URL FFmpeg opens (http://, udp://...).

The timeouts only take effect when passed at open time: `cap.set` afterwards does
nothing, and FFmpeg's default read timeout is 30 s.
"""

from __future__ import annotations

import logging
import os

import cv2

from daemon.capture.opencv import FFMPEG_OPTIONS_ENV, OpenCVCapture

log = logging.getLogger(__name__)

RTSP_SCHEMES = ("rtsp://", "rtsps://")
RTSP_TCP_OPTION = "rtsp_transport;tcp"


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


class StreamCapture(OpenCVCapture):
    """A URL opened by FFmpeg with the camera's open and read timeouts."""

    def _new_capture(self) -> cv2.VideoCapture:
        if self.source.startswith(RTSP_SCHEMES):
            # OpenCV reads this variable on every open, so setting it here is enough.
            os.environ[FFMPEG_OPTIONS_ENV] = ffmpeg_capture_options(
                os.environ.get(FFMPEG_OPTIONS_ENV)
            )
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(self.options.open_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(self.options.read_timeout_s * 1000),
        ]
        return cv2.VideoCapture(self.source, cv2.CAP_FFMPEG, params)
