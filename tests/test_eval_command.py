"""`actiond eval` as a user runs it: generated clips with their label files through real
daemons (the person pipeline and the demo clip model), the JSON report, bad input."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from media import make_action_clip, make_clip
from webhook_receiver import WebhookReceiver

from daemon.evaluate.replay import EVENT_SINK_SECTIONS
from daemon.exitcodes import ExitCode
from daemon.outputs.sinks.table import SINK_KINDS

REPO = Path(__file__).resolve().parent.parent
FPS = 15.0
# The demo model's thresholds in the shipped config.toml.
EVENTS_TOML = """[events]
actions = [{ name = "walk_left", threshold = 0.5 }, { name = "walk_right", threshold = 0.5 },
  { name = "walk_towards", threshold = 0.6 }, { name = "walk_away", threshold = 0.6 },
  { name = "gesture", threshold = 0.7 }]
"""


def label_file(directory: Path, clip: Path, frames: int, events: list[dict[str, object]]) -> None:
    people = [{"person": 1, "visible": [[0, frames]]}] if events else []
    doc = {
        "clip": clip.name,
        "fps": FPS,
        "frames": frames,
        "people_present": bool(events),
        "people": people,
        "events": events,
    }
    directory.mkdir(exist_ok=True)
    (directory / f"{clip.stem}.json").write_text(json.dumps(doc))


def labelled_walk(tmp_path: Path) -> tuple[Path, Path]:
    """clips/ with a 64-frame walk to the right, and labels/ saying one person walks
    right the whole clip: (clips, labels)."""
    clips, labels = tmp_path / "clips", tmp_path / "labels"
    clips.mkdir()
    walk = make_action_clip(clips / "walk.mp4", "walk_right", 1, frames=64, fps=FPS)
    label_file(
        labels,
        walk,
        64,
        [{"action": "walking_right", "person": 1, "start_s": 0.0, "end_s": 64 / FPS}],
    )
    return clips, labels


def actiond_eval(cwd: Path, *args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", "eval", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )


@pytest.mark.timeout(400)
def test_eval_scores_a_walk_and_an_empty_scene(tmp_path: Path) -> None:
    clips, labels = labelled_walk(tmp_path)
    empty = make_clip(clips / "empty.mp4", frames=45, size=(320, 240), fps=FPS, pattern="still")
    label_file(labels, empty, 45, [])
    (tmp_path / "base.toml").write_text(EVENTS_TOML)
    done = actiond_eval(
        tmp_path,
        "--clips",
        str(clips),
        "--labels",
        str(labels),
        "--pipeline",
        "clip",
        "--config",
        str(tmp_path / "base.toml"),
        "--json",
    )
    assert done.returncode == ExitCode.OK, done.stderr
    report = json.loads(done.stdout)  # --json: the document and nothing else on stdout
    assert report["pipeline"] == "clip"
    assert report["actions"]["walking_right"]["hits"] == 1
    assert report["actions"]["walking_right"]["recall"] == 1.0
    assert report["no_people"]["clips"] == 1
    assert report["people_seen"]["frames_with_people"] == 0  # a clip model detects nobody
    assert report["no_people"]["media_hours"] == pytest.approx(45 / FPS / 3600)
    runs = {c["clip"]: c for c in report["clips"]}
    assert runs["empty.mp4"]["false_alarms"] == []
    hit = runs["walk.mp4"]["hits"][0]
    assert 0.0 <= hit["start_s"] <= hit["end_s"] <= 64 / FPS + 0.5  # media time of the clip


def test_eval_knows_every_event_sink_of_the_sink_table() -> None:
    # A new sink kind is off in eval's daemons without eval being told (it reads them
    # from the config schema, by the table's contract).
    assert set(SINK_KINDS) == EVENT_SINK_SECTIONS


@pytest.mark.timeout(400)
def test_eval_delivers_to_none_of_the_base_configs_sinks_or_ports(tmp_path: Path) -> None:
    """A base config with a webhook (a relative secret file) and a console: the replay's
    events reach the receiver not once, and the console's port, held by this test the
    whole run, is not wanted (a daemon binding it would exit 2 and fail the eval)."""
    clips, labels = labelled_walk(tmp_path)
    receiver = WebhookReceiver().start()
    held = socket.socket()
    try:
        held.bind(("127.0.0.1", 0))
        held.listen()
        (tmp_path / "webhook.secret").write_text("a-secret-of-the-users\n")
        (tmp_path / "base.toml").write_text(
            EVENTS_TOML
            + f'[webhook]\nenabled = true\nurls = ["{receiver.url}"]\n'
            + 'secret_file = "webhook.secret"\nretry_min_s = 0.1\n'
            + f'[console]\nenabled = true\nlisten = "127.0.0.1:{held.getsockname()[1]}"\n'
        )
        done = actiond_eval(
            tmp_path,
            *("--clips", str(clips), "--labels", str(labels), "--pipeline", "clip"),
            *("--config", str(tmp_path / "base.toml"), "--json"),
        )
        assert done.returncode == ExitCode.OK, done.stderr
        assert json.loads(done.stdout)["actions"]["walking_right"]["events"] >= 1
        assert receiver.requests() == []
    finally:
        held.close()
        receiver.stop()


@pytest.mark.timeout(300)
def test_eval_runs_the_person_pipeline_and_prints_a_table(tmp_path: Path) -> None:
    clips, labels = tmp_path / "clips", tmp_path / "labels"
    clips.mkdir()
    empty = make_clip(clips / "box.mp4", frames=30, size=(320, 240), fps=FPS)
    label_file(labels, empty, 30, [])
    done = actiond_eval(tmp_path, "--clips", str(clips), "--labels", str(labels))
    assert done.returncode == ExitCode.OK, done.stderr
    assert "clips without people: 1, 2.0 s of media, 0 event(s)" in done.stdout
    # The frame log says how many frames were analysed for people (none has one).
    assert re.search(
        r"people detected in 0 of 0 analysed frames with people, in \d+ of "
        r"[1-9]\d* without",
        done.stdout,
    ), done.stdout
    assert done.stdout.splitlines()[0].split()[:3] == ["action", "labels", "events"]


def test_eval_bad_input_is_one_line_and_a_named_exit_code(tmp_path: Path) -> None:
    clips, labels = tmp_path / "clips", tmp_path / "labels"
    clips.mkdir()
    label_file(labels, clips / "gone.mp4", 10, [])
    done = actiond_eval(tmp_path, "--clips", str(clips), "--labels", str(labels))
    assert done.returncode == ExitCode.CONFIG
    assert done.stderr.count("\n") == 1 and "gone.mp4" in done.stderr
    done = actiond_eval(tmp_path, "--clips", str(clips), "--labels", str(tmp_path / "none"))
    assert done.returncode == ExitCode.CONFIG and "not a directory" in done.stderr
    done = actiond_eval(tmp_path, "--clips", str(tmp_path / "nope"), "--labels", str(labels))
    assert done.returncode == ExitCode.CONFIG, done.stderr
    assert (
        done.stderr
        == f"actiond eval: --clips {tmp_path / 'nope'}: not a directory (the clips to evaluate)\n"
    )
