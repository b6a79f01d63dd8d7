"""People events in the overlay worker: each analysed frame's detections -> the camera's
daemon.people engine (tracks and person-centred actions, on capture time) -> records
through the supervisor's event socket, like the clip model's (daemon.stages.eventing).

A record is the clip path's (id, camera, action, phase, scores, times, media times,
end_reason, capture_ts_ns, has_snapshot) plus the person's `track_id`, `box` (x1, y1,
x2, y2 in frame pixels), `zone` ("" when the camera has no include zone) and `clip`
(or `clip: null` and `clip_missing`: the overlay's event clips). An
occurrence's start and end records share one id. Events wait in `pending` until the
overlay has drawn the frame (boxes, skeletons, track ids, zones): that drawing is the
snapshot sent beside the record.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from daemon.config import CameraConfig, PeopleConfig
from daemon.events import END_STOPPED, END_STREAM_LOST, EventClock, iso_utc, record_s
from daemon.ipc.events_channel import SEND_TIMEOUT_S
from daemon.ipc.stats import StatsBlock
from daemon.people import PHASE_END, PeopleEngine, Person, PersonEvent, Track
from daemon.stages.eventing import ClipFields, EventPost, no_clip
from daemon.stages.records import Result, detection_count

Key = tuple[int, str, str]  # (track id, action, zone): one open occurrence


def persons_of(result: Result, size: tuple[int, int]) -> list[Person]:
    """The people of a detections record (boxes and keypoints in shares of the frame) in
    frame pixels."""
    w, h = size
    scale = np.array([w, h, w, h], np.float64)
    people = []
    for i in range(detection_count(result)):
        box = result["boxes"][i].astype(np.float64) * scale
        kp = result["keypoints"][i].astype(np.float64) * np.array([w, h, 1.0])
        x1, y1, x2, y2 = (float(v) for v in box)
        people.append(Person((x1, y1, x2, y2), float(result["scores"][i]), kp))
    return people


@dataclass
class _Open:
    """What the end record of an open occurrence needs from its start."""

    id: str
    started_s: float
    score_max: float
    score_sum: float
    samples: int


class PeopleEmitter:
    """One camera's people engine and the sending of its events."""

    def __init__(
        self,
        camera: CameraConfig,
        people: PeopleConfig,
        socket_path: str,
        jpeg_quality: int,
        stats: StatsBlock | None = None,
        send_timeout_s: float = SEND_TIMEOUT_S,
        live: bool = True,
        beat: Callable[[], None] | None = None,
        clips: ClipFields = no_clip,
    ) -> None:
        self._clips = clips
        self.engine = PeopleEngine(camera, people, (camera.width, camera.height))
        self._camera, self._size = camera.name, (camera.width, camera.height)
        self._clock = EventClock(live)
        self._post = EventPost(socket_path, send_timeout_s, jpeg_quality, stats, beat)
        self._open: dict[Key, _Open] = {}
        self.pending: list[tuple[PersonEvent, int, int]] = []  # event, frame id, capture ns
        self.tracks: list[Track] = []  # the confirmed tracks after the latest frame
        self._last_t_s: float | None = None

    def update(self, result: Result, frame_id: int, capture_ns: int) -> int:
        """Feed one analysed frame (in frame order); its events wait in `pending`."""
        t_s = self._clock.seconds(capture_ns)
        self._last_t_s = t_s
        update = self.engine.update(persons_of(result, self._size), t_s)
        self.tracks = [t for t in update.tracks if t.confirmed]
        self.pending += [(e, frame_id, capture_ns) for e in update.events]
        return len(update.events)

    def send_pending(self, image: np.ndarray) -> None:
        """Send the pending events, with `image` (the drawn frame) as their snapshot."""
        if not self.pending:
            return
        snapshot = self._post.jpeg(image)
        pending, self.pending = self.pending, []
        for event, frame_id, capture_ns in pending:
            self._send(event, frame_id, self._clock.latency_stamp(capture_ns), snapshot)

    @property
    def active(self) -> bool:
        """Whether an occurrence is open."""
        return bool(self._open)

    def end_all(self, reason: str = END_STREAM_LOST) -> int:
        """End every open occurrence and every track now (a lost stream, a file's end)."""
        self.pending.clear()  # their frame will not be drawn: sent below without a picture
        events = self.engine.close(self._last_t_s or 0.0)
        for event in events:
            self._send(event, -1, 0, None, reason)
        self.tracks = []
        return len(events)

    def close(self, reason: str = END_STOPPED) -> None:
        self.end_all(reason)
        self._post.close()

    @property
    def sent_total(self) -> int:
        """Records the supervisor took."""
        return self._post.sent_total

    def _send(
        self,
        event: PersonEvent,
        frame_id: int,
        capture_ns: int,
        snapshot: bytes | None,
        reason: str = "",
    ) -> None:
        record = {
            **self._record(event, frame_id, reason),
            "capture_ts_ns": capture_ns,
            "has_snapshot": snapshot is not None,
        }
        record.update(self._clips(record["id"], event.phase, event.t_s))
        self._post.send(record, snapshot)

    def _record(self, event: PersonEvent, frame_id: int, reason: str) -> dict[str, Any]:
        key = (event.track_id, event.action, event.zone)
        occ = self._open.get(key)
        if occ is None or event.phase != PHASE_END:
            occ = _Open(uuid.uuid4().hex, event.t_s, event.score, 0.0, 0)
            self._open[key] = occ
        occ.score_max = max(occ.score_max, event.score)
        occ.score_sum, occ.samples = occ.score_sum + event.score, occ.samples + 1
        ended = event.t_s if event.phase == PHASE_END else None
        if ended is not None:
            del self._open[key]
        clock = self._clock
        return {
            "id": occ.id,
            "camera": self._camera,
            "action": event.action,
            "phase": event.phase,
            "score_max": occ.score_max,
            "score_mean": occ.score_sum / occ.samples,
            "started_at": iso_utc(clock.epoch_s(occ.started_s)),
            "started_at_epoch": clock.epoch_s(occ.started_s),
            "ended_at": None if ended is None else iso_utc(clock.epoch_s(ended)),
            "ended_at_epoch": None if ended is None else clock.epoch_s(ended),
            "duration_s": None if ended is None else record_s(ended - occ.started_s),
            "media_start_s": clock.media_s(occ.started_s),
            "media_end_s": None if ended is None else clock.media_s(ended),
            "frame_id": frame_id,
            "end_reason": (reason or event.end_reason) if ended is not None else None,
            "track_id": event.track_id,
            "box": [round(float(v), 1) for v in event.box],
            "zone": event.zone,
        }
