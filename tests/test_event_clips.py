"""Event clips through the real daemon: an event's records name its clip, the WebM file
appears and covers pre-roll + event + post-roll; with too little disk no clip is made
and the loss is in the scrape."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from daemon_proc import Daemon, free_port, wait_for
from media import ACTION_SIZE, action_frames
from metrics_helpers import label_set, parse_samples, scrape_text
from mosquitto_fixture import MosquittoBroker
from webm_clip import clip_slots, decoded_frames

from daemon.exitcodes import ExitCode

FPS = 15.0
STILL_BEFORE, STILL_AFTER = 60, 120  # frames held still around the walk (4 s and 8 s)
RUN_S = 150.0
CLIP_FPS = 10.0
TOLERANCE_S = 1.5  # start and end records both lag the action by the hysteresis
DEVICE = "clipbox"


def _walk_clip(path: Path) -> Path:
    """Still room, someone walking right, still room (the last frame held)."""
    walk = action_frames("walk_right", 1, 64, ACTION_SIZE)
    frames = [walk[0]] * STILL_BEFORE + list(walk) + [walk[-1]] * STILL_AFTER
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), FPS, ACTION_SIZE)
    try:
        for frame in frames:
            writer.write(np.ascontiguousarray(frame))
    finally:
        writer.release()
    return path


def _run(
    tmp: Path,
    daemons: list[Daemon],
    clips: dict[str, object],
    metrics: str = "",
    mqtt_port: int = 0,
) -> Daemon:
    camera = {
        "name": "cam",
        "source": str(_walk_clip(tmp / "walk.mp4")),
        "width": ACTION_SIZE[0],
        "height": ACTION_SIZE[1],
        # Paced like a camera: unpaced, frames come faster than VP8 is written, and the
        # frames the encoder has no room for are dropped (and counted).
        "realtime": True,
        "ring_policy": "block",
    }
    sections: dict[str, dict[str, object]] = {
        "events": {"actions": [{"name": "walk_right", "threshold": 0.5}]},
        "jsonl": {"enabled": True, "path": str(tmp / "events.jsonl")},
        "clips": {"fps": CLIP_FPS, **clips},
    }
    if metrics:
        sections["metrics"] = {"listen": metrics}
    if mqtt_port:
        sections["daemon"] = {"device_id": DEVICE}
        sections["mqtt"] = {
            "enabled": True,
            "host": "127.0.0.1",
            "port": mqtt_port,
            "discovery": False,
        }
    d = Daemon(tmp, [camera], sections)
    daemons.append(d.start())
    return d


def _records(tmp: Path) -> list[dict[str, object]]:
    path = tmp / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


@pytest.mark.timeout(240)
def test_an_events_clip_covers_pre_roll_event_and_post_roll(
    tmp_path: Path, daemons: list[Daemon], mosquitto: MosquittoBroker, mqtt_collector: Any
) -> None:
    collector = mqtt_collector(mosquitto.port, [f"actiond/{DEVICE}/cam/event"])
    d = _run(tmp_path, daemons, {"pre_roll_s": 3.0, "post_roll_s": 3.0}, mqtt_port=mosquitto.port)
    assert d.wait(RUN_S) == ExitCode.OK, d.log()
    records = [r for r in _records(tmp_path) if r["action"] == "walk_right"]
    start = next(r for r in records if r["phase"] == "start")
    end = next(r for r in records if r["phase"] == "end" and r["id"] == start["id"])
    assert end["end_reason"] == "scores_low", end  # ended before the file: full post-roll
    name = f"cam/{start['id']}.webm"
    assert start["clip"] == name and end["clip"] == name, (start, end)
    clip = tmp_path / "state" / "clips" / str(name)
    assert clip.is_file() and clip.stat().st_size > 0
    assert not list(clip.parent.glob(".part/*")), "a half-written clip was left"
    frames = clip_slots(clip, CLIP_FPS)  # its length; a repeated frame is encoded once
    # On a loaded box the encoder can fall behind: the frames it had no room for are
    # dropped, counted, and logged with the clip; the next frame stands for their slots.
    said = re.search(
        rf"clip of event {start['id']} closed: [\d.]+ s, (\d+) frames dropped", d.log()
    )
    assert said, d.log()
    dropped = int(said[1])
    assert frames > 0 and dropped < frames, (frames, dropped)
    duration_s = frames / CLIP_FPS
    expected_s = 3.0 + float(str(end["duration_s"])) + 3.0
    assert abs(duration_s - expected_s) <= TOLERANCE_S, (duration_s, expected_s, end)
    assert d.leftovers() == []
    # MQTT payloads carry the record's clip field as they carry the rest.
    collector.wait_for(lambda ms: len(ms) >= 2, "the start and end on MQTT")
    sent = [json.loads(m.payload) for m in collector.messages(f"actiond/{DEVICE}/cam/event")]
    assert [(e["phase"], e["clip"]) for e in sent[:2]] == [("start", name), ("end", name)]


@pytest.mark.timeout(240)
def test_a_stopped_daemon_finishes_the_open_clip(tmp_path: Path, daemons: list[Daemon]) -> None:
    d = _run(tmp_path, daemons, {"pre_roll_s": 2.0, "post_roll_s": 3.0})
    start = wait_for(
        lambda: next((r for r in _records(tmp_path) if r["phase"] == "start"), None),
        RUN_S,
        "an event's start record",
    )
    assert isinstance(start, dict) and start["clip"] == f"cam/{start['id']}.webm"
    d.signal(signal.SIGTERM)  # the event is open, its clip is being written
    assert d.wait(RUN_S) == ExitCode.OK, d.log()
    end = next(r for r in _records(tmp_path) if r["phase"] == "end")
    assert end["end_reason"] == "stopped" and end["clip"] == start["clip"], end
    clip = tmp_path / "state" / "clips" / str(start["clip"])
    assert clip_slots(clip, CLIP_FPS) >= 2.0 * CLIP_FPS * 0.5  # at least most of its pre-roll
    assert not list(clip.parent.glob(".part/*")), "a half-written clip was left"


@pytest.mark.timeout(240)
def test_too_little_disk_makes_no_clip_and_counts_it(tmp_path: Path, daemons: list[Daemon]) -> None:
    port = free_port()
    d = _run(tmp_path, daemons, {"min_free_mb": 1e12}, metrics=f"127.0.0.1:{port}")
    start = wait_for(
        lambda: next((r for r in _records(tmp_path) if r["phase"] == "start"), None),
        RUN_S,
        "an event's start record",
    )
    assert isinstance(start, dict)
    assert start["clip"] is None and start["clip_missing"] == "disk_low", start
    samples = parse_samples(scrape_text(f"http://127.0.0.1:{port}/metrics"))
    lost = label_set(camera="cam", stage="overlay", item="recording", reason="disk_low")
    assert samples["actiond_lost_total"][lost] >= 1
    assert d.wait(RUN_S) == ExitCode.OK, d.log()
    clips = tmp_path / "state" / "clips" / "cam"
    assert not list(clips.rglob("*.webm"))
    end = next(r for r in _records(tmp_path) if r["phase"] == "end")
    assert end["clip"] is None and end["clip_missing"] == "not_recorded"


@pytest.mark.timeout(240)
def test_person_events_carry_their_clip(tmp_path: Path, daemons: list[Daemon]) -> None:
    # The person pipeline on the bundled clip (people walk into a room one by one), one
    # include zone over the whole room: in_zone's start and end records name one clip.
    room = {"name": "room", "kind": "include", "points": [[0, 0], [1, 0], [1, 1], [0, 1]]}
    camera = {
        "name": "room",
        "source": "sample:one-by-one-person-detection.mp4",
        "pipeline": "person",
        "width": 640,
        "height": 360,
        "analyse_fps": 5.0,
        "zones": [room],
    }
    sections = {
        "jsonl": {"enabled": True, "path": str(tmp_path / "events.jsonl")},
        "clips": {"pre_roll_s": 1.0, "post_roll_s": 1.0},
    }
    d = Daemon(tmp_path, [camera], sections)
    daemons.append(d.start())
    start = wait_for(
        lambda: next((r for r in _records(tmp_path) if r["action"] == "in_zone"), None),
        RUN_S,
        "in_zone",
    )
    assert isinstance(start, dict) and start["clip"] == f"room/{start['id']}.webm", start
    assert d.stop() == ExitCode.OK, d.log()
    ends = [r for r in _records(tmp_path) if r["id"] == start["id"] and r["phase"] == "end"]
    assert len(ends) == 1 and ends[0]["clip"] == start["clip"], ends
    clip = tmp_path / "state" / "clips" / str(start["clip"])
    assert clip_slots(clip, 10.0) > 0 and decoded_frames(clip)
    starts = [r for r in _records(tmp_path) if r["phase"] == "start"]
    assert all("clip" in r and (r["clip"] or r["clip_missing"]) for r in starts), starts
