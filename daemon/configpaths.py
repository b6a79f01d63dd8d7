"""Where things are and what this box is called: camera sources (bundled samples, files,
URLs, devices, test patterns), the state directory and the default device id, resolved
for daemon.config."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

from daemon.configload import absolute_path

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
SAMPLE_PREFIX = "sample:"
TEST_PREFIX = "test:"
TEST_PATTERNS = ("bars", "moving-box", "still")   # drawn by daemon.stages.patterns
_SAMPLE_SUFFIXES = (".mp4", ".mkv", ".avi", ".webm", ".mov")


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


def source_kind(source: str) -> str:
    """One of "sample", "test", "url", "device", "file" for a camera source string."""
    if source.startswith(SAMPLE_PREFIX):
        return "sample"
    if source.startswith(TEST_PREFIX):
        return "test"
    if "://" in source:
        return "url"
    if source.startswith("/dev/"):
        return "device"
    return "file"


def resolve_source(source: str, config_dir: str | Path) -> str:
    """The source as the source stage opens it: samples and files as absolute paths.

    load_config already applies this to every camera; ValueError names the problem.
    """
    kind = source_kind(source)
    if kind == "sample":
        return str(_sample_path(source[len(SAMPLE_PREFIX):]))
    if kind == "test" and source[len(TEST_PREFIX):] not in TEST_PATTERNS:
        raise ValueError(f"unknown test pattern {source!r}; use one of "
                         f"{', '.join(TEST_PREFIX + p for p in TEST_PATTERNS)}")
    if kind != "file":
        return source
    path = absolute_path(source, Path(config_dir))
    if path.is_dir():
        raise ValueError(f"{path} is a directory, not a video file; name one file in it "
                         "(one camera per file)")
    if not path.is_file():
        raise ValueError(f"video file not found: {path} (relative paths are resolved "
                         f"against the config file's directory; for a USB camera use "
                         f"/dev/videoN, for a stream rtsp://...)")
    return str(path)


def _sample_path(name: str) -> Path:
    available = sorted(p.name for p in ASSETS_DIR.iterdir()
                       if p.suffix.lower() in _SAMPLE_SUFFIXES)
    if name not in available:
        raise ValueError(f"no bundled sample named {name!r}; available: "
                         f"{', '.join(available) or 'none'}")
    return ASSETS_DIR / name
