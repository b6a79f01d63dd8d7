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
    (0 upright, 90 lying), wrists moved by offsets in heights (dx, dy), and whether
    it faces the camera (False: seen from behind, its left side on the image's left)."""

    x: float = 320.0
    y: float = 300.0
    height: float = 200.0
    tilt_deg: float = 0.0
    wrists: dict[int, tuple[float, float]] = field(default_factory=dict)
    score: float = 0.9
    facing: bool = True


def person(pose: Pose) -> Person:
    pts = _UPRIGHT.copy()
    for index, (dx, dy) in pose.wrists.items():
        pts[index] += (dx, dy)
    if not pose.facing:
        pts[:, 0] *= -1
    a = math.radians(pose.tilt_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    pts = pts @ rot.T * pose.height + (pose.x, pose.y)
    pad = 0.05 * pose.height
    box = (
        float(pts[:, 0].min() - pad),
        float(pts[:, 1].min() - pad),
        float(pts[:, 0].max() + pad),
        float(pts[:, 1].max() + pad),
    )
    kp = np.concatenate([pts, np.full((17, 1), pose.score)], axis=1)
    return Person(box=box, score=pose.score, keypoints=kp)


def frames(
    poses: Callable[[float], list[Pose]], duration_s: float, fps: float = 10.0, t0_s: float = 0.0
) -> Iterator[tuple[float, list[Person]]]:
    """(t_s, persons) at `fps` for `duration_s` of media time."""
    for i in range(round(duration_s * fps)):
        t = t0_s + i / fps
        yield t, [person(p) for p in poses(t)]
