"""Per-key value checks: the range or vocabulary each config key takes, on its own.

Checks that relate several keys, or derive a value from them, live in daemon.config.rules.
The name and topic checks are public: MQTT topics made outside the config (discovery)
hold their levels to the same rules.
"""

from __future__ import annotations

import dataclasses

from daemon.capture.table import DECODE_PRESETS
from daemon.config.clips_rules import clips_field_rules
from daemon.config.console_rules import public_url_problem, trusted_proxies_problem
from daemon.config.loader import (
    Check,
    ConfigError,
    at_least,
    between,
    greater_than,
    listen_address,
    one_of,
    within,
)
from daemon.config.schema import (
    BACKOFF_RANGE_S,
    COLOUR_ORDERS,
    COOLDOWN_RANGE_S,
    HEARTBEAT_RANGE_S,
    INTERVAL_RANGE_S,
    JPEG_QUALITY_RANGE,
    LOG_LEVELS,
    MAX_BATCH_FRAMES,
    MAX_BATCH_WAIT_MS,
    MAX_FPS,
    MAX_NAME_CHARS,
    MAX_PEOPLE,
    MAX_POSE_BATCH,
    MAX_TOPIC_PREFIX_CHARS,
    MIN_FPS,
    MIN_RING_CAPACITY,
    MODEL_ACTIVATIONS,
    MODEL_INPUTS,
    MODEL_LAYOUTS,
    MOTION_METHODS,
    NAME_PATTERN,
    RING_POLICIES,
    TIMEOUT_RANGE_S,
    CameraConfig,
    ClipsConfig,
    Config,
    ConsoleConfig,
    DaemonConfig,
    DisplayConfig,
    EventsConfig,
    InferenceConfig,
    JsonlConfig,
    MetricsConfig,
    MotionConfig,
    MqttConfig,
    PeopleConfig,
    PerceptionConfig,
    WebhookConfig,
)
from daemon.config.webhook_rules import webhook_field_rules


def name_problem(value: str) -> str | None:
    """Why `value` cannot be a camera name or device id (an MQTT topic level, a metric
    label, part of file names), or None."""
    if len(value) > MAX_NAME_CHARS:
        return (
            f"must be at most {MAX_NAME_CHARS} characters (got {len(value)}): it becomes "
            "part of shared-memory and recording file names and of MQTT topics"
        )
    if NAME_PATTERN.fullmatch(value):
        return None
    return (
        f"must be letters, digits, '_' or '-' (got {value!r}): it becomes an MQTT "
        f"topic level and a metric label"
    )


def topic_prefix_problem(value: str) -> str | None:
    """Why `value` cannot start MQTT topics (mqtt.prefix, mqtt.discovery_prefix), or None."""
    if len(value) > MAX_TOPIC_PREFIX_CHARS:
        return (
            f"must be at most {MAX_TOPIC_PREFIX_CHARS} characters (got {len(value)}): "
            "every topic starts with it"
        )
    if (
        value
        and not set(value) & set("+#\0")
        and "//" not in value
        and not value.startswith("/")
        and not value.endswith("/")
    ):
        return None
    return f"must be a non-empty MQTT topic without '+', '#' or empty levels (got {value!r})"


def _fps(value: float) -> str | None:
    if value == 0 or MIN_FPS <= value <= MAX_FPS:
        return None
    return (
        f"must be 0 (the source's own rate) or between {MIN_FPS:g} and {MAX_FPS:g} "
        f"frames per second (got {value!r})"
    )


def _optional(choices: tuple[str, ...]) -> Check:
    check = one_of(*choices)
    return lambda v: None if v == "" else f'{check(v)}; or "" for the model\'s own'


def _labels(value: tuple[str, ...]) -> str | None:
    if any(not label.strip() for label in value) or len(set(value)) != len(value):
        return f"must be distinct, non-empty labels (got {list(value)})"
    too_long = [label for label in value if len(label) > MAX_NAME_CHARS]
    if too_long:
        return (
            f"labels must be at most {MAX_NAME_CHARS} characters (got one of "
            f"{len(too_long[0])}): they become parts of MQTT topics"
        )
    return None


def _channel_values(value: tuple[float, ...]) -> str | None:
    if len(value) in (0, 1, 2, 3, 5):
        return None
    return (
        f"must hold 1 value or one per input channel (3 rgb, 2 flow, 5 rgb+flow); got {len(value)}"
    )


def _std_values(value: tuple[float, ...]) -> str | None:
    positive = all(v > 0 for v in value)
    return _channel_values(value) if positive else f"must be > 0 (got {list(value)})"


def _field_rules() -> dict[type, dict[str, Check]]:
    positive = greater_than(0)
    return {
        DaemonConfig: _daemon_rules(),
        CameraConfig: _camera_rules(),
        MotionConfig: {"method": one_of(*MOTION_METHODS), "width": positive, "height": positive},
        InferenceConfig: _inference_rules(),
        PerceptionConfig: _perception_rules(),
        DisplayConfig: {
            "mjpeg_listen": listen_address,
            "jpeg_quality": between(*JPEG_QUALITY_RANGE),
            "mjpeg_max_clients": at_least(1),
        },
        ClipsConfig: clips_field_rules(),
        MqttConfig: {
            "port": between(1, 65535),
            "keepalive_s": between(1, 65535),
            "prefix": topic_prefix_problem,
            "discovery_prefix": topic_prefix_problem,
            "outbox_max_events": at_least(1),
        },
        JsonlConfig: {"outbox_max_events": at_least(1)},
        WebhookConfig: webhook_field_rules(),
        ConsoleConfig: {
            "listen": listen_address,
            "public_url": public_url_problem,
            "trusted_proxies": trusted_proxies_problem,
            "history_max_age_days": greater_than(0),
            "history_max_events": at_least(1),
            "history_max_mb": greater_than(0),
            "outbox_max_events": at_least(1),
        },
        MetricsConfig: {"listen": listen_address},
        EventsConfig: {
            "start_windows": at_least(1),
            "end_windows": at_least(1),
            "cooldown_s": within(*COOLDOWN_RANGE_S, " s"),
            "threshold": _score,
        },
        PeopleConfig: _people_rules(),
    }


def _daemon_rules() -> dict[str, Check]:
    """[daemon]: names, log level, intervals and the crash budget."""
    interval, backoff = within(*INTERVAL_RANGE_S, " s"), within(*BACKOFF_RANGE_S, " s")
    return {
        "device_id": lambda v: None if v == "" else name_problem(v),
        "log_level": one_of(*LOG_LEVELS),
        "status_interval_s": interval,
        "heartbeat_timeout_s": within(*HEARTBEAT_RANGE_S, " s"),
        "restart_backoff_min_s": backoff,
        "restart_backoff_max_s": backoff,
        "stable_after_s": interval,
        "crash_budget": at_least(1),
        "crash_window_s": interval,
    }


def _camera_rules() -> dict[str, Check]:
    """[[cameras]]: rates, sizes, the frames ring, and the source's timeouts."""
    positive = greater_than(0)
    backoff, timeout = within(*BACKOFF_RANGE_S, " s"), within(*TIMEOUT_RANGE_S, " s")
    return {
        "name": name_problem,
        "fps": _fps,
        "analyse_fps": within(MIN_FPS, MAX_FPS, " fps"),
        "width": positive,
        "height": positive,
        "ring_capacity": at_least(MIN_RING_CAPACITY),
        "ring_policy": one_of(*RING_POLICIES),
        "open_timeout_s": timeout,
        "read_timeout_s": timeout,
        "decode": one_of(*DECODE_PRESETS),
        "reconnect_backoff_min_s": backoff,
        "reconnect_backoff_max_s": backoff,
    }


def _inference_rules() -> dict[str, Check]:
    """[inference]: threads, sizes and batching, and the model contract's overrides."""
    non_negative = at_least(0)
    return {
        "threads": non_negative,
        "clip_length": non_negative,
        "width": non_negative,
        "height": non_negative,
        "stride": at_least(1),
        "replicas": at_least(1),
        "max_batch": non_negative,
        "labels": _labels,
        "layout": _optional(MODEL_LAYOUTS),
        "input": _optional(MODEL_INPUTS),
        "colour_order": _optional(COLOUR_ORDERS),
        "mean": _channel_values,
        "std": _std_values,
        "activation": _optional(MODEL_ACTIVATIONS),
    }


def _people_rules() -> dict[str, Check]:
    """[people]: durations in seconds of media time, lengths in body units."""
    duration, fraction = within(0.0, 86400.0, " s"), within(0.0, 10.0)
    positive_s = within(0.01, 86400.0, " s")
    return {
        "keypoint_score": _score,
        "confirm_hits": at_least(1),
        "confirm_window_s": duration,
        "lost_after_s": positive_s,
        "match_iou": _score,
        "start_s": duration,
        "end_s": duration,
        "cooldown_s": within(*COOLDOWN_RANGE_S, " s"),
        "walk_window_s": positive_s,
        "walk_speed": greater_than(0),
        "walk_growth": greater_than(0),
        "walk_rise": greater_than(0),
        "raised_margin": fraction,
        "wave_window_s": positive_s,
        "wave_swings": at_least(1),
        "wave_amplitude": greater_than(0),
        "gesture_window_s": positive_s,
        "gesture_speed": greater_than(0),
        "fall_window_s": positive_s,
        "fall_drop": greater_than(0),
        "horizontal_deg": within(0.0, 90.0, " degrees"),
        "lying_s": duration,
        "loiter_s": duration,
    }


def _perception_rules() -> dict[str, Check]:
    """[perception]: the person models and the gate."""
    return {
        "threads": at_least(0),
        "replicas": at_least(1),
        "min_score": _score,
        "max_people": between(1, MAX_PEOPLE),
        "batch_frames": between(1, MAX_BATCH_FRAMES),
        "batch_wait_ms": within(0.0, MAX_BATCH_WAIT_MS, " ms"),
        "pose_batch": between(1, MAX_POSE_BATCH),
        "motion_min_share": _score,
        "keepalive_fps": within(MIN_FPS, MAX_FPS, " fps"),
    }


def _score(value: float) -> str | None:
    return None if 0.0 <= value <= 1.0 else f"must be a score between 0 and 1 (got {value!r})"


def check_fields(config: Config, file: str) -> None:
    """ConfigError for the first key whose value is out of its range or vocabulary."""
    rules = _field_rules()
    for section in dataclasses.fields(config):
        value = getattr(config, section.name)
        tables = enumerate(value) if isinstance(value, tuple) else [(None, value)]
        for index, table in tables:
            key = section.name if index is None else f"{section.name}[{index}]"
            for name, check in rules[type(table)].items():
                reason = check(getattr(table, name))
                if reason:
                    raise ConfigError(file, f"{key}.{name}", reason)
