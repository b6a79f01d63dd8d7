"""Video files, decoded by FFmpeg through OpenCV (also bundled `sample:` clips, which the
config loader resolves to their file)."""

from __future__ import annotations

import os

import cv2

from daemon.capture.opencv import OpenCVCapture
from daemon.capture.protocol import SourceError


def check_video_file(path: str) -> None:
    """Raise SourceError saying why `path` cannot be a video file (the file may change
    between config load and a looped replay's reopen, so this runs on every open)."""
    if not os.path.exists(path):
        raise SourceError(f"video file {path!r} does not exist; fix the camera's source")
    if os.path.isdir(path):
        raise SourceError(f"{path!r} is a directory, not a video file; name one file in it")
    if not os.path.isfile(path):
        raise SourceError(f"{path!r} is not a regular file; the source must be a video file")
    if not os.access(path, os.R_OK):
        raise SourceError(f"video file {path!r} is not readable by this user; fix permissions")


class FileCapture(OpenCVCapture):
    """A video file; open() raises SourceError for a file that can never be decoded."""

    def _new_capture(self) -> cv2.VideoCapture:
        check_video_file(self.source)
        try:
            return cv2.VideoCapture(self.source, cv2.CAP_FFMPEG)
        except cv2.error as exc:
            raise SourceError(f"cannot open video file {self.source!r}: {exc}") from exc

    def open(self) -> bool:
        if not super().open():
            raise SourceError(
                f"cannot decode video file {self.source!r}: not a video FFmpeg "
                "can read (corrupt, truncated or unsupported format); check it "
                "with ffprobe"
            )
        return True

    def position_s(self) -> float | None:
        """The PTS of the frame read last (FFmpeg's CAP_PROP_POS_MSEC after a read)."""
        if self._cap is None:
            return None
        msec = float(self._cap.get(cv2.CAP_PROP_POS_MSEC))
        return msec / 1000.0 if msec >= 0.0 else None
