"""What the overlay hands its drawn frames to besides the display outputs: the console's
live JPEG slot (daemon.display.live)."""

from __future__ import annotations

import numpy as np

from daemon.config import CameraConfig, Config
from daemon.display.live import LivePublisher
from daemon.ipc.stats import StatsBlock
from daemon.stages.kinds import FRAME, Loss

# Live-view JPEGs larger than the camera's slot (one byte per pixel): not shown there.
LOST_LIVE_TOO_LARGE = Loss(FRAME, "live_too_large")
TAP_LOSSES = (LOST_LIVE_TOO_LARGE,)


class FrameTaps:
    """The overlay's frame taps; show() after each drawn frame, close() at the end."""

    def __init__(self, live_slot: str, cam: CameraConfig, config: Config, stats: StatsBlock):
        self._stats = stats
        self._live = (
            LivePublisher(live_slot, config.display.jpeg_quality, (cam.width, cam.height))
            if live_slot
            else None
        )
        self._live_too_large = 0

    def show(self, image: np.ndarray, frame_id: int) -> None:
        if self._live is None:
            return
        if not self._live.offer(image, frame_id) and self._live.too_large > self._live_too_large:
            self._stats.add(LOST_LIVE_TOO_LARGE.field, self._live.too_large - self._live_too_large)
            self._live_too_large = self._live.too_large

    def close(self) -> None:
        if self._live is not None:
            self._live.close()
