"""The part every cv2.VideoCapture-based backend shares: read, release, reported fps.
(V4L2 devices, v4l2.py; files and URLs are decoded through PyAV, pyav.py.)

A backend on top of it names how to open its capture (`_new_capture`); a capture that
does not open is False (FrameSource retries a live source with backoff).
"""

from __future__ import annotations

import cv2
import numpy as np

from daemon.capture.protocol import OpenOptions


class OpenCVCapture:
    """CaptureBackend over one cv2.VideoCapture at a time (see daemon.capture.protocol)."""

    def __init__(self, source: str, options: OpenOptions) -> None:
        self.source = source
        self.options = options
        self._cap: cv2.VideoCapture | None = None

    def _new_capture(self) -> cv2.VideoCapture:
        raise NotImplementedError

    def open(self) -> bool:
        self.release()
        cap = self._new_capture()
        if not cap.isOpened():
            cap.release()
            return False
        self._cap = cap
        return True

    def read(self) -> np.ndarray | None:
        if self._cap is None:
            return None
        ok, frame = self._cap.read()
        return frame if ok and frame is not None else None

    def release(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    @property
    def fps(self) -> float:
        return float(self._cap.get(cv2.CAP_PROP_FPS)) if self._cap is not None else 0.0
