"""Test media: small generated clips whose frames carry their index, broken files, and
synthetic action scenes.

Each frame has a strip of MARKER_BITS black/white cells across its top that encodes the
frame index in binary; `read_marker` decodes it from any resized copy of the frame, so
tests can check frame order without trusting timestamps.

`action_frames(action, seed)` renders a stick-figure person doing one of ACTIONS in a
random room (textures, sizes, speeds, frame rates, noise, compression): the demo model is
trained on these (tools/train_demo_model.py) and tests check it on fresh seeds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

MARKER_BITS = 10  # frame indices up to 1023
MARKER_STRIP_FRACTION = 8  # the strip is 1/8 of the frame height
BOX_STEP_PX = 4  # moving-box: horizontal motion per frame, in clip pixels
PATTERNS = ("moving-box", "still", "noise")
TEXTURE_SEED = 1234


def texture(height: int, width: int, seed: int) -> np.ndarray:
    """Smooth random grey texture (uint8): optical flow needs texture to lock onto."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(max(height // 8, 2), max(width // 8, 2)), dtype=np.uint8)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)


def draw_marker(frame: np.ndarray, index: int) -> None:
    """Paint `index` in binary (MSB first) across the top strip of `frame`, in place."""
    height, width = frame.shape[:2]
    strip_h = max(height // MARKER_STRIP_FRACTION, 4)
    for bit in range(MARKER_BITS):
        x0, x1 = bit * width // MARKER_BITS, (bit + 1) * width // MARKER_BITS
        on = (index >> (MARKER_BITS - 1 - bit)) & 1
        frame[:strip_h, x0:x1] = 255 if on else 0


def read_marker(frame: np.ndarray) -> int:
    """Decode the frame index painted by draw_marker (works on resized frames)."""
    height, width = frame.shape[:2]
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    y = max(height // MARKER_STRIP_FRACTION, 4) // 2
    value = 0
    for bit in range(MARKER_BITS):
        x = (2 * bit + 1) * width // (2 * MARKER_BITS)
        value = (value << 1) | int(gray[y, x] >= 128)
    return value


def box_rect(index: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """moving-box: (x, y, w, h) of the box in frame `index`; it moves left to right."""
    width, height = size
    box_w, box_h = width // 4, height // 3
    x = (index * BOX_STEP_PX) % max(width - box_w, 1)
    return x, height // 2 - box_h // 2, box_w, box_h


def pattern_frame(pattern: str, index: int, size: tuple[int, int]) -> np.ndarray:
    """Frame `index` (BGR uint8, size = (width, height)) of `pattern`, without a marker."""
    width, height = size
    if pattern == "noise":
        gray = np.random.default_rng(index).integers(0, 256, (height, width), dtype=np.uint8)
    elif pattern == "still":
        gray = texture(height, width, TEXTURE_SEED)
    elif pattern == "moving-box":
        gray = texture(height, width, TEXTURE_SEED) // 2  # dim background, bright box
        x, y, box_w, box_h = box_rect(index, size)
        box = texture(box_h, box_w, TEXTURE_SEED + 1) // 2 + 128
        gray[y : y + box_h, x : x + box_w] = box
    else:
        raise ValueError(f"unknown pattern {pattern!r}; use one of {PATTERNS}")
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)


def make_clip(
    path: Path | str,
    frames: int = 30,
    size: tuple[int, int] = (160, 120),
    fps: float = 10.0,
    pattern: str = "moving-box",
    codec: str = "mp4v",
    marker: bool = True,
) -> Path:
    """Write a clip of `frames` frames with cv2.VideoWriter; frame i carries marker i."""
    path = Path(path)
    if frames > 2**MARKER_BITS:
        raise ValueError(f"at most {2**MARKER_BITS} frames fit the marker")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"cv2.VideoWriter cannot write {path} with codec {codec!r}")
    try:
        for index in range(frames):
            frame = pattern_frame(pattern, index, size)
            if marker:
                draw_marker(frame, index)
            writer.write(frame)
    finally:
        writer.release()
    return path


def make_corrupt_file(path: Path | str) -> Path:
    """Write a file that looks like an MP4 (ftyp box) but holds no decodable video."""
    path = Path(path)
    rng = np.random.default_rng(7)
    header = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
    path.write_bytes(header + rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path


# --- synthetic action scenes -----------------------------------------------------------

ACTIONS = ("idle", "walk_left", "walk_right", "walk_towards", "walk_away", "gesture")
ACTION_SIZE = (320, 240)  # rendered frame size (width, height)
GESTURE_MIN_CYCLES = 0.4  # arm cycles a gesture shows at least within a clip
SKIN_BGR = ((60, 90, 150), (90, 130, 190), (130, 170, 220), (40, 60, 100), (110, 150, 200))


@dataclass(frozen=True)
class Pose:
    """A figure in one frame: feet centre (x, y) and height in pixels; limb angles in
    radians in image terms (0 points down, +pi/2 right, pi up)."""

    x: float
    y: float
    height: float
    legs: tuple[float, float]
    arms: tuple[tuple[float, float], tuple[float, float]]  # (upper, fore), left then right


def action_frames(
    action: str, seed: int, frames: int = 17, size: tuple[int, int] = ACTION_SIZE
) -> np.ndarray:
    """(frames, height, width, 3) uint8 BGR of a random scene showing `action`.

    idle: an empty room or someone standing still; walk_left / walk_right: someone
    crossing the view; walk_towards / walk_away: someone walking to or from the camera
    (growing and moving down, or shrinking and moving up); gesture: someone standing in
    place moving their arms (waving, signing, raising an arm). Speeds and rhythms are
    drawn for frame rates from about 8 to 30 fps.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; use one of {ACTIONS}")
    rng = np.random.default_rng(seed)
    width, height = size
    background = _room(rng, width, height)
    time_scale = rng.uniform(1.0, 3.5)  # frame period in units of 1/30 s
    poses = _POSES[action](rng, frames, width, height, time_scale)
    look = _Look(rng, width, height)
    return np.stack(
        [
            look.finish(_draw(background, pose, look), i, rng)
            if pose
            else look.finish(background.astype(np.float32), i, rng)
            for i, pose in enumerate(poses)
        ]
    )


def make_action_clip(
    path: Path | str,
    action: str,
    seed: int,
    frames: int = 48,
    fps: float = 15.0,
    size: tuple[int, int] = ACTION_SIZE,
) -> Path:
    """Write action_frames(...) as a video file (for end-to-end runs of the daemon)."""
    path = Path(path)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    try:
        for frame in action_frames(action, seed, frames, size):
            writer.write(frame)
    finally:
        writer.release()
    return path


def _room(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    wall = rng.integers(60, 240, 3).astype(np.float32)
    floor_y = int(rng.uniform(0.35, 0.8) * height)
    shade = texture(height, width, int(rng.integers(1 << 30))).astype(np.float32) / 255
    room = np.empty((height, width, 3), np.float32)
    # Plain walls as often as textured ones: optical flow is least reliable on them.
    plain = rng.random() < 0.4
    room[:] = wall * (
        1 + rng.uniform(*((0, 0.05) if plain else (0.05, 0.6))) * (shade[..., None] - 0.5)
    )
    floor = rng.integers(30, 200, 3).astype(np.float32)
    stripes = np.sin(np.arange(width) * rng.uniform(0.05, 0.4))[None, :, None]
    room[floor_y:] = floor * (1 + rng.uniform(0, 0.3) * stripes)
    for _ in range(int(rng.integers(0, 4))):  # furniture, doors, screens
        x, y = int(rng.uniform(0, width)), int(rng.uniform(0, height))
        w, h = int(rng.uniform(0.05, 0.3) * width), int(rng.uniform(0.05, 0.5) * height)
        room[y : y + h, x : x + w] = rng.integers(0, 256, 3)
    return np.clip(room, 0, 255)


class _Look:
    """A figure's colours and clothes texture, and the camera's noise, for one clip."""

    def __init__(self, rng: np.random.Generator, width: int, height: int) -> None:
        self.skin = np.array(SKIN_BGR[int(rng.integers(len(SKIN_BGR)))], np.float32)
        self.top = rng.integers(0, 256, 3).astype(np.float32)
        self.bottom = rng.integers(0, 256, 3).astype(np.float32)
        amount = rng.uniform(0.0, 0.8)
        cloth = texture(2 * height, 2 * width, int(rng.integers(1 << 30))) / 255 - 0.5
        self.cloth = (1 + amount * cloth).astype(np.float32)
        self.arm, self.hand = rng.uniform(0.05, 0.1), rng.uniform(0.03, 0.06)  # of height
        # Noise as compressed video shows it: mostly the same from frame to frame (a
        # static field), a little that changes (two fields shifted at random per frame:
        # drawing a fresh field per frame is most of the rendering time), and blotches
        # where the encoder refreshes a region or the exposure steps.
        self.static = rng.standard_normal((height, width, 3), np.float32) * rng.uniform(0, 4)
        changing = rng.uniform(0, 2.5) if rng.random() < 0.5 else rng.uniform(0, 0.6)
        self.noise = rng.standard_normal((2, height, width, 3), np.float32) * changing
        self.blotches = np.zeros((height, width, 1), np.float32)
        self.blotch_chance = rng.uniform(0, 0.3)
        self.flicker = rng.uniform(0, 0.02)
        self.jpeg = int(rng.integers(35, 95)) if rng.random() < 0.5 else 0
        self.jitter_px = rng.uniform(0, 0.5) if rng.random() < 0.2 else 0.0

    def finish(self, frame: np.ndarray, index: int, rng: np.random.Generator) -> np.ndarray:
        """Camera effects: exposure flicker, shake, sensor noise, compression."""
        frame = frame * (1 + self.flicker * rng.standard_normal())
        if self.jitter_px:
            dx, dy = rng.normal(0, self.jitter_px, 2)
            frame = cv2.warpAffine(
                frame,
                np.float32([[1, 0, dx], [0, 1, dy]]),
                frame.shape[1::-1],
                borderMode=cv2.BORDER_REPLICATE,
            )
        height, width = frame.shape[:2]
        if rng.random() < self.blotch_chance:
            x, y = int(rng.integers(width)), int(rng.integers(height))
            w, h = int(rng.uniform(0.05, 0.3) * width), int(rng.uniform(0.05, 0.3) * height)
            self.blotches[y : y + h, x : x + w] += rng.uniform(-4, 4)
        shift = tuple(int(v) for v in rng.integers(0, (height, width)))
        frame = (
            frame + self.static + self.blotches + np.roll(self.noise[index % 2], shift, axis=(0, 1))
        )
        out = np.clip(frame, 0, 255).astype(np.uint8)
        if self.jpeg:
            _, data = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg])
            out = cv2.imdecode(data, cv2.IMREAD_COLOR)
        return out


def _draw(background: np.ndarray, pose: Pose, look: _Look) -> np.ndarray:
    """The background with the figure composited in (float32 BGR)."""
    height, width = background.shape[:2]
    layer = np.zeros_like(background)
    mask = np.zeros((height, width), np.float32)
    scale = 16.0  # cv2 drawing with 4 fractional bits

    def point(u: float, v: float) -> tuple[int, int]:
        return (int((pose.x + u * pose.height) * scale), int((pose.y + v * pose.height) * scale))

    def limb(
        start: tuple[float, float],
        angles: tuple[float, float],
        lengths: tuple[float, float],
        thick: float,
        colour: np.ndarray,
        end_colour: np.ndarray | None = None,
    ) -> None:
        u, v = start
        for angle, length in zip(angles, lengths):
            nu, nv = u + length * np.sin(angle), v + length * np.cos(angle)
            for img, col in ((layer, colour.tolist()), (mask, 1.0)):
                cv2.line(
                    img,
                    point(u, v),
                    point(nu, nv),
                    col,
                    max(1, int(thick * pose.height)),
                    cv2.LINE_AA,
                    4,
                )
            u, v = nu, nv
        if end_colour is not None:  # a hand
            for img, col in ((layer, end_colour.tolist()), (mask, 1.0)):
                cv2.circle(
                    img, point(u, v), int(look.hand * pose.height * scale), col, -1, cv2.LINE_AA, 4
                )

    for side, swing in zip((-1, 1), pose.legs):
        limb((0.06 * side, -0.47), (swing, swing * 0.5), (0.25, 0.24), 0.08, look.bottom)
    torso = np.array(
        [point(-0.14, -0.83), point(0.14, -0.83), point(0.11, -0.45), point(-0.11, -0.45)], np.int32
    )
    for img, col in ((layer, look.top.tolist()), (mask, 1.0)):
        cv2.fillConvexPoly(img, torso, col, cv2.LINE_AA, 4)
        cv2.circle(
            img,
            point(0, -0.92),
            int(0.07 * pose.height * scale),
            look.skin.tolist() if img is layer else 1.0,
            -1,
            cv2.LINE_AA,
            4,
        )
    for side, angles in zip((-1, 1), pose.arms):
        limb((0.15 * side, -0.81), angles, (0.17, 0.16), look.arm, look.top, look.skin)
    k = pose.height / background.shape[0]  # the clothes texture moves with the figure
    warp = np.float32([[k, 0, pose.x - k * width], [0, k, pose.y - k * height]])
    cloth = cv2.warpAffine(look.cloth, warp, (width, height), borderMode=cv2.BORDER_REFLECT)
    m = mask[..., None]
    return background * (1 - m) + layer * cloth[..., None] * m


def _phase(rng: np.random.Generator, frames: int, rate: float) -> np.ndarray:
    return rng.uniform(0, 2 * np.pi) + rate * np.arange(frames)


def _walk_pose(x: float, y: float, height: float, phase: float, leg: float, arm: float) -> Pose:
    s = np.sin(phase)
    bob = 0.01 * height * abs(np.cos(phase))
    return Pose(
        x,
        y - bob,
        height,
        (leg * s, -leg * s),
        ((-arm * s, -arm * s + 0.2), (arm * s, arm * s + 0.2)),
    )


def _lateral(direction: int) -> Callable[..., list[Pose | None]]:
    def poses(rng: np.random.Generator, n: int, w: int, h: int, ts: float) -> list[Pose | None]:
        height = rng.uniform(0.3, 1.0) * h
        y = max(rng.uniform(0.55, 1.05) * h, height - 0.05 * h)
        speed = direction * rng.uniform(0.003, 0.02) * w * ts
        x = rng.uniform(0.05, 0.95) * w + speed * (np.arange(n) - n / 2)
        grow = rng.uniform(0.997, 1.003) ** np.arange(n)
        phase = _phase(rng, n, 2 * np.pi * abs(speed) / (1.3 * height))
        leg, arm = rng.uniform(0.25, 0.45), rng.uniform(0.1, 0.4)
        return [_walk_pose(x[i], y, height * grow[i], phase[i], leg, arm) for i in range(n)]

    return poses


def _depth(towards: bool) -> Callable[..., list[Pose | None]]:
    def poses(rng: np.random.Generator, n: int, w: int, h: int, ts: float) -> list[Pose | None]:
        rate = rng.uniform(1.006, 1.02) ** ts
        grow = (rate if towards else 1 / rate) ** (np.arange(n) - n / 2)
        # Perspective: the feet's height under the horizon scales with the figure; a camera
        # above head height (drop > 1) sees the head move down the image too.
        drop, size = rng.uniform(0.5, 2.0), rng.uniform(0.25, 1.3) * h
        feet = rng.uniform(max(0.45, size / h - 0.1), 1.4) * h  # mid-clip: head in view
        horizon = feet - drop * size
        height = size * grow
        vanish, off = rng.uniform(0.2, 0.8) * w, rng.uniform(-0.6, 0.6)
        drift = rng.uniform(-0.003, 0.003) * w * ts * np.arange(n)
        phase = _phase(rng, n, rng.uniform(0.15, 0.25) * ts)
        leg, arm = rng.uniform(0.05, 0.2), rng.uniform(0.05, 0.2)
        return [
            _walk_pose(
                vanish + off * height[i] + drift[i],
                horizon + drop * height[i],
                height[i],
                phase[i],
                leg,
                arm,
            )
            for i in range(n)
        ]

    return poses


def _standing(
    rng: np.random.Generator, n: int, w: int, h: int, big: float
) -> tuple[np.ndarray, float, float]:
    """Feet x per frame (a slight sway), feet y and height of someone standing."""
    height = rng.uniform(0.35, big) * h
    y = (
        rng.uniform(0.02, 0.3) * h + height
        if rng.random() < 0.5
        else max(rng.uniform(0.6, 1.0) * h, height)
    )
    # Nobody stands perfectly still: a slow sway or shift of weight.
    sway = rng.uniform(0, 0.015) * height * np.sin(_phase(rng, n, rng.uniform(0.02, 0.1)))
    return rng.uniform(0.15, 0.85) * w + sway, y, height


def _gesture(rng: np.random.Generator, n: int, w: int, h: int, ts: float) -> list[Pose | None]:
    x, y, height = _standing(rng, n, w, h, 1.7)
    mode = rng.integers(4)
    low, high = {0: (0.05, 0.12), 1: (0.02, 0.08), 2: (0.015, 0.04), 3: (0.02, 0.05)}[int(mode)]
    low = max(low, GESTURE_MIN_CYCLES / (n * ts))  # visibly moving within the clip
    phases = [_phase(rng, n, 2 * np.pi * rng.uniform(low, max(low, high)) * ts) for _ in range(2)]
    amp = rng.uniform(0.45, 0.9)
    both = rng.random() < 0.5 or mode in (1, 3)
    arms = []
    for side, ph in zip((-1, 1), phases):
        moving = both or side == (1 if rng.random() < 0.5 else -1)
        if not moving:
            arms.append(np.full((n, 2), side * 0.1))
        elif mode == 0:  # wave: forearm up, swinging
            up = side * rng.uniform(1.6, 2.4)
            arms.append(np.stack([np.full(n, up), up + side * 0.6 + amp * np.sin(ph)], 1))
        elif mode == 1:  # signing: forearms across the body
            upper = side * rng.uniform(0.1, 0.5) + 0.3 * amp * np.sin(ph)
            arms.append(np.stack([upper, -side * rng.uniform(1.2, 2.0) + amp * np.cos(ph)], 1))
        elif mode == 2:  # raising and lowering an arm
            lift = side * (0.2 + rng.uniform(1.0, 2.5) * (1 - np.cos(ph)) / 2)
            arms.append(np.stack([lift, lift], 1))
        else:  # hands up to the chest and down again
            bend = (1 - np.cos(ph)) / 2
            arms.append(np.stack([side * 0.3 * bend, -side * rng.uniform(1.4, 2.2) * bend], 1))
    return [
        Pose(x[i], y, height, (0.05, -0.05), (tuple(arms[0][i]), tuple(arms[1][i])))
        for i in range(n)
    ]


def _idle(rng: np.random.Generator, n: int, w: int, h: int, ts: float) -> list[Pose | None]:
    if rng.random() < 0.4:
        return [None] * n
    x, y, height = _standing(rng, n, w, h, 1.5)
    left, right = -rng.uniform(0, 0.4), rng.uniform(0, 0.4)
    # Arms resting, with at most a small slow movement (fidgeting is not a gesture).
    fidget = rng.uniform(0, 0.12) * np.sin(_phase(rng, n, rng.uniform(0.02, 0.1)))
    return [
        Pose(x[i], y, height, (0.05, -0.05), ((left + fidget[i], left), (right - fidget[i], right)))
        for i in range(n)
    ]


_POSES: dict[str, Callable[..., list[Pose | None]]] = {
    "idle": _idle,
    "walk_left": _lateral(-1),
    "walk_right": _lateral(1),
    "walk_towards": _depth(True),
    "walk_away": _depth(False),
    "gesture": _gesture,
}
