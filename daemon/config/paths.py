"""Where things are and what this box is called: every path in a config made absolute
against the config file's directory and checked (resolve_paths), camera sources (bundled
samples, files, URLs, devices, test patterns), the state directory and the default
device id.

- camera sources of enabled cameras: `sample:<name>` becomes the absolute path of the
  clip bundled in daemon/assets; a plain file path is made absolute against the config
  file's directory and must exist; rtsp://... (any URL), /dev/videoN and test:<pattern>
  pass unchanged (a USB camera may be plugged in later, a stream may come up later: the
  source stage retries those). daemon.capture.table recognises and resolves every kind
  (`source_kind()` names it); adding a backend adds a kind there, not here. A disabled
  camera's source is left as written (its file may not exist yet).
- inference.model (when set; "" stays "" and means the bundled demo model) must exist;
  mqtt.ca_file and mqtt.password_file must exist when mqtt is enabled (and
  console.auth_token_file when the console is); daemon.shm_dir
  and the directories of display.record and display.frame_log must exist. These and
  daemon.state_dir are made absolute against the config file's directory; an empty
  daemon.state_dir becomes default_state_dir().
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from pathlib import Path

# Camera sources are recognised and resolved by the capture table (re-exported here).
from daemon.capture.table import SAMPLE_PREFIX as SAMPLE_PREFIX
from daemon.capture.table import TEST_PATTERNS as TEST_PATTERNS
from daemon.capture.table import TEST_PREFIX as TEST_PREFIX
from daemon.capture.table import resolve_source as resolve_source
from daemon.capture.table import source_kind as source_kind
from daemon.config.console_rules import check_token_file
from daemon.config.loader import ConfigError, absolute_path, existing_file
from daemon.config.schema import (
    MAX_SHM_DIR_BYTES,
    CameraConfig,
    Config,
    PeopleConfig,
    PerceptionConfig,
)
from daemon.config.webhook_rules import webhook_paths

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"


def default_state_dir() -> Path:
    """Where the outbox and other durable state live when daemon.state_dir is "".

    systemd's StateDirectory= sets $STATE_DIRECTORY (several paths joined by ':' when the
    unit names several; the first is ours); otherwise the XDG state home.
    """
    from_systemd = os.environ.get("STATE_DIRECTORY", "")
    if from_systemd:
        return Path(from_systemd.split(":")[0])
    xdg = os.environ.get("XDG_STATE_HOME", "")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "actiond"


def default_device_id() -> str:
    """This machine's host name as a device id (daemon.device_id = ""): characters other
    than letters, digits, '_' and '-' become '-' ("cam-box.local" -> "cam-box-local").

    Two boxes on one broker must not share an id: their MQTT client ids would clash (the
    broker drops one whenever the other connects) and their topics would mix.
    """
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", socket.gethostname()).strip("-")
    return name or "actiond"


def resolve_paths(config: Config, config_dir: Path, file: str) -> Config:
    """`config` with its paths absolute against `config_dir` and checked (module docstring)."""
    cameras = _camera_sources(config, config_dir, file)
    mqtt, inference = config.mqtt, config.inference
    state_dir = config.daemon.state_dir
    shm_dir = _shm_dir(config, config_dir, file)
    if mqtt.enabled:  # a disabled broker's files may be absent (e.g. not yet deployed)
        mqtt = dataclasses.replace(
            mqtt,
            ca_file=existing_file(mqtt.ca_file, config_dir, "mqtt.ca_file", file),
            password_file=existing_file(mqtt.password_file, config_dir, "mqtt.password_file", file),
        )
    console = config.console
    if console.enabled:
        token_file = existing_file(
            console.auth_token_file, config_dir, "console.auth_token_file", file
        )
        check_token_file(token_file, file)
        console = dataclasses.replace(console, auth_token_file=token_file)
    webhook = webhook_paths(config.webhook, config_dir, file)
    record = _output_path(config.display.record, config_dir, "display.record", file)
    return dataclasses.replace(
        config,
        cameras=cameras,
        daemon=dataclasses.replace(
            config.daemon,
            shm_dir=str(shm_dir),
            state_dir=str(
                absolute_path(state_dir, config_dir) if state_dir else default_state_dir()
            ),
            device_id=config.daemon.device_id or default_device_id(),
        ),
        inference=dataclasses.replace(
            inference, model=existing_file(inference.model, config_dir, "inference.model", file)
        ),
        perception=_perception_paths(config.perception, config_dir, file),
        display=dataclasses.replace(
            config.display,
            record=record,
            frame_log=_output_path(config.display.frame_log, config_dir, "display.frame_log", file),
        ),
        mqtt=mqtt,
        people=_people_paths(config.people, config_dir, file),
        webhook=webhook,
        console=console,
    )


def _people_paths(people: PeopleConfig, config_dir: Path, file: str) -> PeopleConfig:
    """[people] with each skeleton classifier's model path absolute and checked."""
    classifiers = tuple(
        dataclasses.replace(
            c, model=existing_file(c.model, config_dir, f"people.classifiers[{i}].model", file)
        )
        for i, c in enumerate(people.classifiers)
    )
    return dataclasses.replace(people, classifiers=classifiers)


def _perception_paths(
    perception: PerceptionConfig, config_dir: Path, file: str
) -> PerceptionConfig:
    """The person models' files, absolute and checked ("" stays: the shipped ones)."""
    return dataclasses.replace(
        perception,
        detector=existing_file(perception.detector, config_dir, "perception.detector", file),
        pose=existing_file(perception.pose, config_dir, "perception.pose", file),
    )


def _camera_sources(config: Config, config_dir: Path, file: str) -> tuple[CameraConfig, ...]:
    """The cameras with their sources resolved (daemon.capture.table); a disabled camera is
    kept as written: its file may be absent until it is enabled."""
    cameras = []
    for i, cam in enumerate(config.cameras):
        if not cam.enabled:
            cameras.append(cam)
            continue
        try:
            cameras.append(dataclasses.replace(cam, source=resolve_source(cam.source, config_dir)))
        except ValueError as exc:
            raise ConfigError(file, f"cameras[{i}].source", str(exc)) from exc
    return tuple(cameras)


def _shm_dir(config: Config, config_dir: Path, file: str) -> Path:
    """daemon.shm_dir, absolute, an existing directory, and short enough for the socket."""
    shm_dir = absolute_path(config.daemon.shm_dir, config_dir)
    if not shm_dir.is_dir():
        raise ConfigError(
            file, "daemon.shm_dir", f"directory not found: {shm_dir} (use a tmpfs such as /dev/shm)"
        )
    if len(bytes(shm_dir)) > MAX_SHM_DIR_BYTES:
        raise ConfigError(
            file,
            "daemon.shm_dir",
            f"{shm_dir} is {len(bytes(shm_dir))} bytes "
            f"long; at most {MAX_SHM_DIR_BYTES} leave room for the event socket "
            "in it (a Unix socket path holds 107 bytes): use a shorter path",
        )
    return shm_dir


def _output_path(value: str, config_dir: Path, key: str, file: str) -> str:
    if not value:
        return value
    path = absolute_path(value, config_dir)
    if not path.parent.is_dir():
        raise ConfigError(
            file, key, f"directory not found: {path.parent} (create it, or write elsewhere)"
        )
    return str(path)
