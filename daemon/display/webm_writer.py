"""Opening OpenCV's VP8 WebM writer without the notice OpenCV prints at every open.

OpenCV's FFmpeg backend checks the fourcc against the container's table of tags, and
WebM's muxer has none, so every open prints `OpenCV: FFMPEG: tag 0x30385056/'VP80' is
not supported with codec id 139 and format 'webm / WebM'` with fprintf on file
descriptor 2 (whatever cv2's log level), then writes VP8 all the same. No fourcc avoids
it for .webm (Matroska takes 'VP80' silently, but a .mkv is not WebM to browsers).

So the open runs with descriptor 2 pointed at a temporary file, and what lands there,
that one line left out, is copied to stderr afterwards: OpenCV's other messages, and a
line another thread logs meanwhile, come out a few milliseconds late, never lost.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from pathlib import Path

import cv2

FOURCC = "VP80"
STDERR_FD = 2
NOTICE = re.compile(
    rb"^OpenCV: FFMPEG: tag 0x[0-9a-f]{8}/'VP80' is not supported with codec id \d+ "
    rb"and format 'webm / WebM'\r?\n",
    re.MULTILINE,
)
# One redirection at a time per process (each overlay worker has one encoder thread).
_REDIRECT = threading.Lock()


def open_vp8_writer(path: Path, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
    """cv2.VideoWriter for a VP8 WebM file at `path` (check isOpened())."""
    with _REDIRECT:
        try:
            caught = tempfile.TemporaryFile()
        except OSError:  # no temporary directory: open it with the notice
            return _open(path, fps, size)
        with caught:
            writer = _open_redirected(caught.fileno(), path, fps, size)
            caught.seek(0)
            rest = NOTICE.sub(b"", caught.read())
    if rest:
        with open(STDERR_FD, "wb", closefd=False) as stderr:
            stderr.write(rest)
    return writer


def _open_redirected(fd: int, path: Path, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
    sys.stderr.flush()  # what Python wrote before goes out before, not into the file
    saved = os.dup(STDERR_FD)
    try:
        os.dup2(fd, STDERR_FD)
        try:
            return _open(path, fps, size)
        finally:
            sys.stderr.flush()
            os.dup2(saved, STDERR_FD)
    finally:
        os.close(saved)


def _open(path: Path, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
    return cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*FOURCC), fps, size)
