"""Configuration: config.toml read with tomllib into frozen dataclasses.

load_config(path) parses, type-checks, range-checks and resolves a config file, raising
ConfigError(file, key, reason) for the first problem found. Paths come back resolved, so
the rest of the daemon never sees a relative path or a `sample:` source:

- camera sources of enabled cameras: `sample:<name>` becomes the absolute path of the
  clip bundled in daemon/assets; a plain file path is made absolute against the config
  file's directory and must exist; rtsp://... (any URL), /dev/videoN and test:<pattern>
  pass unchanged (a USB camera may be plugged in later, a stream may come up later: the
  source stage retries those). `source_kind()` tells the kinds apart. A disabled
  camera's source is left as written (its file may not exist yet).
- inference.model (when set; "" stays "" and means the bundled demo model) must exist;
  mqtt.ca_file and mqtt.password_file must exist when mqtt is enabled; daemon.shm_dir
  and the directories of display.record and display.frame_log must exist. These and
  daemon.state_dir are made absolute against the config file's directory; an empty
  daemon.state_dir becomes default_state_dir().
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from daemon.configpaths import (
    ASSETS_DIR, SAMPLE_PREFIX, TEST_PATTERNS, TEST_PREFIX, default_device_id, default_state_dir,
    resolve_source, source_kind,
)
from daemon.configschema import (
    COLOUR_ORDERS, LOG_LEVELS, MIN_RING_CAPACITY, MODEL_ACTIVATIONS, MODEL_INPUTS,
    MODEL_LAYOUTS, MOTION_METHODS, NAME_PATTERN, RESERVED_CAMERA_NAME, RING_POLICIES,
    ActionThreshold, CameraConfig, Config, DaemonConfig, DisplayConfig, EventsConfig,
    InferenceConfig, MetricsConfig, MotionConfig, MqttConfig,
)
from daemon.configload import (
    Check, ConfigError, absolute_path, at_least, between, build, existing_file,
    greater_than, listen_address, one_of, parse_listen, read_toml,
)

__all__ = [
    "ASSETS_DIR", "ActionThreshold", "CameraConfig", "Config", "ConfigError", "DaemonConfig",
    "DisplayConfig", "EventsConfig", "InferenceConfig", "MetricsConfig", "MotionConfig",
    "MqttConfig", "RESERVED_CAMERA_NAME", "SAMPLE_PREFIX", "TEST_PATTERNS", "TEST_PREFIX",
    "default_device_id", "default_state_dir", "load_config", "parse_listen", "resolve_source",
    "source_kind",
]


def load_config(path: str | Path) -> Config:
    """Read, check and resolve the config file at `path`; ConfigError on any problem."""
    path = Path(path)
    file = str(path)
    config = build(Config, read_toml(path), "", file)
    _check_fields(config, file)
    _check_relations(config, file)
    return _resolve_paths(config, path.resolve().parent, file)


# --- value checks --------------------------------------------------------------------

def _name(value: str) -> str | None:
    if NAME_PATTERN.fullmatch(value):
        return None
    return (f"must be letters, digits, '_' or '-' (got {value!r}): it becomes an MQTT "
            f"topic level and a metric label")


def _topic_prefix(value: str) -> str | None:
    if value and not set(value) & set("+#\0") and "//" not in value \
            and not value.startswith("/") and not value.endswith("/"):
        return None
    return f"must be a non-empty MQTT topic without '+', '#' or empty levels (got {value!r})"


def _optional(choices: tuple[str, ...]) -> Check:
    check = one_of(*choices)
    return lambda v: None if v == "" else f"{check(v)}; or \"\" for the model's own"


def _labels(value: tuple[str, ...]) -> str | None:
    if any(not label.strip() for label in value) or len(set(value)) != len(value):
        return f"must be distinct, non-empty labels (got {list(value)})"
    return None


def _channel_values(value: tuple[float, ...]) -> str | None:
    if len(value) in (0, 1, 2, 3, 5):
        return None
    return (f"must hold 1 value or one per input channel (3 rgb, 2 flow, 5 rgb+flow); "
            f"got {len(value)}")


def _std_values(value: tuple[float, ...]) -> str | None:
    positive = all(v > 0 for v in value)
    return _channel_values(value) if positive else f"must be > 0 (got {list(value)})"


def _field_rules() -> dict[type, dict[str, Check]]:
    positive, non_negative = greater_than(0), at_least(0)
    return {
        DaemonConfig: {
            "device_id": lambda v: None if v == "" else _name(v),
            "log_level": one_of(*LOG_LEVELS),
            "status_interval_s": positive, "heartbeat_timeout_s": positive,
            "restart_backoff_min_s": positive, "restart_backoff_max_s": positive,
            "stable_after_s": positive, "crash_budget": at_least(1),
            "crash_window_s": positive,
        },
        CameraConfig: {
            "name": _name, "fps": at_least(0), "width": positive, "height": positive,
            "ring_capacity": at_least(MIN_RING_CAPACITY),
            "ring_policy": one_of(*RING_POLICIES), "open_timeout_s": positive,
            "read_timeout_s": positive, "reconnect_backoff_min_s": positive,
            "reconnect_backoff_max_s": positive,
        },
        MotionConfig: {"method": one_of(*MOTION_METHODS), "width": positive,
                       "height": positive},
        InferenceConfig: {"threads": non_negative, "clip_length": non_negative,
                          "width": non_negative, "height": non_negative,
                          "stride": at_least(1), "replicas": at_least(1),
                          "max_batch": non_negative,
                          "labels": _labels, "layout": _optional(MODEL_LAYOUTS),
                          "input": _optional(MODEL_INPUTS),
                          "colour_order": _optional(COLOUR_ORDERS),
                          "mean": _channel_values, "std": _std_values,
                          "activation": _optional(MODEL_ACTIVATIONS)},
        DisplayConfig: {"mjpeg_listen": listen_address, "jpeg_quality": between(1, 100),
                        "mjpeg_max_clients": at_least(1)},
        MqttConfig: {"port": between(1, 65535), "keepalive_s": between(1, 65535),
                     "prefix": _topic_prefix, "discovery_prefix": _topic_prefix,
                     "outbox_max_events": at_least(1)},
        MetricsConfig: {"listen": listen_address},
        EventsConfig: {"start_windows": at_least(1), "end_windows": at_least(1),
                       "cooldown_s": at_least(0), "threshold": _score},
    }


def _score(value: float) -> str | None:
    return None if 0.0 <= value <= 1.0 else f"must be a score between 0 and 1 (got {value!r})"


def _check_fields(config: Config, file: str) -> None:
    rules = _field_rules()
    for section in dataclasses.fields(config):
        value = getattr(config, section.name)
        tables = (enumerate(value) if isinstance(value, tuple) else [(None, value)])
        for index, table in tables:
            key = section.name if index is None else f"{section.name}[{index}]"
            for name, check in rules[type(table)].items():
                reason = check(getattr(table, name))
                if reason:
                    raise ConfigError(file, f"{key}.{name}", reason)


def _check_relations(config: Config, file: str) -> None:
    d = config.daemon
    _check_backoff(d.restart_backoff_min_s, d.restart_backoff_max_s, "daemon.restart",
                   file)
    _check_cameras(config.cameras, file)
    if not config.inference.providers:
        raise ConfigError(file, "inference.providers",
                          'must list at least one provider, e.g. ["CPUExecutionProvider"]')
    for i, provider in enumerate(config.inference.providers):
        if not provider.endswith("ExecutionProvider"):
            raise ConfigError(file, f"inference.providers[{i}]", "must be an onnxruntime "
                              f"provider name such as CPUExecutionProvider (got {provider!r})")
    _check_mqtt(config.mqtt, file)
    listen = config.display.mjpeg_listen
    if listen and listen == config.metrics.listen and not listen.endswith(":0"):
        raise ConfigError(file, "display.mjpeg_listen", f"{listen} is also metrics.listen; "
                          "give each server its own port")


def _check_backoff(low: float, high: float, key: str, file: str) -> None:
    if low > high:
        raise ConfigError(file, f"{key}_backoff_min_s", f"must be <= {key.rsplit('.')[-1]}"
                          f"_backoff_max_s ({low:g} > {high:g})")


def _check_cameras(cameras: tuple[CameraConfig, ...], file: str) -> None:
    seen: dict[str, int] = {}
    for i, cam in enumerate(cameras):
        key = f"cameras[{i}]"
        if cam.name in seen:
            raise ConfigError(file, f"{key}.name", f"duplicate camera name {cam.name!r} "
                              f"(also cameras[{seen[cam.name]}].name)")
        seen[cam.name] = i
        if cam.name == RESERVED_CAMERA_NAME:
            raise ConfigError(file, f"{key}.name", f"{cam.name!r} is reserved (metrics label "
                              "of the workers shared by all cameras); pick another name")
        if not cam.source:
            raise ConfigError(file, f"{key}.source", "must not be empty")
        _check_backoff(cam.reconnect_backoff_min_s, cam.reconnect_backoff_max_s,
                       f"{key}.reconnect", file)
        if cam.crop is not None:
            x, y, w, h = cam.crop
            if x < 0 or y < 0 or w <= 0 or h <= 0:
                raise ConfigError(file, f"{key}.crop", "must be [x, y, w, h] with x, y >= 0 "
                                  f"and w, h > 0 (got {list(cam.crop)})")
    if not any(cam.enabled for cam in cameras):
        raise ConfigError(file, "cameras", "no enabled camera: add a [[cameras]] entry "
                          "with a name and a source (and enabled = true)")


def _check_mqtt(mqtt: MqttConfig, file: str) -> None:
    given = [k for k in ("password", "password_file", "password_env") if getattr(mqtt, k)]
    if len(given) > 1:
        raise ConfigError(file, f"mqtt.{given[1]}", "set only one of password, "
                          f"password_file, password_env (both {' and '.join(given)} are set)")
    if mqtt.ca_file and not mqtt.tls:
        raise ConfigError(file, "mqtt.ca_file", "is set but tls = false; set tls = true "
                          "or remove ca_file")


# --- path resolution -----------------------------------------------------------------

def _resolve_paths(config: Config, config_dir: Path, file: str) -> Config:
    cameras = []
    for i, cam in enumerate(config.cameras):
        if not cam.enabled:     # kept as written: its file may be absent until enabled
            cameras.append(cam)
            continue
        try:
            cameras.append(dataclasses.replace(
                cam, source=resolve_source(cam.source, config_dir)))
        except ValueError as exc:
            raise ConfigError(file, f"cameras[{i}].source", str(exc)) from exc
    mqtt, inference = config.mqtt, config.inference
    state_dir = config.daemon.state_dir
    shm_dir = absolute_path(config.daemon.shm_dir, config_dir)
    if not shm_dir.is_dir():
        raise ConfigError(file, "daemon.shm_dir", f"directory not found: {shm_dir} (use a "
                          "tmpfs such as /dev/shm)")
    if mqtt.enabled:   # a disabled broker's files may be absent (e.g. not yet deployed)
        mqtt = dataclasses.replace(
            mqtt, ca_file=existing_file(mqtt.ca_file, config_dir, "mqtt.ca_file", file),
            password_file=existing_file(mqtt.password_file, config_dir,
                                        "mqtt.password_file", file))
    return dataclasses.replace(
        config, cameras=tuple(cameras),
        daemon=dataclasses.replace(
            config.daemon, shm_dir=str(shm_dir),
            state_dir=str(absolute_path(state_dir, config_dir) if state_dir
                          else default_state_dir()),
            device_id=config.daemon.device_id or default_device_id()),
        inference=dataclasses.replace(inference, model=existing_file(
            inference.model, config_dir, "inference.model", file)),
        display=dataclasses.replace(
            config.display,
            record=_output_path(config.display.record, config_dir, "display.record", file),
            frame_log=_output_path(config.display.frame_log, config_dir, "display.frame_log",
                                   file)),
        mqtt=mqtt,
    )


def _output_path(value: str, config_dir: Path, key: str, file: str) -> str:
    if not value:
        return value
    path = absolute_path(value, config_dir)
    if not path.parent.is_dir():
        raise ConfigError(file, key, f"directory not found: {path.parent} "
                          f"(create it, or write elsewhere)")
    return str(path)
