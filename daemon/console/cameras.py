"""Each camera's state as the console shows it, from what the supervisor tells every sink.

`set_camera_available` (every tick) says whether frames flow; `publish_stats` (every
status interval) carries, per camera, the source's frame count, the drops of the
camera's rings, its workers' restarts, and whether its source runs, finished or failed.
The states:
- running: frames flow;
- connecting: no frame yet since the source (re)started;
- reconnecting: frames flowed, and the stream is down now (the source retries);
- failed: the source worker is not running, or the camera was given up;
- ended: a file or finite source played to its end.
fps is the source's frame rate between two status publications.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

RUNNING, CONNECTING, RECONNECTING, FAILED, ENDED = (
    "running",
    "connecting",
    "reconnecting",
    "failed",
    "ended",
)


@dataclass
class _Camera:
    available: bool = False
    ever_available: bool = False
    frames_total: float = 0.0
    frames_at_s: float = 0.0
    fps: float = 0.0
    drops: int = 0
    restarts: int = 0
    source_running: bool = True
    finished: bool = False
    failed: bool = False


class CameraBoard:
    """Thread-safe: written on the supervisor's loop, read on the console's."""

    def __init__(self, cameras: Sequence[str]) -> None:
        self._cameras = {name: _Camera() for name in cameras}
        self._lock = threading.Lock()

    def names(self) -> tuple[str, ...]:
        return tuple(self._cameras)

    def set_available(self, camera: str, available: bool) -> None:
        with self._lock:
            cam = self._cameras.get(camera)
            if cam is not None:
                cam.available = available
                cam.ever_available = cam.ever_available or available

    def update(self, stats: Mapping[str, Any], now: float | None = None) -> None:
        """Take the per-camera block of the supervisor's stats (`stats["cameras"]`)."""
        now = time.monotonic() if now is None else now
        per_camera = stats.get("cameras")
        failed = set(stats.get("failed_cameras") or ())
        with self._lock:
            for name, cam in self._cameras.items():
                cam.failed = name in failed
                block = per_camera.get(name) if isinstance(per_camera, Mapping) else None
                if isinstance(block, Mapping):
                    _take(cam, block, now)

    def states(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {
                    "name": name,
                    "state": _state(cam),
                    "fps": round(cam.fps, 1),
                    "drops": cam.drops,
                    "restarts": cam.restarts,
                }
                for name, cam in self._cameras.items()
            ]


def _take(cam: _Camera, block: Mapping[str, Any], now: float) -> None:
    frames = float(block.get("frames_total", 0))
    if cam.frames_at_s and now > cam.frames_at_s and frames >= cam.frames_total:
        cam.fps = (frames - cam.frames_total) / (now - cam.frames_at_s)
    else:
        cam.fps = 0.0
    cam.frames_total, cam.frames_at_s = frames, now
    cam.drops = int(block.get("drops", 0))
    cam.restarts = int(block.get("restarts", 0))
    cam.source_running = bool(block.get("source_running", True))
    cam.finished = bool(block.get("finished", False))


def _state(cam: _Camera) -> str:
    if cam.failed:
        return FAILED
    if cam.available:
        return RUNNING
    if cam.finished:
        return ENDED
    if not cam.source_running:
        return FAILED
    return RECONNECTING if cam.ever_available else CONNECTING
