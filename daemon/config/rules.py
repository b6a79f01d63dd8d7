"""Every rule between config keys, and every value derived from several of them.

Per-key ranges live in daemon.config.fields; this module holds the rest, in one place:
- relations checked at load (check_relations) and after path resolution (check_resolved);
- what each camera's display outputs derive from [display] (camera_display: the MJPEG
  port per camera index, the recording name per camera), which the load checks hold to;
- the model facts (ModelFacts): what the model dictates to the pipeline (clip length and
  size, input kind, labels), derived at boot from the model and the config and kept apart
  from the user's config; check_model_rules holds [events] to the model's labels;
- which labels make events ([events] ignore, else the background labels).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from daemon.config.clips_rules import check_clip_memory, check_clips
from daemon.config.console_rules import check_console
from daemon.config.loader import ConfigError, parse_listen
from daemon.config.schema import (
    MIN_ZONE_POINTS,
    PEOPLE_ACTIONS,
    RESERVED_CAMERA_NAME,
    ZONE_KINDS,
    CameraConfig,
    Config,
    DisplayConfig,
    MqttConfig,
    PeopleConfig,
    ZoneConfig,
)
from daemon.config.webhook_rules import check_webhook

_ANY_HOST = ("", "0.0.0.0", "::")
PERSON_PIPELINE = "person"  # the graph whose cameras run [people]
RECORD_NUMBER_ROOM = "9999"  # a restart's recording is <stem>-<camera>.<n><suffix>
# Clips of a pipeline sized without a model (tools, tests): the demo model's length.
DEFAULT_CLIP_LENGTH = 8
# Labels a model uses for "no action": they never make events (nor Home Assistant
# entities) unless [events] ignore names other labels instead.
BACKGROUND_LABELS = ("still", "idle", "nobody", "background", "none", "no_action")


# --- relations between keys ---------------------------------------------------------


def check_relations(config: Config, file: str) -> None:
    """ConfigError for the first rule between keys that the config breaks."""
    d = config.daemon
    _check_backoff(d.restart_backoff_min_s, d.restart_backoff_max_s, "daemon.restart", file)
    _check_cameras(config.cameras, file)
    if not config.inference.providers:
        raise ConfigError(
            file,
            "inference.providers",
            'must list at least one provider, e.g. ["CPUExecutionProvider"]',
        )
    for i, provider in enumerate(config.inference.providers):
        if not provider.endswith("ExecutionProvider"):
            raise ConfigError(
                file,
                f"inference.providers[{i}]",
                "must be an onnxruntime "
                f"provider name such as CPUExecutionProvider (got {provider!r})",
            )
    _check_mqtt(config.mqtt, file)
    check_webhook(config.webhook, file)
    check_clips(config.clips, file)
    check_clip_memory(config.clips, config.cameras, file)
    _check_mjpeg_ports(config, file)
    check_console(config, file)
    _check_people(config.people, file)
    _check_people_rates(config, file)


def _check_mjpeg_ports(config: Config, file: str) -> None:
    """Camera i (among the enabled ones) serves MJPEG on the configured port + i (see
    camera_display): each such port must exist and must not be metrics'."""
    listen = config.display.mjpeg_listen
    if not listen:
        return
    host, base = parse_listen(listen)
    metrics_host, metrics_port = parse_listen(config.metrics.listen or ":0")
    same_host = host == metrics_host or host in _ANY_HOST or metrics_host in _ANY_HOST
    key = "display.mjpeg_listen"
    enabled = [(i, cam) for i, cam in enumerate(config.cameras) if cam.enabled]
    for index, (i, cam) in enumerate(enabled):
        port = camera_mjpeg_port(base, index)
        derived = (
            f"camera {cam.name} (cameras[{i}]) would serve MJPEG on port {port} "
            f"(this port + its index {index} among the enabled cameras)"
        )
        if port > 65535:
            raise ConfigError(file, key, f"{derived}, above 65535; choose a lower port")
        if port == 0 or port != metrics_port or not same_host:
            continue
        if index == 0:
            raise ConfigError(
                file,
                key,
                f"{listen} is also metrics.listen "
                f"({config.metrics.listen}); give each server its own port",
            )
        raise ConfigError(
            file,
            key,
            f"{derived}, which is also metrics.listen "
            f"({config.metrics.listen}); move display.mjpeg_listen or "
            f"metrics.listen so that ports {base}-{base + len(enabled) - 1} "
            "stay clear of the metrics port",
        )


def _check_backoff(low: float, high: float, key: str, file: str) -> None:
    if low > high:
        raise ConfigError(
            file,
            f"{key}_backoff_min_s",
            f"must be <= {key.rsplit('.')[-1]}_backoff_max_s ({low:g} > {high:g})",
        )


def _check_cameras(cameras: tuple[CameraConfig, ...], file: str) -> None:
    seen: dict[str, int] = {}
    for i, cam in enumerate(cameras):
        key = f"cameras[{i}]"
        if cam.name in seen:
            raise ConfigError(
                file,
                f"{key}.name",
                f"duplicate camera name {cam.name!r} (also cameras[{seen[cam.name]}].name)",
            )
        seen[cam.name] = i
        if cam.name == RESERVED_CAMERA_NAME:
            raise ConfigError(
                file,
                f"{key}.name",
                f"{cam.name!r} is reserved (metrics label "
                "of the workers shared by all cameras); pick another name",
            )
        if not cam.source:
            raise ConfigError(file, f"{key}.source", "must not be empty")
        _check_backoff(
            cam.reconnect_backoff_min_s, cam.reconnect_backoff_max_s, f"{key}.reconnect", file
        )
        _check_zones(cam.zones, f"{key}.zones", file)
        if cam.crop is not None:
            x, y, w, h = cam.crop
            if x < 0 or y < 0 or w <= 0 or h <= 0:
                raise ConfigError(
                    file,
                    f"{key}.crop",
                    f"must be [x, y, w, h] with x, y >= 0 and w, h > 0 (got {list(cam.crop)})",
                )
    if not any(cam.enabled for cam in cameras):
        raise ConfigError(
            file,
            "cameras",
            "no enabled camera: add a [[cameras]] entry "
            "with a name and a source (and enabled = true)",
        )


def _check_zones(zones: tuple[ZoneConfig, ...], key: str, file: str) -> None:
    """Each zone: a unique name, a known kind, >= 3 points inside the frame (0..1)."""
    seen: dict[str, int] = {}
    for i, zone in enumerate(zones):
        at = f"{key}[{i}]"
        if not zone.name.strip() or zone.name in seen:
            again = f" (also {key}[{seen[zone.name]}].name)" if zone.name in seen else ""
            raise ConfigError(file, f"{at}.name", f"must be a unique, non-empty name{again}")
        seen[zone.name] = i
        if zone.kind not in ZONE_KINDS:
            raise ConfigError(
                file, f"{at}.kind", f"must be one of {', '.join(ZONE_KINDS)} (got {zone.kind!r})"
            )
        if len(zone.points) < MIN_ZONE_POINTS:
            raise ConfigError(
                file,
                f"{at}.points",
                f"must hold at least {MIN_ZONE_POINTS} [x, y] points (got {len(zone.points)})",
            )
        for j, (x, y) in enumerate(zone.points):
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise ConfigError(
                    file,
                    f"{at}.points[{j}]",
                    f"must be [x, y] in 0..1 of the frame's width and height (got [{x}, {y}])",
                )


def _check_people(people: PeopleConfig, file: str) -> None:
    for i, action in enumerate(people.actions):
        if action not in PEOPLE_ACTIONS:
            raise ConfigError(
                file,
                f"people.actions[{i}]",
                f"unknown action {action!r}; known: {', '.join(PEOPLE_ACTIONS)}",
            )
    if len(set(people.actions)) != len(people.actions):
        raise ConfigError(file, "people.actions", f"lists an action twice: {list(people.actions)}")
    for i, classifier in enumerate(people.classifiers):
        if not 0.0 <= classifier.threshold <= 1.0:
            raise ConfigError(
                file,
                f"people.classifiers[{i}].threshold",
                f"must be a score between 0 and 1 (got {classifier.threshold!r})",
            )
        if not classifier.model:
            raise ConfigError(file, f"people.classifiers[{i}].model", "must not be empty")


def _check_people_rates(config: Config, file: str) -> None:
    """The tracker's times against the rates a person camera analyses frames at:
    analyse_fps while something moves, perception.keepalive_fps while all is still."""
    people, keepalive_fps = config.people, config.perception.keepalive_fps
    for cam in config.cameras:
        if not cam.enabled or cam.pipeline != PERSON_PIPELINE:
            continue
        needed_s = (people.confirm_hits - 1) / cam.analyse_fps
        if needed_s > people.confirm_window_s:
            raise ConfigError(
                file,
                "people.confirm_window_s",
                f"camera {cam.name} analyses {cam.analyse_fps:g} frames/s, so "
                f"confirm_hits = {people.confirm_hits} sightings take {needed_s:g} s, "
                f"longer than {people.confirm_window_s:g} s: no one would ever be tracked; "
                "raise confirm_window_s or analyse_fps, or lower confirm_hits",
            )
    if any(c.enabled and c.pipeline == PERSON_PIPELINE for c in config.cameras):
        if people.lost_after_s <= 1.0 / keepalive_fps:
            raise ConfigError(
                file,
                "people.lost_after_s",
                f"must be longer than the {1.0 / keepalive_fps:g} s between the frames of a "
                f"still scene (perception.keepalive_fps = {keepalive_fps:g}): a person "
                "standing still would lose their track (and id) between two of them",
            )


def _check_mqtt(mqtt: MqttConfig, file: str) -> None:
    given = [k for k in ("password", "password_file", "password_env") if getattr(mqtt, k)]
    if len(given) > 1:
        raise ConfigError(
            file,
            f"mqtt.{given[1]}",
            "set only one of password, "
            f"password_file, password_env (both {' and '.join(given)} are set)",
        )
    if mqtt.ca_file and not mqtt.tls:
        raise ConfigError(
            file, "mqtt.ca_file", "is set but tls = false; set tls = true or remove ca_file"
        )


def check_resolved(config: Config, file: str) -> None:
    """Rules that need the resolved paths: each camera records to <stem>-<camera><suffix>
    (camera_display), or <stem>-<camera>.<n><suffix> when that exists (display.unused_path)."""
    if not config.display.record:
        return
    path = Path(config.display.record)
    name_max = os.pathconf(path.parent, "PC_NAME_MAX")
    for cam in config.cameras:
        name = f"{path.stem}-{cam.name}.{RECORD_NUMBER_ROOM}{path.suffix}"
        if cam.enabled and len(name.encode()) > name_max:
            raise ConfigError(
                file,
                "display.record",
                f"camera {cam.name}'s recording would "
                f"be named {path.stem}-{cam.name}{path.suffix}, too long for a "
                f"file name here (at most {name_max} bytes with room for a "
                "restart's .<n>); use a shorter file name",
            )


# --- derived per camera ---------------------------------------------------------------


def camera_mjpeg_port(base: int, index: int) -> int:
    """The MJPEG port of the camera at `index` among the enabled ones: the configured
    port + index, so cameras never fight over one port; 0 (the OS picks) stays 0."""
    return base + index if base else 0


def camera_display(display: DisplayConfig, camera: str, index: int) -> DisplayConfig:
    """[display] as camera `camera` (at `index` among the enabled cameras) uses it: its
    MJPEG port (camera_mjpeg_port) and its recording <stem>-<camera><suffix>."""
    listen, record = display.mjpeg_listen, display.record
    if listen and index:
        host, port = listen.rsplit(":", 1)
        listen = f"{host}:{camera_mjpeg_port(int(port), index)}"
    if record:
        path = Path(record)
        record = str(path.with_name(f"{path.stem}-{camera}{path.suffix}"))
    return dataclasses.replace(display, mjpeg_listen=listen, record=record)


# --- the model's facts and the rules that need them -----------------------------------


@dataclass(frozen=True)
class ModelFacts:
    """What the model dictates to the pipeline: the clips the motion stage makes and the
    rings carry, and the labels its scores have. Derived at boot (model_facts); the
    user's config is never rewritten with them."""

    name: str  # the model file's name, for messages; "" without one
    labels: tuple[str, ...]
    clip_length: int  # T frames per clip
    width: int  # clip size: the model's input size, or motion's
    height: int  # where the model leaves it free
    inputs: str  # rgb | flow | rgb+flow; "" (no model): both

    @property
    def clip_size(self) -> tuple[int, int]:
        """(width, height) of the clips."""
        return self.width, self.height


def model_facts(
    config: Config,
    name: str,
    labels: Sequence[str],
    clip_length: int,
    inputs: str,
    width: int,
    height: int,
) -> ModelFacts:
    """The facts of a model whose contract says `labels`, `clip_length`, `inputs` and an
    input size `width` x `height` (0: free, then clips are made at the motion size)."""
    return ModelFacts(
        name,
        tuple(labels),
        clip_length,
        width or config.motion.width,
        height or config.motion.height,
        inputs,
    )


def facts_without_model(config: Config) -> ModelFacts:
    """Facts from [inference] alone, for tools and tests that size a pipeline without
    loading a model: its overrides where set, else DEFAULT_CLIP_LENGTH and the motion size."""
    i = config.inference
    return model_facts(
        config, "", i.labels, i.clip_length or DEFAULT_CLIP_LENGTH, i.input, i.width, i.height
    )


def check_model_rules(config: Config, facts: ModelFacts, file: str) -> None:
    """ConfigError when [events] names a label the model does not have (boot calls this
    once the model is read)."""
    labels = facts.labels
    named = {a.name for a in config.events.actions}
    unknown = sorted((named | set(ignored_labels(labels, config.events.ignore))) - set(labels))
    if unknown:
        raise ConfigError(
            file,
            "events",
            "thresholds/ignore name labels the model does not "
            f"have: {unknown}; known labels: {list(labels)} (the model "
            f"{facts.name} has labels: {', '.join(labels)})",
        )


def ignored_labels(labels: Sequence[str], ignore: Sequence[str]) -> tuple[str, ...]:
    """The labels that make no events: `ignore` when given, else the background labels."""
    if ignore:
        return tuple(ignore)
    return tuple(label for label in labels if label in BACKGROUND_LABELS)


def event_actions(labels: Sequence[str], ignore: Sequence[str]) -> tuple[str, ...]:
    """The labels that can become events (in label order): the actions offered to users."""
    skipped = set(ignored_labels(labels, ignore))
    return tuple(label for label in labels if label not in skipped)
