"""Events in the overlay worker: scores -> hysteresis -> records to the supervisor.

The overlay sees results in frame order (it joins them to frames by id), so it is where
the per-camera EventTracker runs; it also has the pixels for the snapshot of the best
frame. Records leave through the supervisor's event socket, not the frame rings.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import cv2
import numpy as np

from daemon.config import EventsConfig
from daemon.events import ActionEvent, EventSettings, EventTracker
from daemon.ipc.events_channel import EventSender

# Labels a model uses for "no action": they never make events unless configured.
BACKGROUND_LABELS = ("still", "idle", "nobody", "background", "none", "no_action")


def event_settings(cfg: EventsConfig, labels: Sequence[str]) -> EventSettings:
    """EventSettings from [events]; ValueError names a label the model does not have."""
    ignore = cfg.ignore or tuple(label for label in labels if label in BACKGROUND_LABELS)
    settings = EventSettings(
        start_windows=cfg.start_windows, end_windows=cfg.end_windows,
        cooldown_s=cfg.cooldown_s, default_threshold=cfg.threshold,
        thresholds={a.name: a.threshold for a in cfg.actions}, ignore=frozenset(ignore))
    EventTracker("check", labels, settings)  # raises ValueError on unknown labels
    return settings


class EventEmitter:
    """Tracks one camera's actions and sends each event with a JPEG of its best frame."""

    def __init__(self, camera: str, labels: Sequence[str], settings: EventSettings,
                 socket_path: str, jpeg_quality: int) -> None:
        self._tracker = EventTracker(camera, labels, settings)
        self._sender = EventSender(socket_path)
        self._quality = jpeg_quality
        self._best: dict[str, bytes] = {}
        self.sent_total = 0

    def update(self, scores: np.ndarray, frame_id: int, capture_ts_ns: int,
               image: np.ndarray) -> list[ActionEvent]:
        """Feed one window's scores (in frame order); sends and returns its events."""
        events = self._tracker.update(scores, frame_id, time.time())
        for action in self._tracker.active:
            if self._tracker.best_frame_id(action) == frame_id:
                self._best[action] = self._jpeg(image)
        for event in events:
            snapshot = self._best.get(event.action) or self._jpeg(image)
            self._send(event, capture_ts_ns, snapshot)
            if event.phase == "end":
                self._best.pop(event.action, None)
        return events

    def close(self) -> None:
        """End open events (the camera is stopping) and close the socket."""
        for event in self._tracker.flush(time.time()):
            self._send(event, 0, self._best.pop(event.action, None))
        self._sender.close()

    def _send(self, event: ActionEvent, capture_ts_ns: int, snapshot: bytes | None) -> None:
        record = {**event.to_json_dict(), "capture_ts_ns": capture_ts_ns}
        if self._sender.send(record, snapshot):
            self.sent_total += 1

    def _jpeg(self, image: np.ndarray) -> bytes:
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self._quality])
        return data.tobytes() if ok else b""
