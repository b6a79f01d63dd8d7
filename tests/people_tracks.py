"""Constructed keypoint tracks for the people engine's tests: a stick figure with
adult proportions whose pose, place, size and tilt are functions of media time."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from daemon.people import Person

FRAME_SIZE = (640, 360)

# Upright figure facing the camera (so its left side is on the image's right), feet
# at (0, 0), height 1 (y up is negative in frame coordinates): (x, y) per COCO keypoint.
_UPRIGHT = np.array(
    [
        (0.0, -0.93),  # nose
        (0.02, -0.95),
        (-0.02, -0.95),
        (0.05, -0.93),
        (-0.05, -0.93),
        (0.12, -0.80),  # left shoulder (on the image's right)
        (-0.12, -0.80),
        (0.15, -0.64),  # elbows
        (-0.15, -0.64),
        (0.15, -0.50),  # wrists, hanging at the hips
        (-0.15, -0.50),
        (0.08, -0.50),  # hips
        (-0.08, -0.50),
        (0.08, -0.26),  # knees
        (-0.08, -0.26),
        (0.08, 0.0),  # ankles
        (-0.08, 0.0),
    ]
)
TORSO = 0.30  # shoulder-to-hip length of the figure, in heights
L_WRIST, R_WRIST = 9, 10


@dataclass
class Pose:
    """Where the figure is at one time: feet at (x, y) pixels, height px, tilt_deg
    (0 upright, 90 lying), wrists (or any keypoint, `moved`) moved by offsets in heights
    (dx, dy), its width (1: facing the camera or away, less: turned sideways), and
    whether it faces the camera (False: seen from behind, its left side on the image's
    left). Parts outside the frame are unseen (score 0) and the box ends at its edges,
    as a detector and pose model report someone partly in view."""

    x: float = 320.0
    y: float = 300.0
    height: float = 200.0
    tilt_deg: float = 0.0
    wrists: dict[int, tuple[float, float]] = field(default_factory=dict)
    score: float = 0.9
    facing: bool = True
    moved: dict[int, tuple[float, float]] = field(default_factory=dict)
    width: float = 1.0
    unseen: frozenset[int] = frozenset()  # keypoints the pose model does not find


def person(pose: Pose) -> Person:
    pts = _UPRIGHT.copy()
    for index, (dx, dy) in (pose.wrists | pose.moved).items():
        pts[index] += (dx, dy)
    pts[:, 0] *= pose.width if pose.facing else -pose.width
    a = math.radians(pose.tilt_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    pts = pts @ rot.T * pose.height + (pose.x, pose.y)
    pad = 0.05 * pose.height
    (w, h), (x1, y1), (x2, y2) = FRAME_SIZE, pts.min(axis=0) - pad, pts.max(axis=0) + pad
    box = (max(float(x1), 0.0), max(float(y1), 0.0), min(float(x2), w), min(float(y2), h))
    inside = (pts[:, 0] >= 0) & (pts[:, 0] <= w) & (pts[:, 1] >= 0) & (pts[:, 1] <= h)
    inside[list(pose.unseen)] = False
    kp = np.concatenate([pts, np.where(inside, pose.score, 0.0)[:, None]], axis=1)
    return Person(box=box, score=pose.score, keypoints=kp)


def frames(
    poses: Callable[[float], list[Pose]], duration_s: float, fps: float = 10.0, t0_s: float = 0.0
) -> Iterator[tuple[float, list[Person]]]:
    """(t_s, persons) at `fps` for `duration_s` of media time."""
    for i in range(round(duration_s * fps)):
        t = t0_s + i / fps
        yield t, [person(p) for p in poses(t)]


# A camera 2.5 m above the floor, pitched 30 deg down, focal length 400 px, looking at
# FRAME_SIZE: where a 1.7 m person standing `distance_m` in front of it appears.
CAMERA_HEIGHT_M, CAMERA_PITCH_DEG, FOCAL_PX, PERSON_HEIGHT_M = 2.5, 30.0, 400.0, 1.7


def seen_from_above(distance_m: float, x: float = 320.0) -> Pose:
    """The figure at `distance_m` (ground distance) in front of the camera above: near
    it, the feet are below the frame's bottom edge."""

    def row(height_m: float) -> float:
        below_axis = math.atan2(CAMERA_HEIGHT_M - height_m, distance_m) - math.radians(
            CAMERA_PITCH_DEG
        )
        return FRAME_SIZE[1] / 2 + FOCAL_PX * math.tan(below_axis)

    feet, head = row(0.0), row(PERSON_HEIGHT_M)
    return Pose(x=x, y=feet, height=feet - head)
