"""One labelled clip through a real daemon: `actiond run` in a subprocess on a generated
config (the clip as a file source, realtime = false and ring_policy = "block" so no frame
is lost and it runs as fast as the pipeline goes, loop = false so the daemon ends with
the file, a [jsonl] sink collecting every event record), then its events joined from the
start and end records.

The replay delivers to no sink of the user's: every event sink section (mqtt, webhook,
console, any later one) is replaced by `enabled = false` but its own [jsonl] collector, so
no event reaches the user's receivers and no port of the user's is bound ([metrics] and
[display] serve nothing either); [clips] is off (nobody watches a replay's clips).

The rest of the config comes from a base config file (the user's config.toml: [people],
[events], [inference], the first camera's analysis settings), so the evaluation measures
what the user runs. A zone scenario adds the label file's zones and [people] keys.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import cv2

import daemon
from daemon.config import Config
from daemon.evaluate.scoring import NO_TRACK, DetectedEvent

PACKAGE_ROOT = Path(daemon.__file__).resolve().parent.parent
SHM_ROOT = "/dev/shm"


def event_sink_sections() -> frozenset[str]:
    """The config sections that are event sinks: by the sink table's contract
    (daemon/outputs/sinks/table.py), a field of Config whose section has `enabled` and
    `outbox_max_events` (the table itself is the supervisor's, out of eval's reach)."""
    config = Config()
    return frozenset(
        f.name
        for f in dataclasses.fields(config)
        if hasattr(getattr(config, f.name), "enabled")
        and hasattr(getattr(config, f.name), "outbox_max_events")
    )


EVENT_SINK_SECTIONS = event_sink_sections()
COLLECTOR = "jsonl"  # the one sink a replay keeps: its own events file
# Sections the evaluation sets itself (every other one comes from the base config).
OWN_SECTIONS = frozenset({"daemon", "display", "metrics", "clips", "cameras"}) | (
    EVENT_SINK_SECTIONS
)
# Camera keys the evaluation sets itself (the clip, its size, lossless replay).
OWN_CAMERA_KEYS = frozenset(
    {"name", "source", "realtime", "loop", "ring_policy", "zones", "crop", "enabled"}
    | {"width", "height", "pipeline"}
)
LOG_TAIL_CHARS = 3000
RUN_BASE_S = 60.0  # start-up and model loading
RUN_PER_MEDIA_S = 5.0  # a slow machine may take this long per second of clip
CAMERA = "eval"
STOP_WAIT_S = 30.0  # a daemon that ran out of time: its staged shutdown, then SIGKILL


class ReplayError(RuntimeError):
    """A clip the daemon could not be run on, or whose events could not be read."""


@dataclass(frozen=True)
class BaseConfig:
    """What the evaluation keeps of a config file: its sections and a camera template."""

    sections: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    camera: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    """One run of a clip: "plain" (no zones) or "zones" (the label file's zones)."""

    name: str
    zones: tuple[Mapping[str, Any], ...] = ()
    people: Mapping[str, Any] = field(default_factory=dict)


def load_base_config(path: Path | None) -> BaseConfig:
    """The sections and first camera of `path` (None: the daemon's defaults). Relative
    model paths are made absolute against the file's directory."""
    if path is None:
        return BaseConfig()
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ReplayError(f"{path}: cannot read the base config: {exc}") from exc
    root = path.resolve().parent
    sections = {k: dict(v) for k, v in doc.items() if k not in OWN_SECTIONS and isinstance(v, dict)}
    inference = sections.get("inference", {})
    if inference.get("model"):
        inference["model"] = str(root / str(inference["model"]))
    people = sections.get("people", {})
    for classifier in people.get("classifiers", []):
        classifier["model"] = str(root / str(classifier["model"]))
    cameras = doc.get("cameras", [])
    first = cameras[0] if cameras else {}
    camera = {k: v for k, v in first.items() if k not in OWN_CAMERA_KEYS}
    return BaseConfig(MappingProxyType(sections), MappingProxyType(camera))


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return json.dumps(value)  # a JSON string or number is a valid TOML one
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return (
            "{ "
            + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items())
            + " }"
        )
    raise ReplayError(f"cannot write {type(value).__name__} {value!r} to TOML")


def toml_document(sections: Mapping[str, Mapping[str, Any]], camera: Mapping[str, Any]) -> str:
    lines: list[str] = []
    for name, table in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in table.items()]
    lines.append("[[cameras]]")
    lines += [f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in camera.items()]
    return "\n".join(lines) + "\n"


def clip_size(path: Path) -> tuple[int, int]:
    """(width, height) of a video file's frames."""
    cap = cv2.VideoCapture(str(path))
    try:
        ok, frame = cap.read()
    finally:
        cap.release()
    if not ok or frame is None:
        raise ReplayError(f"{path}: not a video file OpenCV can decode")
    return int(frame.shape[1]), int(frame.shape[0])


@dataclass(frozen=True)
class ReplayPlan:
    """How every clip is run."""

    base: BaseConfig
    pipeline: str
    timeout_s: float | None = None  # None: from the clip's length


def config_text(plan: ReplayPlan, clip: Path, scenario: Scenario, work: Path, shm: Path) -> str:
    """The config of one run."""
    sections = {k: dict(v) for k, v in plan.base.sections.items()}
    if scenario.people:
        sections["people"] = {**sections.get("people", {}), **scenario.people}
    sections["daemon"] = {"shm_dir": str(shm), "state_dir": str(work / "state")}
    sections["metrics"] = {"listen": ""}
    sections.update({name: {"enabled": False} for name in EVENT_SINK_SECTIONS})
    sections[COLLECTOR] = {"enabled": True, "path": str(work / "events.jsonl")}
    sections["clips"] = {"enabled": False}
    sections["display"] = {"frame_log": str(work / "frames.jsonl")}
    width, height = clip_size(clip)
    camera = {
        **plan.base.camera,
        "name": CAMERA,
        "source": str(clip.resolve()),
        "pipeline": plan.pipeline,
        "width": width,
        "height": height,
        "realtime": False,
        "loop": False,
        "ring_policy": "block",
    }
    if scenario.zones:
        camera["zones"] = [dict(z) for z in scenario.zones]
    return toml_document(sections, camera)


@dataclass(frozen=True)
class Replayed:
    """What one run of a clip gave: its events, and the people detected per analysed
    frame (frame index -> detections; empty for a pipeline without detections)."""

    events: list[DetectedEvent]
    detections: Mapping[int, int]


def replay(plan: ReplayPlan, clip: Path, scenario: Scenario, media_s: float) -> Replayed:
    """Run `clip` through a daemon and return what it found (ReplayError when it fails)."""
    work = Path(tempfile.mkdtemp(prefix="actiond-eval-"))
    shm = Path(tempfile.mkdtemp(prefix="actiond-eval-", dir=SHM_ROOT))
    try:
        config = work / "config.toml"
        config.write_text(config_text(plan, clip, scenario, work, shm))
        timeout_s = plan.timeout_s or RUN_BASE_S + RUN_PER_MEDIA_S * media_s
        _run_daemon(config, work / "daemon.log", timeout_s)
        return Replayed(read_events(work / "events.jsonl"), read_detections(work / "frames.jsonl"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(shm, ignore_errors=True)


def _run_daemon(config: Path, log_path: Path, timeout_s: float) -> None:
    path = os.pathsep.join(p for p in (str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")) if p)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "daemon", "run", "-c", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": path},
        )
    started = time.monotonic()
    try:
        code = proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.terminate()  # the daemon's own staged shutdown, bounded by the kill below
        try:
            proc.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise ReplayError(
            f"the daemon did not finish the clip within {timeout_s:.0f} s; "
            f"its log ends:\n{_tail(log_path)}"
        ) from None
    if code != 0:
        raise ReplayError(
            f"the daemon exited with status {code} after {time.monotonic() - started:.1f} s; "
            f"its log ends:\n{_tail(log_path)}"
        )


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-LOG_TAIL_CHARS:] if path.exists() else ""


def read_detections(path: Path) -> dict[int, int]:
    """People detected per analysed frame, from the overlay's frame log: each line names
    the result it drew (result_frame_id, -1 for none) and that result's detections (a
    frame index of a fresh, non-looping replay is its frame id)."""
    if not path.exists():
        return {}
    found = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        result = int(record.get("result_frame_id", -1))
        if result >= 0:
            found[result] = len(record.get("people_keypoints", []))
    return found


def read_events(path: Path) -> list[DetectedEvent]:
    """The events of a jsonl sink file: start and end records joined by id (a record
    written twice, after a restart, counts once)."""
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return join_records(records)


def join_records(records: Sequence[Mapping[str, Any]]) -> list[DetectedEvent]:
    starts: dict[str, Mapping[str, Any]] = {}
    ends: dict[str, Mapping[str, Any]] = {}
    for record in records:
        (starts if record.get("phase") == "start" else ends)[str(record["id"])] = record
    events = []
    for key, record in {**starts, **ends}.items():
        start = record.get("media_start_s")
        if start is None:
            raise ReplayError(
                "the daemon's event records carry no media time (media_start_s): "
                "this daemon cannot be evaluated on files"
            )
        end = ends.get(key, {}).get("media_end_s")
        track = record.get("track_id")
        events.append(
            DetectedEvent(
                action=str(record["action"]),
                start_s=float(start),
                end_s=float(start if end is None else end),
                track_id=NO_TRACK if track is None else int(track),
                zone=str(record.get("zone") or ""),
            )
        )
    return sorted(events, key=lambda e: (e.start_s, e.action))
