"""Video files, decoded by FFmpeg through PyAV (daemon.capture.pyav; also bundled
`sample:` clips, which the config loader resolves to their file)."""

from __future__ import annotations

import os

import av
from av.container import InputContainer

from daemon.capture.protocol import SourceError
from daemon.capture.pyav import NO_DECODER, PyAVCapture


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


class FileCapture(PyAVCapture):
    """A video file; open() raises SourceError for a file that can never be decoded.
    position_s() is the PTS of the frame read last (PresentationClock)."""

    def _open_container(self) -> InputContainer:
        check_video_file(self.source)
        return av.open(self.source)

    def _unopenable(self, reason: str) -> bool:
        if reason == NO_DECODER:
            raise SourceError(f"cannot decode video file {self.source!r}: {reason}")
        raise SourceError(
            f"cannot decode video file {self.source!r}: not a video FFmpeg "
            f"can read ({reason}: corrupt, truncated or unsupported format); check it "
            "with ffprobe"
        )
