"""The part every cv2.VideoCapture-based backend shares: read, release, reported fps.

A backend on top of it names how to open its capture (`_new_capture`) and, when needed,
what an unopenable source means (file.py raises; live backends report False).
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from daemon.capture.protocol import OpenOptions

FFMPEG_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"


def merged_options(current: str | None, entries: str) -> str:
    """OPENCV_FFMPEG_CAPTURE_OPTIONS `current` plus the "key;value" `entries` whose key it
    does not set already (what an operator set in the environment wins)."""
    items = [item for item in (current or "").split("|") if item.strip()]
    keys = {item.split(";", 1)[0].strip() for item in items}
    for entry in entries.split("|"):
        if entry.strip() and entry.split(";", 1)[0].strip() not in keys:
            items.append(entry)
    return "|".join(items)


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
        if self.options.ffmpeg_options:
            # OpenCV reads the variable on every open; each camera's source is a process.
            os.environ[FFMPEG_OPTIONS_ENV] = merged_options(
                os.environ.get(FFMPEG_OPTIONS_ENV), self.options.ffmpeg_options
            )
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
