"""cameras[].require_person: a clip-pipeline camera whose clip model's events start only
while the shared person detector sees someone (graph clip_with_people). Real daemons on
files: a generated clip with motion but nobody in it (a textured block crossing the
frame, which the bundled demo flow model takes for walking) against the bundled clip of
people walking into a room."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from daemon_proc import Daemon, write_config

from daemon.config import ConfigError
from daemon.exitcodes import ExitCode
from daemon.stages.registry import graph_for
from daemon.supervisor.boot import load_boot

pytestmark = pytest.mark.timeout(300)

FINISH_S = 240.0
PEOPLE_CLIP = "sample:one-by-one-person-detection.mp4"
SIZE = (320, 180)  # width, height
FPS = 10


def moving_block_clip(path: Path, seconds: float = 12.0) -> Path:
    """Nobody, only motion: a textured block crossing the frame, back and forth."""
    rng = np.random.default_rng(7)
    texture = rng.integers(0, 255, (60, 90, 3), dtype=np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), FPS, SIZE)
    frames = int(seconds * FPS)
    for i in range(frames):
        frame = np.full((SIZE[1], SIZE[0], 3), 90, np.uint8)
        x = int(abs((i * 8) % 460 - 230))  # 0..230 px and back
        frame[60:120, x : x + 90] = texture
        writer.write(frame)
    writer.release()
    return path


def camera(name: str, source: str, require_person: bool) -> dict[str, object]:
    return {
        "name": name,
        "source": source,
        "pipeline": "clip",
        "require_person": require_person,
        "width": SIZE[0],
        "height": SIZE[1],
        "analyse_fps": 5.0,
        "realtime": False,
        "ring_policy": "block",
    }


def run_events(tmp_path: Path, cameras: list[dict[str, object]]) -> list[dict[str, object]]:
    """Run the daemon until its files end; the events it stored, in order."""
    events_file = tmp_path / "state" / "events.jsonl"
    sections: dict[str, dict[str, object]] = {
        "jsonl": {"enabled": True, "path": str(events_file)},
        # 13 workers start at once: on a busy 2-core box their imports outlast 5 s.
        "daemon": {"heartbeat_timeout_s": 30.0},
    }
    d = Daemon(tmp_path, cameras, sections)
    d.start()
    try:
        assert d.wait(FINISH_S) == ExitCode.OK, d.log()[-4000:]
    finally:
        d.cleanup()
    lines = events_file.read_text().splitlines() if events_file.exists() else []
    return [json.loads(line) for line in lines if line.strip()]


def starts(events: list[dict[str, object]], cam: str) -> list[str]:
    return [str(e["action"]) for e in events if e["camera"] == cam and e["phase"] == "start"]


def test_the_clip_models_events_wait_for_a_person(tmp_path: Path) -> None:
    block = str(moving_block_clip(tmp_path / "block.mp4"))
    events = run_events(
        tmp_path,
        [
            camera("free", block, require_person=False),  # the same clip, ungated
            camera("gated", block, require_person=True),
            camera("room", PEOPLE_CLIP, require_person=True),
        ],
    )
    # Ungated, the demo model calls the block a walker: the gate has something to stop.
    assert starts(events, "free"), events
    assert starts(events, "gated") == []
    assert starts(events, "room"), events


@pytest.mark.timeout(60)
def test_require_person_is_for_clip_cameras(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "config.toml",
        {"daemon": {"state_dir": str(tmp_path / "state")}},
        [{"name": "cam", "source": "test:bars", "pipeline": "person", "require_person": True}],
    )
    with pytest.raises(ConfigError) as caught:
        load_boot(config)
    assert caught.value.key == "cameras[0].require_person"
    gated = {"name": "cam", "source": "test:bars", "require_person": True}
    state = {"daemon": {"state_dir": str(tmp_path / "state")}}
    boot = load_boot(write_config(tmp_path / "ok.toml", state, [gated]))
    assert graph_for(boot.config.cameras[0]).name == "clip_with_people"
    assert boot.model_path  # its events are the clip model's: boot loaded it
