"""Media time (issue 12, point 5): a replayed file's frames carry their media time as
capture time, and every window and cooldown of the eventing runs on it, so a file gives
the same events at any replay speed. Live sources keep the monotonic clock."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from daemon_proc import Daemon
from media import ACTION_SIZE, action_frames

from daemon.events import EventClock
from daemon.exitcodes import ExitCode
from daemon.ipc.stats import StatsBlock
from daemon.stages.media_clock import FALLBACK_MEDIA_FPS, MediaClock
from daemon.stages.registry import KINDS, stats_fields
from daemon.stages.source_stage import SourceArgs

MS = 1_000_000  # ns
CLIP_FPS = 15.0
# Walk right, stand still, walk right again, stand still, walk left (frames per scene):
# the second walk starts ~3 s after the first ends, which a 2 s cooldown allows in media
# time; read unpaced, the whole clip takes about as long as one cooldown of wall clock.
SCENES = (("walk_right", 1, 40), ("idle", 0, 40), ("walk_right", 3, 40), ("idle", 1, 40))
SCENES_END = (("walk_left", 1, 40),)
COOLDOWN_S = 2.0
# A real clip of someone signing (see ../shared/media/ATTRIBUTION.md), when present.
SIGNING_CLIP = Path(__file__).resolve().parents[2] / "shared" / "media" / "walk.mkv"
RUN_S = 150.0


def test_media_clock_uses_the_presentation_time() -> None:
    clock = MediaClock()
    clock.start_pass(10.0)
    assert [clock.stamp(p) for p in (0.0, 0.1, 0.25)] == [0, 100 * MS, 250 * MS]


def test_media_clock_counts_frames_without_presentation_times() -> None:
    clock = MediaClock()
    clock.start_pass(20.0)
    assert [clock.stamp(None) for _ in range(3)] == [0, 50 * MS, 100 * MS]
    unknown = MediaClock()
    unknown.start_pass(0.0)  # no rate known either
    assert [unknown.stamp(None) for _ in range(2)] == [0, round(1e9 / FALLBACK_MEDIA_FPS)]


def test_media_clock_never_goes_backwards() -> None:
    clock = MediaClock()
    clock.start_pass(10.0)
    stamps = [clock.stamp(p) for p in (0.0, 0.1, 0.1, 0.05, float("nan"), 0.5)]
    assert stamps == [0, 100 * MS, 200 * MS, 300 * MS, 400 * MS, 500 * MS]


def test_media_clock_continues_across_loops_and_restarts() -> None:
    clock = MediaClock(first_ns=7 * MS)
    clock.start_pass(10.0)
    first = [clock.stamp(p) for p in (0.0, 0.1)]
    clock.start_pass(10.0)  # the file was reopened at its beginning
    second = [clock.stamp(p) for p in (0.0, 0.1)]
    assert first + second == [7 * MS, 107 * MS, 207 * MS, 307 * MS]
    assert clock.last_ns == 307 * MS


def test_a_restarted_replay_source_continues_its_media_time() -> None:
    shm = tempfile.mkdtemp(prefix="actiond-media-", dir="/dev/shm")
    block = StatsBlock.create("cam.source.stats", stats_fields("source"), None, shm)
    try:
        respawn = KINDS["source"].respawn
        assert respawn is not None
        fresh = SourceArgs("/clips/a.mp4")
        assert respawn(fresh, block) == fresh  # nothing published yet: start at 0
        for name, value in (("frames_out_total", 41), ("last_frame_id", 40)):
            block.set(name, value)
        block.set("source_fps", 10.0)
        block.set("last_capture_ns", 4_000 * MS)
        again = respawn(fresh, block)
        assert (again.first_frame_id, again.first_media_ns) == (41, 4_100 * MS)
    finally:
        block.close(unlink=True)
        shutil.rmtree(shm, ignore_errors=True)


def test_event_clock_of_a_replay_says_media_time_and_no_latency() -> None:
    clock = EventClock(live=False)
    before = time.time()
    t0 = clock.seconds(5_000 * MS)  # the first frame this clock sees: 5 s into the file
    t1 = clock.seconds(65_000 * MS)  # a minute of media later (read in no time at all)
    assert (t0, t1) == (5.0, 65.0)
    assert clock.media_s(t1) == 65.0
    assert clock.epoch_s(t1) - clock.epoch_s(t0) == pytest.approx(60.0)
    assert before <= clock.epoch_s(t0) <= time.time()
    assert clock.latency_stamp(65_000 * MS) == 0


def test_event_clock_of_a_live_source_says_the_wall_clock() -> None:
    clock = EventClock(live=True)
    captured_ns = time.monotonic_ns() - 2_000 * MS  # captured two seconds ago
    t = clock.seconds(captured_ns)
    assert clock.media_s(t) is None
    assert clock.epoch_s(t) == pytest.approx(time.time() - 2.0, abs=0.2)
    assert clock.latency_stamp(captured_ns) == captured_ns


def make_scenes_clip(path: Path) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), CLIP_FPS, ACTION_SIZE)
    try:
        for action, seed, frames in SCENES + SCENES_END:
            for image in action_frames(action, seed, frames, ACTION_SIZE):
                writer.write(np.ascontiguousarray(image))
    finally:
        writer.release()
    return path


def replay_events(
    daemons: list[Daemon],
    tmp: Path,
    clip: Path,
    realtime: bool,
    size: tuple[int, int] = ACTION_SIZE,
    pipeline: str = "clip",
) -> list[dict[str, object]]:
    """The event records (start and end) a real daemon writes for one replay of `clip`."""
    tmp.mkdir()
    camera = {
        "name": "cam",
        "source": str(clip),
        "width": size[0],
        "height": size[1],
        "realtime": realtime,
        "ring_policy": "block",
        "pipeline": pipeline,
    }
    sinks = {"jsonl": {"enabled": True, "path": str(tmp / "events.jsonl")}}
    d = Daemon(tmp, [camera], {"events": {"cooldown_s": COOLDOWN_S}, **sinks})
    daemons.append(d.start())
    assert d.wait(RUN_S) == ExitCode.OK, d.log()
    lines = (tmp / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def comparable(records: list[dict[str, object]]) -> list[tuple[object, ...]]:
    keys = ("action", "phase", "media_start_s", "media_end_s", "end_reason", "frame_id")
    return sorted(tuple(r[k] for k in keys) for r in records)


@pytest.mark.timeout(400)
def test_a_file_gives_the_same_events_paced_and_unpaced(tmp_path: Path, daemons) -> None:
    clip = make_scenes_clip(tmp_path / "scenes.mp4")
    unpaced = replay_events(daemons, tmp_path / "unpaced", clip, realtime=False)
    paced = replay_events(daemons, tmp_path / "paced", clip, realtime=True)
    starts = [r for r in paced if r["phase"] == "start"]
    # The clip shows more than one walk, some within a cooldown of wall clock when read
    # unpaced: before media time, that run made fewer events than the paced one.
    assert len(starts) >= 2, paced
    assert comparable(unpaced) == comparable(paced)
    clip_s = sum(n for *_, n in SCENES + SCENES_END) / CLIP_FPS
    for record in paced:
        assert 0.0 <= float(record["media_start_s"]) <= clip_s  # type: ignore[arg-type]


@pytest.mark.timeout(300)
@pytest.mark.skipif(not SIGNING_CLIP.exists(), reason=f"{SIGNING_CLIP} is not on this machine")
def test_the_person_pipeline_gives_the_same_events_paced_and_unpaced(
    tmp_path: Path, daemons
) -> None:
    # A real person signing (a gesture event): the analysis rate, the tracks' windows and
    # the event hysteresis all run on media time.
    runs = [
        replay_events(daemons, tmp_path / f"run{rt}", SIGNING_CLIP, rt, (640, 480), "person")
        for rt in (False, True)
    ]
    assert [r for r in runs[0] if r["phase"] == "start"], runs[0]
    keys = ("action", "phase", "media_start_s", "media_end_s", "end_reason", "track_id")
    unpaced, paced = (sorted(tuple(r[k] for k in keys) for r in run) for run in runs)
    assert unpaced == paced
