"""The action rules: each looks at one track's recent samples and says which of its
actions hold now. Parameters come from [people] (PeopleConfig); lengths are in body
units (daemon.people.body), durations in seconds of media time.

The rules say only whether an action holds at this sample; how long it must hold to
become an event, and how long it may pause, is the hysteresis' job (hysteresis.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from daemon.config import PeopleConfig
from daemon.people.approach import approach, slope
from daemon.people.body import body_unit, hips, is_horizontal, point, shoulders, torso_angle_deg
from daemon.people.person import (
    L_HIP,
    L_SHOULDER,
    L_WRIST,
    R_HIP,
    R_SHOULDER,
    R_WRIST,
    Sample,
    box_centre,
)

ARMS = ((L_WRIST, L_SHOULDER), (R_WRIST, R_SHOULDER))
MIN_WINDOW_SAMPLES = 3
# A window's samples must span this share of it before a rule over it may say yes.
MIN_WINDOW_COVER = 0.6
# Wrist paths are measured on this grid of media time (the nearest sample to each
# point), so their length does not grow with the analysis rate's keypoint jitter.
PATH_GRID_S = 0.2
# People walk upright: a torso leaning further than this from vertical is not walking
# (it is falling, bending or lying).
WALK_MAX_LEAN_DEG = 45.0


def window(history: Sequence[Sample], span_s: float) -> list[Sample]:
    """The samples within span_s of the newest one, or [] when they cover too little."""
    if not history:
        return []
    newest = history[-1].t_s
    recent = [s for s in history if s.t_s >= newest - span_s]
    covered = recent[-1].t_s - recent[0].t_s >= MIN_WINDOW_COVER * span_s
    return recent if len(recent) >= MIN_WINDOW_SAMPLES and covered else []


def walking(history: Sequence[Sample], cfg: PeopleConfig, frame_height: int) -> set[str]:
    """walking_left/right from the body's speed across the frame, walking_towards/away
    when its size and its height in the frame agree (daemon.people.approach), both over
    walk_window_s."""
    samples = window(history, cfg.walk_window_s)
    if not samples:
        return set()
    k = cfg.keypoint_score
    lean = torso_angle_deg(samples[-1], k)
    if (lean is not None and lean > WALK_MAX_LEAN_DEG) or is_horizontal(
        samples[-1], k, cfg.horizontal_deg
    ):
        return set()  # falling or lying: not walking
    t = np.array([s.t_s for s in samples])
    x = _positions_x(samples, k)
    units = np.array([body_unit(s, k) for s in samples])
    actions = set()
    speed = slope(t, x) / float(np.median(units))
    if abs(speed) >= cfg.walk_speed:
        actions.add("walking_right" if speed > 0 else "walking_left")
    direction = approach(samples, cfg, frame_height)
    if direction:
        actions.add("walking_towards" if direction > 0 else "walking_away")
    return actions


def _positions_x(samples: Sequence[Sample], min_score: float) -> np.ndarray:
    """Where the body is across the frame: the middle of the hips where every sample
    shows both (the body's centre; arms and a turning head move the box), else of the
    shoulders, else the box centre. One side alone is no middle: it lies half a body's
    width off, and would read as a step when the other side comes into view."""
    for left, right in ((L_HIP, R_HIP), (L_SHOULDER, R_SHOULDER)):
        kp = np.array([s.keypoints[[left, right]] for s in samples])
        if (kp[:, :, 2] >= min_score).all():
            return np.asarray(kp[:, :, 0].mean(axis=1), dtype=np.float64)
    return np.array([box_centre(s.box)[0] for s in samples])


def _raised(sample: Sample, wrist: int, shoulder: int, cfg: PeopleConfig) -> bool:
    w, s = point(sample, wrist, cfg.keypoint_score), point(sample, shoulder, cfg.keypoint_score)
    if w is None or s is None:
        return False
    return bool(w[1] < s[1] - cfg.raised_margin * body_unit(sample, cfg.keypoint_score))


def hand_raised(history: Sequence[Sample], cfg: PeopleConfig) -> bool:
    """A wrist above its shoulder by raised_margin body units, in the newest sample."""
    return bool(history) and any(_raised(history[-1], w, s, cfg) for w, s in ARMS)


def waving(history: Sequence[Sample], cfg: PeopleConfig) -> bool:
    """A raised wrist swinging sideways: at least wave_swings reversals of at least
    wave_amplitude body units within wave_window_s."""
    samples = window(history, cfg.wave_window_s)
    for wrist, shoulder in ARMS:
        xs = []
        for s in samples:
            top = shoulders(s, cfg.keypoint_score)
            if top is not None and _raised(s, wrist, shoulder, cfg):
                w = s.keypoints[wrist]
                xs.append((float(w[0]) - float(top[0])) / body_unit(s, cfg.keypoint_score))
        if _reversals(xs, cfg.wave_amplitude) >= cfg.wave_swings:
            return True
    return False


def _reversals(xs: Sequence[float], amplitude: float) -> int:
    """How often the series turns back after moving at least `amplitude` one way."""
    if not xs:
        return 0
    turns, direction = 0, 0
    low = high = extreme = xs[0]
    for x in xs[1:]:
        if direction == 0:  # not moving yet: wait for a first move of `amplitude`
            low, high = min(low, x), max(high, x)
            if x - low >= amplitude or high - x >= amplitude:
                direction, extreme = (1 if x - low >= amplitude else -1), x
        elif (x - extreme) * direction > 0:  # further the same way
            extreme = x
        elif abs(x - extreme) >= amplitude:  # back by `amplitude`: a swing
            turns, direction, extreme = turns + 1, -direction, x
    return turns


def gesturing(history: Sequence[Sample], cfg: PeopleConfig) -> bool:
    """A wrist in front of the torso (between the shoulders' sides, from shoulder height
    to about the hips) of a person facing the camera, moving at gesture_speed body units
    per second or more, relative to the shoulders, over gesture_window_s. From behind,
    hands in front of the body are hidden and the pose model only guesses the wrists."""
    samples = window(history, cfg.gesture_window_s)
    for wrist, _ in ARMS:
        path: list[tuple[float, np.ndarray]] = []
        for s in on_grid(samples, PATH_GRID_S):
            rel = _in_front(s, wrist, cfg.keypoint_score)
            if rel is not None:
                path.append((s.t_s, rel))
        if len(path) < MIN_WINDOW_SAMPLES or 2 * len(path) < len(on_grid(samples, PATH_GRID_S)):
            continue
        travelled = sum(float(np.hypot(*(b - a))) for (_, a), (_, b) in zip(path, path[1:]))
        duration_s = path[-1][0] - path[0][0]
        if duration_s > 0 and travelled / duration_s >= cfg.gesture_speed:
            return True
    return False


def on_grid(samples: Sequence[Sample], step_s: float) -> list[Sample]:
    """The sample nearest to each point of a step_s grid ending at the newest sample
    (each sample once), oldest first."""
    if not samples:
        return []
    times = np.array([s.t_s for s in samples])
    points = np.arange(times[-1], times[0] - step_s / 2, -step_s)[::-1]
    picks = dict.fromkeys(int(np.argmin(np.abs(times - p))) for p in points)
    return [samples[i] for i in picks]


def _in_front(sample: Sample, wrist: int, min_score: float) -> np.ndarray | None:
    """The wrist relative to the shoulders' middle, in body units, when it is in front
    of the torso; else None."""
    w = point(sample, wrist, min_score)
    ls, rs = point(sample, L_SHOULDER, min_score), point(sample, R_SHOULDER, min_score)
    if w is None or ls is None or rs is None or ls[0] <= rs[0]:
        return None  # unseen, or seen from behind (the left shoulder on the image's left)
    unit = body_unit(sample, min_score)
    rel = (w - (ls + rs) / 2) / unit
    half_width = abs(float(ls[0] - rs[0])) / 2 / unit + 0.25
    if abs(float(rel[0])) <= half_width and -0.25 <= float(rel[1]) <= 1.1:
        return np.asarray(rel, dtype=np.float64)
    return None


def fall(history: Sequence[Sample], cfg: PeopleConfig) -> bool:
    """The body dropped at least fall_drop body units within fall_window_s and is
    horizontal now."""
    samples = window(history, cfg.fall_window_s)
    if not samples or not is_horizontal(samples[-1], cfg.keypoint_score, cfg.horizontal_deg):
        return False
    k = cfg.keypoint_score
    heights = [_centre_y(s, k) for s in samples]
    unit = max(body_unit(s, k) for s in samples)  # the upright samples measure it best
    return heights[-1] - min(heights) >= cfg.fall_drop * unit


def _centre_y(sample: Sample, min_score: float) -> float:
    """The body's height in the frame: hips, else shoulders, else the box centre."""
    for part in (hips(sample, min_score), shoulders(sample, min_score)):
        if part is not None:
            return float(part[1])
    return box_centre(sample.box)[1]


def lying(history: Sequence[Sample], cfg: PeopleConfig) -> bool:
    """Horizontal in the newest sample (the hysteresis holds it lying_s)."""
    return bool(history) and is_horizontal(history[-1], cfg.keypoint_score, cfg.horizontal_deg)


def body_actions(history: Sequence[Sample], cfg: PeopleConfig, frame_height: int) -> set[str]:
    """Every body rule's actions that hold at the newest sample."""
    actions = walking(history, cfg, frame_height)
    for name, rule in (
        ("hand_raised", hand_raised),
        ("waving", waving),
        ("gesturing", gesturing),
        ("fall", fall),
        ("lying", lying),
    ):
        if rule(history, cfg):
            actions.add(name)
    return actions


def history_span_s(cfg: PeopleConfig) -> float:
    """How much history the rules need."""
    return max(cfg.walk_window_s, cfg.wave_window_s, cfg.gesture_window_s, cfg.fall_window_s)
