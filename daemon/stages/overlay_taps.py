"""What the overlay hands its drawn frames to besides the display outputs: the console's
live JPEG slot (daemon.display.live) and the event clips (daemon.stages.event_clips),
whose fields every event record carries."""

from __future__ import annotations

from typing import Any

import numpy as np

from daemon.config import CameraConfig, Config
from daemon.display.live import LivePublisher
from daemon.ipc.stats import StatsBlock
from daemon.stages.event_clips import CLIP_FIELDS, CLIP_LOSSES, MISSING_DISABLED, EventClips
from daemon.stages.kinds import FRAME, Export, Loss

# Live-view JPEGs larger than the camera's slot (one byte per pixel): not shown there.
LOST_LIVE_TOO_LARGE = Loss(FRAME, "live_too_large")
TAP_LOSSES = (LOST_LIVE_TOO_LARGE, *CLIP_LOSSES)
TAP_FIELDS = CLIP_FIELDS
TAP_EXPORTS = (
    Export("actiond_clips_total", "clips_total"),
    Export("actiond_clips_deleted_total", "clips_deleted_total"),
)


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
        self._clips = (
            EventClips(cam, config.clips, config.daemon.state_dir, stats)
            if config.clips.enabled
            else None
        )

    def clip_fields(self, event_id: str, phase: str, t_s: float) -> dict[str, Any]:
        """An event record's `clip` (and `clip_missing`) fields (see EventClips)."""
        if self._clips is None:
            return {"clip": None, "clip_missing": MISSING_DISABLED}
        return self._clips.fields(event_id, phase, t_s)

    def show(self, image: np.ndarray, frame_id: int, capture_ns: int) -> None:
        if self._clips is not None:
            self._clips.show(image, capture_ns)
        if self._live is None:
            return
        if not self._live.offer(image, frame_id) and self._live.too_large > self._live_too_large:
            self._stats.add(LOST_LIVE_TOO_LARGE.field, self._live.too_large - self._live_too_large)
            self._live_too_large = self._live.too_large

    def idle(self) -> None:
        """No frame within a step (see EventClips.idle)."""
        if self._clips is not None:
            self._clips.idle()

    def close(self) -> None:
        if self._clips is not None:
            self._clips.close()
        if self._live is not None:
            self._live.close()
