"""The gate's decision, pure logic: should this frame be analysed?

A frame is analysed at most `analyse_fps` times per second of capture time; of those,
only frames where something moved since the last analysed frame (a share of a small grey
image's pixels changed by more than a compression-noise margin), or, in a still scene,
one frame per `keepalive_fps` so that a person standing still keeps their track.
Comparing with the last *analysed* frame (not the previous one) lets slow movement add
up until it counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

GREY_WIDTH_PX = 64  # the motion check's image: cheap (a 64 x 36 resize per frame)
# A pixel changed when its grey level moved by more than this (0..255): above the noise
# of H.264 at ordinary bitrates on a still scene, below a person's edge on a wall.
PIXEL_DELTA = 12
NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class GateSettings:
    analyse_fps: float  # most analysed frames per second
    keepalive_fps: float  # analysed frames per second in a still scene
    motion_min_share: float  # share of changed pixels that counts as motion


def small_grey(frame: np.ndarray) -> np.ndarray:
    """A blurred 64-pixel-wide grey image of a BGR frame, as int16 for differencing."""
    h, w = frame.shape[:2]
    height = max(1, round(h * GREY_WIDTH_PX / w))
    grey = cv2.cvtColor(
        cv2.resize(frame, (GREY_WIDTH_PX, height), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY
    )
    return cv2.GaussianBlur(grey, (3, 3), 0).astype(np.int16)


class Gate:
    """Decides, frame by frame in capture order, which frames are analysed."""

    def __init__(self, settings: GateSettings) -> None:
        self._s = settings
        self._min_gap_ns = int(NS_PER_S / settings.analyse_fps)
        self._keepalive_ns = int(NS_PER_S / settings.keepalive_fps)
        self._last_ns: int | None = None
        self._reference: np.ndarray | None = None
        self.moving = False  # did the last frame checked move?

    def motion_share(self, grey: np.ndarray) -> float:
        """Share of pixels changed since the last analysed frame (1.0 for the first)."""
        ref = self._reference
        if ref is None or ref.shape != grey.shape:
            return 1.0
        return float(np.count_nonzero(np.abs(grey - ref) > PIXEL_DELTA)) / grey.size

    def admit(self, frame: np.ndarray, ts_ns: int) -> bool:
        """True: analyse this frame. Frames must come in capture order."""
        last = self._last_ns
        if last is not None and ts_ns - last < self._min_gap_ns:
            return False  # the analysis rate: no motion check needed
        grey = small_grey(frame)
        self.moving = self.motion_share(grey) >= self._s.motion_min_share
        due = last is None or ts_ns - last >= self._keepalive_ns
        if not (self.moving or due):
            return False
        self._last_ns, self._reference = ts_ns, grey
        return True
