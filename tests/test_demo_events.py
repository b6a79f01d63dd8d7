"""The bundled demo model through the whole daemon: a generated clip of a known action
makes that event and no other; clips where nobody acts make none."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from daemon_proc import Daemon
from media import ACTION_SIZE, make_action_clip, make_clip

from daemon.exitcodes import ExitCode

# The thresholds the shipped config.toml sets for the demo model.
THRESHOLDS = [
    {"name": "walk_left", "threshold": 0.5},
    {"name": "walk_right", "threshold": 0.5},
    {"name": "walk_towards", "threshold": 0.6},
    {"name": "walk_away", "threshold": 0.6},
    {"name": "gesture", "threshold": 0.7},
]
RUN_S = 150.0


def events_of(daemons: list[Daemon], tmp: Path, clip: Path, size: tuple[int, int]) -> list[str]:
    """Run the daemon over `clip` (lossless, as fast as it goes) and return the actions of
    the events it logged, start records only."""
    camera = {
        "name": "cam",
        "source": str(clip),
        "width": size[0],
        "height": size[1],
        "realtime": False,
        "ring_policy": "block",
    }
    d = Daemon(tmp, [camera], {"events": {"actions": THRESHOLDS}})
    daemons.append(d.start())
    assert d.wait(RUN_S) == ExitCode.OK, d.log()
    assert d.leftovers() == []
    return re.findall(r"event cam: (\w+) start", d.log())


@pytest.mark.timeout(200)
@pytest.mark.parametrize("action,seed", [("walk_right", 1), ("walk_left", 1), ("gesture", 2)])
def test_known_action_makes_that_event_and_no_other(
    tmp_path: Path, daemons, action: str, seed: int
) -> None:
    clip = make_action_clip(tmp_path / f"{action}.mp4", action, seed, frames=64)
    assert events_of(daemons, tmp_path, clip, ACTION_SIZE) == [action]


@pytest.mark.timeout(200)
@pytest.mark.parametrize("seed", [0, 1])
def test_idle_scene_makes_no_event(tmp_path: Path, daemons, seed: int) -> None:
    clip = make_action_clip(tmp_path / "idle.mp4", "idle", seed, frames=64)
    assert events_of(daemons, tmp_path, clip, ACTION_SIZE) == []


@pytest.mark.timeout(200)
def test_still_clip_makes_no_event(tmp_path: Path, daemons) -> None:
    clip = make_clip(tmp_path / "still.mp4", frames=64, size=(320, 240), pattern="still")
    assert events_of(daemons, tmp_path, clip, (320, 240)) == []
