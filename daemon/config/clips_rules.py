"""The [clips] section's checks: each key's range (fields.py applies them) and the rules
between its keys (rules.py)."""

from __future__ import annotations

from daemon.config.loader import Check, ConfigError, at_least, greater_than, within
from daemon.config.schema import MAX_FPS, CameraConfig, ClipsConfig

MAX_ROLL_S = 30.0  # pre/post-roll: the pre-roll is held in memory per camera
MAX_CLIP_S = 3600.0
MIN_CLIP_WIDTH = 64  # VP8 at less than this is not worth looking at
MAX_CLIP_WIDTH = 3840
# The overlay's clip frames in memory: the pre-roll keeps PRE_ROLL_SLACK_S more than
# pre_roll_s (a start reported late), the encoder's queue QUEUE_S of frames.
PRE_ROLL_SLACK_S = 2.0
QUEUE_S = 2.0
MAX_CLIP_MEMORY_MB = 512.0  # per camera; the defaults take about 48 MB at 640 x 360
BYTES_PER_PIXEL = 3
BYTES_PER_MB = 1024 * 1024


def clips_field_rules() -> dict[str, Check]:
    """Each [clips] key's range on its own."""
    return {
        "pre_roll_s": within(0.0, MAX_ROLL_S, " s"),
        "post_roll_s": within(0.0, MAX_ROLL_S, " s"),
        "max_clip_s": within(1.0, MAX_CLIP_S, " s"),
        "fps": within(1.0, MAX_FPS, ""),
        "max_width": within(MIN_CLIP_WIDTH, MAX_CLIP_WIDTH, " px"),
        "max_age_days": greater_than(0),
        "max_total_mb": greater_than(0),
        "min_free_mb": at_least(0),
    }


def check_clips(clips: ClipsConfig, file: str) -> None:
    """ConfigError for the first rule between [clips] keys that the config breaks."""
    if clips.pre_roll_s + clips.post_roll_s >= clips.max_clip_s:
        raise ConfigError(
            file,
            "clips.max_clip_s",
            f"must be longer than clips.pre_roll_s + clips.post_roll_s "
            f"({clips.max_clip_s:g} <= {clips.pre_roll_s:g} + {clips.post_roll_s:g} s): "
            "a clip would end before its event could be seen",
        )


def clip_frame_size(width: int, height: int, max_width: int) -> tuple[int, int]:
    """The size a camera's frames are kept and written at in its clips: scaled down to
    max_width (never up), even sides for the encoder."""
    scale = min(1.0, max_width / width)
    return _even(width * scale), _even(height * scale)


def clip_memory_bytes(clips: ClipsConfig, cam: CameraConfig) -> float:
    """The most one camera's clip frames hold in memory: (pre_roll_s + PRE_ROLL_SLACK_S
    + QUEUE_S) x the rate frames are kept at x one scaled-down frame."""
    width, height = clip_frame_size(cam.width, cam.height, clips.max_width)
    rate = min(clips.fps, cam.fps) if cam.fps > 0 else clips.fps
    seconds = clips.pre_roll_s + PRE_ROLL_SLACK_S + QUEUE_S
    return seconds * rate * width * height * BYTES_PER_PIXEL


def check_clip_memory(clips: ClipsConfig, cameras: tuple[CameraConfig, ...], file: str) -> None:
    """ConfigError when a camera's clip frames would hold more than MAX_CLIP_MEMORY_MB."""
    if not clips.enabled:
        return
    for i, cam in enumerate(cameras):
        memory_mb = clip_memory_bytes(clips, cam) / BYTES_PER_MB
        if cam.enabled and memory_mb > MAX_CLIP_MEMORY_MB:
            width, height = clip_frame_size(cam.width, cam.height, clips.max_width)
            raise ConfigError(
                file,
                "clips.pre_roll_s",
                f"camera {cam.name} (cameras[{i}]) would hold about {memory_mb:.0f} MB of "
                f"clip frames in memory ((clips.pre_roll_s {clips.pre_roll_s:g} + "
                f"{PRE_ROLL_SLACK_S + QUEUE_S:g} s) x {min(clips.fps, cam.fps or clips.fps):g}"
                f" fps x {width} x {height} x 3 bytes), over {MAX_CLIP_MEMORY_MB:g} MB: lower "
                "clips.pre_roll_s, clips.fps or clips.max_width",
            )


def _even(value: float) -> int:
    return max(2, int(value) // 2 * 2)
