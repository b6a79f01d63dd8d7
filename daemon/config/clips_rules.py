"""The [clips] section's checks: each key's range (fields.py applies them) and the rules
between its keys (rules.py)."""

from __future__ import annotations

from daemon.config.loader import Check, ConfigError, at_least, greater_than, within
from daemon.config.schema import MAX_FPS, ClipsConfig

MAX_ROLL_S = 30.0  # pre/post-roll: the pre-roll is held in memory per camera
MAX_CLIP_S = 3600.0
MIN_CLIP_WIDTH = 64  # VP8 at less than this is not worth looking at
MAX_CLIP_WIDTH = 3840


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
