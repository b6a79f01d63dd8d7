"""Configuration: config.toml read with tomllib into frozen dataclasses, checked, resolved.

load_config(path) parses, type-checks, range-checks and resolves a config file, raising
ConfigError(file, key, reason) for the first problem found. Paths come back resolved, so
the rest of the daemon never sees a relative path or a `sample:` source.

The package, by duty (where to add what):
- schema: the dataclasses, one per table, and the vocabulary and ranges of their values;
- loader: TOML into those dataclasses, type checks, ConfigError, reusable value checks;
- fields: each key's range or vocabulary on its own;
- rules: every rule between keys and every derived value (per-camera MJPEG port and
  recording name, the model facts, [events] against the model's labels);
- paths: resolution against the config file's directory, state dir, device id.
"""

from __future__ import annotations

from pathlib import Path

from daemon.config.fields import check_fields
from daemon.config.loader import ConfigError, build, parse_listen, read_toml
from daemon.config.paths import (
    ASSETS_DIR,
    SAMPLE_PREFIX,
    TEST_PATTERNS,
    TEST_PREFIX,
    default_device_id,
    default_state_dir,
    resolve_paths,
    resolve_source,
    source_kind,
)
from daemon.config.rules import (
    ModelFacts,
    camera_display,
    check_model_rules,
    check_relations,
    check_resolved,
    event_actions,
    facts_without_model,
    ignored_labels,
    model_facts,
)
from daemon.config.schema import (
    COLOUR_ORDERS,
    JPEG_QUALITY_RANGE,
    MODEL_ACTIVATIONS,
    MODEL_INPUTS,
    MODEL_LAYOUTS,
    PEOPLE_ACTIONS,
    RESERVED_CAMERA_NAME,
    ZONE_KINDS,
    ActionThreshold,
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
    SkeletonModelConfig,
    WebhookConfig,
    ZoneConfig,
)

__all__ = [
    "ASSETS_DIR",
    "COLOUR_ORDERS",
    "JPEG_QUALITY_RANGE",
    "MODEL_ACTIVATIONS",
    "MODEL_INPUTS",
    "MODEL_LAYOUTS",
    "PEOPLE_ACTIONS",
    "RESERVED_CAMERA_NAME",
    "SAMPLE_PREFIX",
    "TEST_PATTERNS",
    "TEST_PREFIX",
    "ZONE_KINDS",
    "ActionThreshold",
    "CameraConfig",
    "ClipsConfig",
    "Config",
    "ConfigError",
    "ConsoleConfig",
    "DaemonConfig",
    "DisplayConfig",
    "EventsConfig",
    "InferenceConfig",
    "JsonlConfig",
    "MetricsConfig",
    "ModelFacts",
    "MotionConfig",
    "MqttConfig",
    "PeopleConfig",
    "PerceptionConfig",
    "SkeletonModelConfig",
    "WebhookConfig",
    "ZoneConfig",
    "camera_display",
    "check_model_rules",
    "default_device_id",
    "default_state_dir",
    "event_actions",
    "facts_without_model",
    "ignored_labels",
    "load_config",
    "model_facts",
    "parse_listen",
    "resolve_source",
    "source_kind",
]


def load_config(path: str | Path) -> Config:
    """Read, check and resolve the config file at `path`; ConfigError on any problem."""
    path = Path(path)
    file = str(path)
    config = build(Config, read_toml(path), "", file)
    check_fields(config, file)
    check_relations(config, file)
    config = resolve_paths(config, path.resolve().parent, file)
    check_resolved(config, file)
    return config
