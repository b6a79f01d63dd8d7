"""What the people engine takes and gives: detected persons, tracks, events.

Coordinates are frame pixels; boxes are (x1, y1, x2, y2); keypoints are 17 rows of
(x, y, score) in COCO order (KEYPOINTS). Times (`t_s`) are media time: the capture time
of the frame, in seconds, so a file replayed at any speed gives the same events.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

Box = tuple[float, float, float, float]

KEYPOINTS = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
KEYPOINT_COUNT = len(KEYPOINTS)
L_SHOULDER, R_SHOULDER = 5, 6
L_ELBOW, R_ELBOW = 7, 8
L_WRIST, R_WRIST = 9, 10
L_HIP, R_HIP = 11, 12
L_ANKLE, R_ANKLE = 15, 16

PHASE_START = "start"
PHASE_END = "end"
END_ACTION_OVER = "action_over"  # the rule's condition stopped holding
END_TRACK_LOST = "track_lost"  # the person was not seen for [people] lost_after_s
END_STOPPED = "stopped"  # the engine was closed (end of stream, shutdown, reload)


@dataclass(frozen=True)
class Person:
    """One detected person in one frame."""

    box: Box
    score: float
    keypoints: np.ndarray  # (17, 3) x, y, score in frame pixels, COCO order

    def __post_init__(self) -> None:
        kp = np.asarray(self.keypoints, dtype=np.float64)
        if kp.shape != (KEYPOINT_COUNT, 3):
            raise ValueError(f"keypoints must have shape (17, 3), got {kp.shape}")
        object.__setattr__(self, "keypoints", kp)


@dataclass(frozen=True)
class Sample:
    """One observation of a track: where the person was at media time t_s."""

    t_s: float
    box: Box
    keypoints: np.ndarray  # (17, 3)
    score: float


@dataclass
class Track:
    """A person followed across frames. track_id is 0 until the track is confirmed
    ([people] confirm_hits within confirm_window_s); confirmed ids count up from 1."""

    track_id: int
    box: Box
    keypoints: np.ndarray
    score: float
    first_seen_s: float
    last_seen_s: float
    confirmed: bool = False
    hits_s: deque[float] = field(default_factory=deque)  # detection times, tentative
    history: deque[Sample] = field(default_factory=deque)  # recent samples, oldest first
    velocity_px_s: tuple[float, float] = (0.0, 0.0)  # box centre, for the next match

    def observe(self, person: Person, t_s: float, keep_s: float) -> None:
        """Adds a detection at t_s and forgets samples older than keep_s."""
        dt_s = t_s - self.last_seen_s
        if dt_s > 0:
            (ox, oy), (nx, ny) = box_centre(self.box), box_centre(person.box)
            self.velocity_px_s = ((nx - ox) / dt_s, (ny - oy) / dt_s)
        self.box, self.keypoints, self.score = person.box, person.keypoints, person.score
        self.last_seen_s = t_s
        self.hits_s.append(t_s)
        self.history.append(Sample(t_s, person.box, person.keypoints, person.score))
        while self.history and self.history[0].t_s < t_s - keep_s:
            self.history.popleft()

    def predicted_box(self, t_s: float) -> Box:
        """The box moved on by its last velocity to t_s (constant velocity)."""
        dt_s = t_s - self.last_seen_s
        dx, dy = self.velocity_px_s[0] * dt_s, self.velocity_px_s[1] * dt_s
        x1, y1, x2, y2 = self.box
        return (x1 + dx, y1 + dy, x2 + dx, y2 + dy)


@dataclass(frozen=True)
class PersonEvent:
    """The start or end of one action of one tracked person.

    A start's t_s is when the action began (its first sample; the record is made once
    it has held [people] start_s); an end's t_s is the first sample without it (or the
    last sighting for END_TRACK_LOST, the close time for END_STOPPED)."""

    phase: str  # PHASE_START | PHASE_END
    action: str
    track_id: int
    zone: str  # the include zone the person was in; "" when the camera has none
    box: Box
    score: float
    t_s: float
    end_reason: str = ""  # END_*; "" for a start


@dataclass(frozen=True)
class PeopleUpdate:
    """What one frame changed: the live tracks and the events completed."""

    tracks: list[Track]
    events: list[PersonEvent]


def box_centre(box: Box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when either is empty)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def covered_share(inner: Box, outer: Box) -> float:
    """The share of `inner`'s area that lies inside `outer` (0 for an empty box)."""
    w = min(inner[2], outer[2]) - max(inner[0], outer[0])
    h = min(inner[3], outer[3]) - max(inner[1], outer[1])
    area = (inner[2] - inner[0]) * (inner[3] - inner[1])
    return w * h / area if w > 0 and h > 0 and area > 0 else 0.0
