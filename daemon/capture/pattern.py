"""Synthetic `test:<pattern>` sources: frames made in numpy, no camera or file needed."""

from __future__ import annotations

import cv2
import numpy as np

from daemon.capture.protocol import OpenOptions, SourceError
from daemon.capture.table import TEST_PATTERNS, TEST_PREFIX

TEST_DEFAULT_FPS = 10.0
TEST_FRAME_SIZE = (640, 480)  # width, height of synthetic frames before crop/resize
TEST_BOX_STEP_PX = 8  # moving-box: rightward motion per frame
TEST_TEXTURE_SEED = 20240601
BARS_BGR = (
    (255, 255, 255),
    (0, 255, 255),
    (255, 255, 0),
    (0, 255, 0),
    (255, 0, 255),
    (0, 0, 255),
    (255, 0, 0),
    (0, 0, 0),
)


def smooth_texture(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth random grey texture: optical flow needs structure to track."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(max(height // 16, 2), max(width // 16, 2)), dtype=np.uint8)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)


def colour_bars(height: int, width: int) -> np.ndarray:
    """Eight vertical colour bars (BGR)."""
    return cv2.resize(
        np.array([BARS_BGR], np.uint8), (width, height), interpolation=cv2.INTER_NEAREST
    )


class PatternCapture:
    """A synthetic `test:<pattern>` source (a CaptureBackend; it never ends).

    bars: static colour bars; still: a static texture; moving-box: a textured box
    moving left to right by TEST_BOX_STEP_PX per frame (wrapping) over a texture.
    Its rate is the camera's fps, or TEST_DEFAULT_FPS when that is 0.
    """

    def __init__(self, source: str, options: OpenOptions) -> None:
        self.pattern = source.removeprefix(TEST_PREFIX)
        self._fps = options.fps if options.fps > 0 else TEST_DEFAULT_FPS
        self.index = 0
        self._background: np.ndarray | None = None
        self._box: np.ndarray = np.zeros((0, 0, 3), np.uint8)

    def open(self) -> bool:
        if self.pattern not in TEST_PATTERNS:
            raise SourceError(
                f"unknown test pattern {self.pattern!r}; use test:"
                + " or test:".join(TEST_PATTERNS)
            )
        width, height = TEST_FRAME_SIZE
        if self.pattern == "bars":
            self._background = colour_bars(height, width)
        else:
            texture = smooth_texture(height, width, TEST_TEXTURE_SEED)
            self._background = cv2.cvtColor(texture // 2, cv2.COLOR_GRAY2BGR)
        box = smooth_texture(height // 3, width // 4, TEST_TEXTURE_SEED + 1) // 2 + 128
        self._box = cv2.cvtColor(box, cv2.COLOR_GRAY2BGR)
        return True

    def read(self) -> np.ndarray | None:
        """The next frame (always one while open)."""
        if self._background is None:
            return None
        frame: np.ndarray = self._background.copy()
        if self.pattern == "moving-box":
            box_h, box_w = self._box.shape[:2]
            width, height = TEST_FRAME_SIZE
            x = (self.index * TEST_BOX_STEP_PX) % (width - box_w)
            y = (height - box_h) // 2
            frame[y : y + box_h, x : x + box_w] = self._box
        self.index += 1
        return frame

    def release(self) -> None:
        self._background = None

    @property
    def fps(self) -> float:
        return self._fps
