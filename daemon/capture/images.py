"""Image sequences: `images:<glob>` (e.g. images:/data/frames/*.jpg) replays the matching
files in natural order (frame_2 before frame_10) as one video: an exported JPEG
sequence, or frames a camera saved. It has no frame rate of its own: set the camera's
fps to pace it (realtime = true)."""

from __future__ import annotations

import cv2
import numpy as np

from daemon.capture.protocol import OpenOptions, SourceError
from daemon.capture.table import IMAGES_PREFIX, matching_files


class ImageSequence:
    """A CaptureBackend over the files a glob matches, listed again on every open (a
    looped replay picks up files added meanwhile)."""

    def __init__(self, source: str, options: OpenOptions) -> None:
        self.source = source
        self.pattern = source.removeprefix(IMAGES_PREFIX)
        self._paths: list[str] = []
        self._next = 0

    def open(self) -> bool:
        self._paths, self._next = matching_files(self.pattern), 0
        if not self._paths:
            raise SourceError(f"{self.source!r} matches no files; fix the camera's source")
        return True

    def read(self) -> np.ndarray | None:
        if self._next >= len(self._paths):
            return None
        path = self._paths[self._next]
        self._next += 1
        image = cv2.imread(path, cv2.IMREAD_COLOR)  # always 8-bit BGR
        if image is None:
            raise SourceError(
                f"cannot decode image {path!r} of {self.source!r} (corrupt, "
                "or a format OpenCV does not read); replace or remove it"
            )
        return image

    def release(self) -> None:
        self._paths, self._next = [], 0

    @property
    def fps(self) -> float:
        return 0.0
