"""V4L2 devices (/dev/videoN: USB and CSI cameras). A device read blocks until a frame
comes; FrameSource counts one that blocked past read_timeout_s as a stall."""

from __future__ import annotations

import cv2

from daemon.capture.opencv import OpenCVCapture


class DeviceCapture(OpenCVCapture):
    """A V4L2 device, which may be plugged in later (open() is then False and retried)."""

    def _new_capture(self) -> cv2.VideoCapture:
        return cv2.VideoCapture(self.source, cv2.CAP_V4L2)
