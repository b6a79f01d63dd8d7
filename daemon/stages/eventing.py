"""Events in the overlay worker: scores -> hysteresis -> records to the supervisor.

The overlay sees results in frame order (it joins them to frames by id), so it is where
the per-camera EventTracker runs; it also has the pixels for the snapshot of the best
frame. Records leave through the supervisor's event socket, not the frame rings.

The hysteresis runs on the frames' capture times (daemon.events.EventClock): media time
for a replayed file, so it gives the same events at any replay speed; the monotonic
clock for a live source, which alone feeds the capture -> event latency metric.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import cv2
import numpy as np

from daemon.config import EventsConfig
from daemon.events import (
    END_STOPPED,
    END_STREAM_LOST,
    PHASE_END,
    ActionEvent,
    EventClock,
    EventSettings,
    EventTracker,
    ignored_labels,
)
from daemon.ipc.events_channel import (
    LOST_REASONS,
    SEND_TIMEOUT_S,
    SNAPSHOT_LOST_REASONS,
    EventSender,
)
from daemon.ipc.stats import StatsBlock
from daemon.stages.kinds import EVENT, SNAPSHOT, Loss
from daemon.stages.records import CLIP_SCORES, DETECTIONS, Result, ResultSpec, detection_count

# Events (and snapshots) lost on the way to the supervisor, by reason: counted in the
# overlay's stats block, exported as actiond_lost_total{item="event"|"snapshot"}.
EVENT_LOSSES = (
    *(Loss(EVENT, r) for r in LOST_REASONS),
    *(Loss(SNAPSHOT, r) for r in SNAPSHOT_LOST_REASONS),
)
# A blocked event send stalls the overlay's step: wait at most this share of the heartbeat
# timeout, and beat before each send (EventEmitter's `beat`), so backpressure never gets the
# overlay killed, however many events one step sends.
SEND_TIMEOUT_HEARTBEAT_SHARE = 0.4
# An event record's clip fields from (event id, phase, capture time of its start or end,
# s): the overlay's event clips (daemon.stages.event_clips); without them a record says
# it has none.
ClipFields = Callable[[str, str, float], dict[str, Any]]


def no_clip(event_id: str, phase: str, t_s: float) -> dict[str, Any]:
    return {"clip": None, "clip_missing": "disabled"}


class EventPost:
    """How one camera's overlay sends event records (each with its JPEG snapshot) to the
    supervisor, for the clip model's events and the people engine's alike: a fresh
    heartbeat before each send, and what the sender lost moved into the stats block."""

    def __init__(
        self,
        socket_path: str,
        send_timeout_s: float,
        jpeg_quality: int,
        stats: StatsBlock | None,
        beat: Callable[[], None] | None,
    ) -> None:
        self._sender = EventSender(socket_path, send_timeout_s)
        self._quality = jpeg_quality
        self._stats = stats  # EVENT_LOSSES' fields, if the caller's block has them
        self._beat = beat  # the worker's Heartbeat.beat: each send starts with a fresh beat
        self.sent_total = 0

    def jpeg(self, image: np.ndarray) -> bytes:
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self._quality])
        return data.tobytes() if ok else b""

    def send(self, record: dict[str, Any], snapshot: bytes | None) -> None:
        if self._beat is not None:
            self._beat()
        if self._sender.send(record, snapshot):
            self.sent_total += 1
        self._count_losses()

    def close(self) -> None:
        self._sender.close()

    def _count_losses(self) -> None:
        """Move the sender's new losses into the stats block (it outlives restarts, so
        add, never set)."""
        if self._stats is None:
            return
        for counts, item in ((self._sender.lost, EVENT), (self._sender.snapshots_lost, SNAPSHOT)):
            for reason, n in counts.items():
                self._stats.add(Loss(item, reason).field, n)
            counts.clear()


def event_send_timeout_s(heartbeat_timeout_s: float) -> float:
    """How long an overlay waits for the supervisor to take one event."""
    return min(SEND_TIMEOUT_S, SEND_TIMEOUT_HEARTBEAT_SHARE * heartbeat_timeout_s)


def _clip_scores(spec: ResultSpec, result: Result) -> np.ndarray:
    return result["scores"]


def _detection_scores(spec: ResultSpec, result: Result) -> np.ndarray:
    """Per label, the best score of a detection of that label in the frame."""
    scores = np.zeros(len(spec.labels), np.float32)
    n = detection_count(result)
    classes = result["classes"][:n]
    valid = (classes >= 0) & (classes < len(scores))
    np.maximum.at(scores, classes[valid], result["scores"][:n][valid])
    return scores


# What the event tracker's hysteresis runs on, per result kind: one score per label.
EVENT_SCORES: Mapping[str, Callable[[ResultSpec, Result], np.ndarray]] = MappingProxyType(
    {CLIP_SCORES: _clip_scores, DETECTIONS: _detection_scores}
)


def event_scores(spec: ResultSpec, result: Result) -> np.ndarray:
    """One score per label from a result, as its kind says (see EVENT_SCORES)."""
    return EVENT_SCORES[spec.kind](spec, result)


def event_settings(cfg: EventsConfig, labels: Sequence[str]) -> EventSettings:
    """EventSettings from [events]; ValueError names a label the model does not have."""
    ignore = ignored_labels(labels, cfg.ignore)
    settings = EventSettings(
        start_windows=cfg.start_windows,
        end_windows=cfg.end_windows,
        cooldown_s=cfg.cooldown_s,
        default_threshold=cfg.threshold,
        thresholds={a.name: a.threshold for a in cfg.actions},
        ignore=frozenset(ignore),
    )
    EventTracker("check", labels, settings)  # raises ValueError on unknown labels
    return settings


def _event_time(event: ActionEvent) -> float:
    """Capture time (s) of the event's start, or of its end for an end record."""
    ended = event.ended_at if event.phase == PHASE_END else None
    return event.started_at if ended is None else ended


class EventEmitter:
    """Tracks one camera's actions and sends each event with a JPEG of its best frame."""

    def __init__(
        self,
        camera: str,
        labels: Sequence[str],
        settings: EventSettings,
        socket_path: str,
        jpeg_quality: int,
        stats: StatsBlock | None = None,
        send_timeout_s: float = SEND_TIMEOUT_S,
        live: bool = True,
        beat: Callable[[], None] | None = None,
        clips: ClipFields = no_clip,
    ) -> None:
        self._tracker = EventTracker(camera, labels, settings)
        self._clips = clips
        self._clock = EventClock(live)  # live: capture times are the monotonic clock
        self._last_t_s: float | None = None  # capture time of the latest window
        self._post = EventPost(socket_path, send_timeout_s, jpeg_quality, stats, beat)
        self._best: dict[str, bytes] = {}

    def update(
        self, scores: np.ndarray, frame_id: int, capture_ts_ns: int, image: np.ndarray
    ) -> list[ActionEvent]:
        """Feed one window's scores (in frame order); sends and returns its events."""
        self._last_t_s = self._clock.seconds(capture_ts_ns)
        events = self._tracker.update(scores, frame_id, self._last_t_s)
        for action in self._tracker.active:
            if self._tracker.best_frame_id(action) == frame_id:
                self._best[action] = self._post.jpeg(image)
        for event in events:
            snapshot = self._best.get(event.action) or self._post.jpeg(image)
            self._send(event, capture_ts_ns, snapshot)
            if event.phase == PHASE_END:
                self._best.pop(event.action, None)
        return events

    @property
    def active(self) -> tuple[str, ...]:
        """Actions with an open event."""
        return self._tracker.active

    def end_all(self, reason: str = END_STREAM_LOST) -> list[ActionEvent]:
        """End every open event at the latest window's capture time, saying why (a lost
        stream, the end of a file)."""
        events = self._tracker.flush(self._last_t_s or 0.0, reason)
        for event in events:
            self._send(event, 0, self._best.pop(event.action, None))
        return events

    def close(self, reason: str = END_STOPPED) -> None:
        """End open events (the camera is stopping, or its file ended) and close the
        socket."""
        self.end_all(reason)
        self._post.close()

    @property
    def sent_total(self) -> int:
        """Records the supervisor took."""
        return self._post.sent_total

    def _send(self, event: ActionEvent, capture_ts_ns: int, snapshot: bytes | None) -> None:
        # The JPEG travels beside the record, not in the event: say whether there is one.
        record = {
            **event.to_json_dict(self._clock),
            "capture_ts_ns": self._clock.latency_stamp(capture_ts_ns),
            "has_snapshot": snapshot is not None,
            **self._clips(event.id, event.phase, _event_time(event)),
        }
        self._post.send(record, snapshot)
