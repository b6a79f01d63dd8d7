"""Walking towards or away from the camera: two cues that must agree, from the parts of
the body in view. A person's size alone is no distance cue: a box cut by the frame's top
or bottom edge says how much of them is in view, and someone turning in place narrows
or widens without moving.

- Size: the box's height (the torso where every sample shows it) while the box is clear
  of the frame's top and bottom edges, and the shoulder width; one must grow (towards)
  or shrink (away) by walk_growth of itself per second, and none the other way as fast.
  On a camera looking down the shoulder width is the steadier of the two: the torso's
  and the box's apparent length also change with the angle they are seen at.
- Height in the frame: the lowest left/right pair in view (ankles, else hips, else
  shoulders) must move down (towards) or up (away) by walk_rise body units per second.
  Walking away from a camera mounted above that part brings it up towards the horizon:
  by about 2 v sin(theta) body units per second (v metres per second, theta the angle
  below the camera the part is seen at, a body unit 0.5 m), e.g. 0.68 at 1 m/s, 20 deg.

A head turning or tilting moves neither cue; bending, sitting down or standing up moves
the body up or down at one size; turning changes the size in place. A keypoint counts
only when seen (keypoint_score) and clear of the frame's top and bottom edges; a cue
counts when the samples showing its parts still fill the window. On a camera level with
the body's parts in view there is no rise, so no towards/away; and with only head and
shoulders in view a deep bend towards the camera looks like a step towards it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from daemon.config import PeopleConfig
from daemon.people.body import body_unit, box_height, hips, shoulders
from daemon.people.person import L_ANKLE, L_HIP, L_SHOULDER, R_ANKLE, R_HIP, R_SHOULDER, Sample

# A box within this share of the frame's height of its top or bottom edge is cut by it.
EDGE_MARGIN = 0.02
# A keypoint within this share of the frame's height of its top or bottom edge may be a
# part leaving the frame (the pose model puts those on the border): not a cue.
KEYPOINT_EDGE_MARGIN = 0.05
SHOULDER_PAIR, HIP_PAIR, ANKLE_PAIR = (L_SHOULDER, R_SHOULDER), (L_HIP, R_HIP), (L_ANKLE, R_ANKLE)
MIN_CUE_SAMPLES = 3
# A cue's samples (those showing its parts) must span this share of the window.
MIN_CUE_COVER = 0.6


def slope(t: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of y over t (units of y per second)."""
    tc = t - t.mean()
    denom = float((tc * tc).sum())
    return float((tc * (y - y.mean())).sum() / denom) if denom > 0 else 0.0


def approach(samples: Sequence[Sample], cfg: PeopleConfig, frame_height: int) -> int:
    """Towards (1), away (-1) or neither (0) over the window's samples (module doc)."""
    size = _size_direction(samples, cfg, frame_height)
    rise = _rise(samples, cfg, frame_height) if size else None
    if rise is None or rise * size > -cfg.walk_rise:
        return 0  # no size change, no height cue, or the height does not agree
    return size


def _size_direction(samples: Sequence[Sample], cfg: PeopleConfig, frame_height: int) -> int:
    """Grows (1), shrinks (-1) or neither (0): every size cue the samples give."""
    growths = []
    margin = EDGE_MARGIN * frame_height
    if not any(s.box[1] <= margin or s.box[3] >= frame_height - margin for s in samples):
        growths.append(slope(_times(samples), np.log(_whole_sizes(samples, cfg.keypoint_score))))
    shown = _showing(samples, SHOULDER_PAIR, cfg, frame_height)
    if shown:
        xy = np.array([[s.keypoints[i, :2] for i in SHOULDER_PAIR] for s in shown])
        widths = np.maximum(np.hypot(*(xy[:, 1] - xy[:, 0]).T), 1.0)
        growths.append(slope(_times(shown), np.log(widths)))
    signs = {int(np.sign(g)) for g in growths if abs(g) >= cfg.walk_growth}
    return signs.pop() if len(signs) == 1 else 0  # none, or two cues at odds


def _rise(samples: Sequence[Sample], cfg: PeopleConfig, frame_height: int) -> float | None:
    """How fast the lowest pair in view moves up the frame, in body units per second."""
    for pair in (ANKLE_PAIR, HIP_PAIR, SHOULDER_PAIR):
        shown = _showing(samples, pair, cfg, frame_height)
        if shown:
            ys = np.array([float(s.keypoints[list(pair), 1].mean()) for s in shown])
            unit = float(np.median([body_unit(s, cfg.keypoint_score) for s in shown]))
            return -slope(_times(shown), ys) / unit
    return None


def _showing(
    samples: Sequence[Sample], pair: tuple[int, int], cfg: PeopleConfig, frame_height: int
) -> list[Sample]:
    """The samples showing both keypoints of a pair clear of the frame's top and bottom
    edges, when they still fill the window (else [])."""
    low, high = KEYPOINT_EDGE_MARGIN * frame_height, (1 - KEYPOINT_EDGE_MARGIN) * frame_height
    shown = []
    for s in samples:
        kp = s.keypoints[list(pair)]
        if ((kp[:, 2] >= cfg.keypoint_score) & (kp[:, 1] >= low) & (kp[:, 1] <= high)).all():
            shown.append(s)
    if len(shown) < MIN_CUE_SAMPLES:
        return []
    covered = shown[-1].t_s - shown[0].t_s >= MIN_CUE_COVER * cfg.walk_window_s
    return shown if covered else []


def _times(samples: Sequence[Sample]) -> np.ndarray:
    return np.array([s.t_s for s in samples])


def _whole_sizes(samples: Sequence[Sample], min_score: float) -> np.ndarray:
    """One size measure for the whole window: the torso length where every sample has
    it, else the box height (mixing the two would read as a size change)."""
    torsos = []
    for s in samples:
        top, bottom = shoulders(s, min_score), hips(s, min_score)
        if top is None or bottom is None:
            return np.array([box_height(s.box) for s in samples])
        torsos.append(max(float(np.hypot(*(bottom - top))), 1.0))
    return np.array(torsos)
