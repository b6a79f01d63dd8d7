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
import os
from pathlib import Path

from daemon.configpaths import (
    ASSETS_DIR, SAMPLE_PREFIX, TEST_PATTERNS, TEST_PREFIX, default_device_id, default_state_dir,
    resolve_source, source_kind,
)
from daemon.configschema import (
    BACKOFF_RANGE_S, COLOUR_ORDERS, COOLDOWN_RANGE_S, HEARTBEAT_RANGE_S, INTERVAL_RANGE_S,
    LOG_LEVELS, MAX_FPS, MAX_NAME_CHARS, MAX_SHM_DIR_BYTES, MAX_TOPIC_PREFIX_CHARS, MIN_FPS,
    MIN_RING_CAPACITY, MODEL_ACTIVATIONS, MODEL_INPUTS, MODEL_LAYOUTS, MOTION_METHODS,
    NAME_PATTERN, RESERVED_CAMERA_NAME, RING_POLICIES, TIMEOUT_RANGE_S, ActionThreshold,
    CameraConfig, Config, DaemonConfig, DisplayConfig, EventsConfig, InferenceConfig,
    MetricsConfig, MotionConfig, MqttConfig,
)
from daemon.configload import (
    Check, ConfigError, absolute_path, at_least, between, build, existing_file,
    greater_than, listen_address, one_of, parse_listen, read_toml, within,
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
    if len(value) > MAX_NAME_CHARS:
        return (f"must be at most {MAX_NAME_CHARS} characters (got {len(value)}): it becomes "
                "part of shared-memory and recording file names and of MQTT topics")
    if NAME_PATTERN.fullmatch(value):
        return None
    return (f"must be letters, digits, '_' or '-' (got {value!r}): it becomes an MQTT "
            f"topic level and a metric label")


def _topic_prefix(value: str) -> str | None:
    if len(value) > MAX_TOPIC_PREFIX_CHARS:
        return (f"must be at most {MAX_TOPIC_PREFIX_CHARS} characters (got {len(value)}): "
                "every topic starts with it")
    if value and not set(value) & set("+#\0") and "//" not in value \
            and not value.startswith("/") and not value.endswith("/"):
        return None
    return f"must be a non-empty MQTT topic without '+', '#' or empty levels (got {value!r})"


def _fps(value: float) -> str | None:
    if value == 0 or MIN_FPS <= value <= MAX_FPS:
        return None
    return (f"must be 0 (the source's own rate) or between {MIN_FPS:g} and {MAX_FPS:g} "
            f"frames per second (got {value!r})")


def _optional(choices: tuple[str, ...]) -> Check:
    check = one_of(*choices)
    return lambda v: None if v == "" else f"{check(v)}; or \"\" for the model's own"


def _labels(value: tuple[str, ...]) -> str | None:
    if any(not label.strip() for label in value) or len(set(value)) != len(value):
        return f"must be distinct, non-empty labels (got {list(value)})"
    too_long = [label for label in value if len(label) > MAX_NAME_CHARS]
    if too_long:
        return (f"labels must be at most {MAX_NAME_CHARS} characters (got one of "
                f"{len(too_long[0])}): they become parts of MQTT topics")
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
    interval, backoff = within(*INTERVAL_RANGE_S, " s"), within(*BACKOFF_RANGE_S, " s")
    timeout = within(*TIMEOUT_RANGE_S, " s")
    return {
        DaemonConfig: {
            "device_id": lambda v: None if v == "" else _name(v),
            "log_level": one_of(*LOG_LEVELS),
            "status_interval_s": interval,
            "heartbeat_timeout_s": within(*HEARTBEAT_RANGE_S, " s"),
            "restart_backoff_min_s": backoff, "restart_backoff_max_s": backoff,
            "stable_after_s": interval, "crash_budget": at_least(1),
            "crash_window_s": interval,
        },
        CameraConfig: {
            "name": _name, "fps": _fps, "width": positive, "height": positive,
            "ring_capacity": at_least(MIN_RING_CAPACITY),
            "ring_policy": one_of(*RING_POLICIES), "open_timeout_s": timeout,
            "read_timeout_s": timeout, "reconnect_backoff_min_s": backoff,
            "reconnect_backoff_max_s": backoff,
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
                       "cooldown_s": within(*COOLDOWN_RANGE_S, " s"), "threshold": _score},
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
    _check_mjpeg_ports(config, file)


_ANY_HOST = ("", "0.0.0.0", "::")
RECORD_NUMBER_ROOM = "9999"   # a restart's recording is <stem>-<camera>.<n><suffix>


def _check_mjpeg_ports(config: Config, file: str) -> None:
    """Camera i (among the enabled ones) serves MJPEG on the configured port + i (see
    overlay_stage.camera_display): each such port must exist and must not be metrics'."""
    listen = config.display.mjpeg_listen
    if not listen:
        return
    host, base = parse_listen(listen)
    metrics_host, metrics_port = parse_listen(config.metrics.listen or ":0")
    same_host = host == metrics_host or host in _ANY_HOST or metrics_host in _ANY_HOST
    key = "display.mjpeg_listen"
    enabled = [(i, cam) for i, cam in enumerate(config.cameras) if cam.enabled]
    for index, (i, cam) in enumerate(enabled):
        port = base + index if base else 0
        derived = f"camera {cam.name} (cameras[{i}]) would serve MJPEG on port {port} " \
                  f"(this port + its index {index} among the enabled cameras)"
        if port > 65535:
            raise ConfigError(file, key, f"{derived}, above 65535; choose a lower port")
        if port == 0 or port != metrics_port or not same_host:
            continue
        if index == 0:
            raise ConfigError(file, key, f"{listen} is also metrics.listen "
                              f"({config.metrics.listen}); give each server its own port")
        raise ConfigError(file, key, f"{derived}, which is also metrics.listen "
                          f"({config.metrics.listen}); move display.mjpeg_listen or "
                          f"metrics.listen so that ports {base}-{base + len(enabled) - 1} "
                          "stay clear of the metrics port")


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
    if len(bytes(shm_dir)) > MAX_SHM_DIR_BYTES:
        raise ConfigError(file, "daemon.shm_dir", f"{shm_dir} is {len(bytes(shm_dir))} bytes "
                          f"long; at most {MAX_SHM_DIR_BYTES} leave room for the event socket "
                          "in it (a Unix socket path holds 107 bytes): use a shorter path")
    if mqtt.enabled:   # a disabled broker's files may be absent (e.g. not yet deployed)
        mqtt = dataclasses.replace(
            mqtt, ca_file=existing_file(mqtt.ca_file, config_dir, "mqtt.ca_file", file),
            password_file=existing_file(mqtt.password_file, config_dir,
                                        "mqtt.password_file", file))
    record = _output_path(config.display.record, config_dir, "display.record", file)
    _check_record_names(record, cameras, file)
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
            record=record,
            frame_log=_output_path(config.display.frame_log, config_dir, "display.frame_log",
                                   file)),
        mqtt=mqtt,
    )


def _check_record_names(record: str, cameras: list[CameraConfig], file: str) -> None:
    """Each camera records to <stem>-<camera><suffix>, or <stem>-<camera>.<n><suffix> when
    that exists (see overlay_stage.camera_display, display.unused_path)."""
    if not record:
        return
    path = Path(record)
    name_max = os.pathconf(path.parent, "PC_NAME_MAX")
    for cam in cameras:
        name = f"{path.stem}-{cam.name}.{RECORD_NUMBER_ROOM}{path.suffix}"
        if cam.enabled and len(name.encode()) > name_max:
            raise ConfigError(file, "display.record", f"camera {cam.name}'s recording would "
                              f"be named {path.stem}-{cam.name}{path.suffix}, too long for a "
                              f"file name here (at most {name_max} bytes with room for a "
                              "restart's .<n>); use a shorter file name")


def _output_path(value: str, config_dir: Path, key: str, file: str) -> str:
    if not value:
        return value
    path = absolute_path(value, config_dir)
    if not path.parent.is_dir():
        raise ConfigError(file, key, f"directory not found: {path.parent} "
                          f"(create it, or write elsewhere)")
    return str(path)
