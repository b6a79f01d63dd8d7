"""Body measures from one sample's keypoints: the parts the rules use, in frame pixels.

A keypoint counts only when its score reaches [people] keypoint_score. Lengths the
rules compare are in body units: the torso length (mid-shoulder to mid-hip) when both
are seen, else the shoulder width times SHOULDERS_TO_TORSO, else the box height times
BOX_TO_TORSO, so the same parameters work for a person near or far.
"""

from __future__ import annotations

import math

import numpy as np

from daemon.people.person import L_HIP, L_SHOULDER, R_HIP, R_SHOULDER, Box, Sample

# Adult proportions (torso length / shoulder width ~1.2-1.5; torso ~ 0.3 of the height).
SHOULDERS_TO_TORSO = 1.3
BOX_TO_TORSO = 0.3


def point(sample: Sample, index: int, min_score: float) -> np.ndarray | None:
    """(x, y) of keypoint `index`, or None when its score is below min_score."""
    kp: np.ndarray = sample.keypoints[index]
    if float(kp[2]) < min_score:
        return None
    xy: np.ndarray = kp[:2].astype(np.float64)
    return xy


def midpoint(sample: Sample, left: int, right: int, min_score: float) -> np.ndarray | None:
    """The middle of a left/right pair, or the one seen, or None."""
    a, b = point(sample, left, min_score), point(sample, right, min_score)
    if a is not None and b is not None:
        mid: np.ndarray = (a + b) / 2
        return mid
    return a if a is not None else b


def shoulders(sample: Sample, min_score: float) -> np.ndarray | None:
    return midpoint(sample, L_SHOULDER, R_SHOULDER, min_score)


def hips(sample: Sample, min_score: float) -> np.ndarray | None:
    return midpoint(sample, L_HIP, R_HIP, min_score)


def box_height(box: Box) -> float:
    return max(box[3] - box[1], 1.0)


def body_unit(sample: Sample, min_score: float) -> float:
    """The person's torso length in pixels (measured or estimated; module docstring)."""
    top, bottom = shoulders(sample, min_score), hips(sample, min_score)
    if top is not None and bottom is not None:
        torso = float(np.hypot(*(bottom - top)))
        if torso > 1.0:
            return torso
    ls, rs = point(sample, L_SHOULDER, min_score), point(sample, R_SHOULDER, min_score)
    if ls is not None and rs is not None:
        width = float(np.hypot(*(ls - rs)))
        if width > 1.0:
            return width * SHOULDERS_TO_TORSO
    return box_height(sample.box) * BOX_TO_TORSO


def torso_angle_deg(sample: Sample, min_score: float) -> float | None:
    """The torso's angle from vertical (0 upright, 90 horizontal), from shoulders and
    hips; None when either is unseen."""
    top, bottom = shoulders(sample, min_score), hips(sample, min_score)
    if top is None or bottom is None:
        return None
    dx, dy = bottom - top
    if dx == 0 and dy == 0:
        return None
    return math.degrees(math.atan2(abs(float(dx)), abs(float(dy))))


def is_horizontal(sample: Sample, min_score: float, horizontal_deg: float) -> bool:
    """Lying: the torso further than horizontal_deg from vertical; without a torso, a
    box clearly wider than tall (a standing person's box never is)."""
    angle = torso_angle_deg(sample, min_score)
    if angle is not None:
        return angle >= horizontal_deg
    x1, y1, x2, y2 = sample.box
    return (x2 - x1) >= 1.5 * (y2 - y1)


def anchor(box: Box) -> tuple[float, float]:
    """Where a person stands: the middle of the box's bottom edge."""
    return (box[0] + box[2]) / 2, box[3]
