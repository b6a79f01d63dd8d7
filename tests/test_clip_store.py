"""Event clips' files: retention by age and by total size over real files, leftovers of a
dead writer, the encoder thread (real VP8 files; a clip's length is read in slots of its
frame rate: a repeated frame is encoded once), and each record's clip fields."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from webm_clip import clip_slots, decoded_frames

from daemon.config import CameraConfig, ClipsConfig, ConfigError, load_config
from daemon.config.clips_rules import clip_memory_bytes
from daemon.display import clipstore
from daemon.display.clipwriter import DONE, EMPTY, ClipEncoder, Outcome
from daemon.exitcodes import ExitCode
from daemon.ipc.stats import StatsBlock
from daemon.stages import event_clips
from daemon.stages.event_clips import EventClips

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(60)
DAY_S = 86400.0
MB = 1024 * 1024


def _clip(root: Path, camera: str, name: str, size: int, age_s: float, now: float) -> Path:
    path = root / camera / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)
    os.utime(path, (now - age_s, now - age_s))
    return path


def test_retention_deletes_by_age_over_every_camera(tmp_path: Path) -> None:
    now = time.time()
    old_a = _clip(tmp_path, "a", "1.webm", 10, 8 * DAY_S, now)
    old_b = _clip(tmp_path, "b", "2.webm", 10, 7.5 * DAY_S, now)
    new = _clip(tmp_path, "a", "3.webm", 10, 1 * DAY_S, now)
    other = _clip(tmp_path, "a", "notes.txt", 10, 30 * DAY_S, now)
    deleted = clipstore.enforce_retention(tmp_path, 7 * DAY_S, 1e12, now)
    assert sorted(deleted) == sorted([(old_a, "age"), (old_b, "age")])
    assert new.exists() and other.exists() and not old_a.exists() and not old_b.exists()


def test_retention_deletes_the_oldest_beyond_the_total_size(tmp_path: Path) -> None:
    now = time.time()
    clips = [_clip(tmp_path, "cam", f"{i}.webm", MB, 100.0 - i, now) for i in range(5)]
    # Being written: counts towards the total, never deleted.
    part = _clip(tmp_path, "cam", f"{clipstore.PART_DIR}/9.webm", MB, 1000.0, now)
    deleted = clipstore.enforce_retention(tmp_path, 7 * DAY_S, 3.5 * MB, now)
    assert deleted == [(clips[0], "size"), (clips[1], "size"), (clips[2], "size")]
    assert [c.exists() for c in clips] == [False, False, False, True, True] and part.exists()


def test_leftovers_of_a_dead_writer_are_removed_only_for_that_camera(tmp_path: Path) -> None:
    now = time.time()
    mine = _clip(tmp_path, "a", f"{clipstore.PART_DIR}/1.webm", 10, 0, now)
    theirs = _clip(tmp_path, "b", f"{clipstore.PART_DIR}/2.webm", 10, 0, now)
    done = _clip(tmp_path, "a", "3.webm", 10, 0, now)
    assert clipstore.remove_partials(tmp_path / "a") == 1
    assert not mine.exists() and theirs.exists() and done.exists()


def _frame(value: int) -> np.ndarray:
    return np.full((120, 160, 3), value, np.uint8)


def test_encoder_writes_playable_webm_and_discards(tmp_path: Path) -> None:
    seen: list[Outcome] = []
    encoder = ClipEncoder(10.0, 20, after_clip=seen.append)
    kept, dropped = tmp_path / "cam" / "kept.webm", tmp_path / "cam" / "gone.webm"
    encoder.open("kept", kept, [_frame(10), _frame(20)])
    encoder.open("gone", dropped, [])
    encoder.open("empty", tmp_path / "cam" / "empty.webm", [])
    assert encoder.frame(("kept", "gone"), _frame(30), copies=3)
    encoder.close_clip("kept", keep=True)
    encoder.close_clip("gone", keep=False)
    encoder.close_clip("empty", keep=True)
    assert encoder.close()
    results = {o.clip_id: o.result for o in encoder.take_outcomes()}
    assert results == {"kept": DONE, "gone": "discarded", "empty": EMPTY}
    assert [o.clip_id for o in seen] == ["kept", "gone", "empty"]
    assert clip_slots(kept, 10.0) == 5
    # The frame standing for 3 slots is encoded once, and again at its last slot.
    assert len(decoded_frames(kept)) == 4
    assert not dropped.exists() and not list(kept.parent.glob(f"{clipstore.PART_DIR}/*"))


def test_a_full_queue_refuses_frames_but_never_opens_or_closes() -> None:
    encoder = ClipEncoder(10.0, 2)
    encoder._queue.cond.acquire()  # the encoder thread cannot take anything meanwhile
    try:
        assert encoder.frame(("x",), _frame(0), copies=5)  # one frame held, 5 slots
        assert encoder.frame(("x",), _frame(0))
        assert not encoder.frame(("x",), _frame(0))
        encoder.close_clip("x", keep=True)  # still queued
        assert encoder.queued_frames == 2
    finally:
        encoder._queue.cond.release()
    assert encoder.close()


def _clips(tmp_path: Path, **cfg: object) -> tuple[EventClips, StatsBlock]:
    fields = [*event_clips.CLIP_FIELDS, *(loss.field for loss in event_clips.CLIP_LOSSES)]
    stats = StatsBlock.create("t.stats", fields, None, str(tmp_path))
    cam = CameraConfig(name="cam", source="test:still", width=320, height=240)
    return EventClips(cam, ClipsConfig(**cfg), str(tmp_path / "state"), stats), stats  # type: ignore[arg-type]


def test_record_fields_and_refusals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clips, stats = _clips(tmp_path, pre_roll_s=1.0, post_roll_s=1.0, fps=10.0)
    for i in range(20):  # 2 s of frames at 10 fps
        clips.show(_frame(i).repeat(2, 0).repeat(2, 1), int(i * 1e8))
    assert clips.fields("ev1", "start", 1.5) == {"clip": "cam/ev1.webm"}
    assert clips.fields("old", "end", 1.5) == {"clip": None, "clip_missing": "not_recorded"}
    monkeypatch.setattr(event_clips, "MAX_OPEN_CLIPS", 1)
    assert clips.fields("ev2", "start", 1.5) == {"clip": None, "clip_missing": "too_many_open"}
    monkeypatch.setattr(event_clips, "MAX_OPEN_CLIPS", 8)
    monkeypatch.setattr(clipstore, "free_mb", lambda path: 0.0)
    assert clips.fields("ev3", "start", 1.5) == {"clip": None, "clip_missing": "disk_low"}
    monkeypatch.undo()
    assert clips.fields("ev1", "end", 1.9) == {"clip": "cam/ev1.webm"}
    for i in range(20, 40):
        clips.show(_frame(i).repeat(2, 0).repeat(2, 1), int(i * 1e8))
    clips.close()
    assert clips.fields("ev1", "end", 1.9) == {"clip": "cam/ev1.webm"}  # remembered
    snap = stats.snapshot()
    assert snap["clips_total"] == 1
    assert snap[event_clips.LOST_TOO_MANY.field] == 1 and snap[event_clips.LOST_DISK_LOW.field] == 1
    frames = clip_slots(tmp_path / "state" / "clips" / "cam" / "ev1.webm", 10.0)
    # from 1.5 - 1.0 s to 1.9 + 1.0 s at 10 fps: slots 0.5 .. 2.9
    assert frames == 25
    stats.close(unlink=True)


def test_a_clip_that_cannot_be_written_is_counted_and_its_end_says_so(tmp_path: Path) -> None:
    clips, stats = _clips(tmp_path, pre_roll_s=1.0, post_roll_s=0.0, fps=10.0)
    (tmp_path / "state" / "clips" / "cam" / clipstore.PART_DIR).write_text("not a directory")
    for i in range(10):
        clips.show(_frame(i).repeat(2, 0).repeat(2, 1), int(i * 1e8))
    assert clips.fields("ev", "start", 0.5) == {"clip": "cam/ev.webm"}  # being recorded
    clips.fields("ev", "end", 0.6)
    for i in range(10, 20):
        clips.show(_frame(i).repeat(2, 0).repeat(2, 1), int(i * 1e8))
    clips.close()
    assert clips.fields("ev", "end", 0.6) == {"clip": None, "clip_missing": "write_failed"}
    snap = stats.snapshot()
    assert snap[event_clips.LOST_WRITE_FAILED.field] == 1 and snap["clips_total"] == 0
    assert not list((tmp_path / "state" / "clips").rglob("*.webm"))
    stats.close(unlink=True)


@pytest.mark.parametrize(
    "text,key,reason",
    [
        ("[clips]\nmax_clip_s = 5.0\n", "clips.max_clip_s", "must be longer than"),
        ("[clips]\nfps = 0.0\n", "clips.fps", "must be between 1 and 240"),
        ("[clips]\nmax_width = 32\n", "clips.max_width", "must be between 64 and 3840 px"),
        ("[clips]\npre_roll_s = 31.0\n", "clips.pre_roll_s", "must be between 0 and 30 s"),
        ("[clips]\nmax_total_mb = 0\n", "clips.max_total_mb", "must be > 0"),
        ("[clips]\nmin_free_mb = -1.0\n", "clips.min_free_mb", "must be >= 0"),
    ],
)
def test_bad_clips_config_names_key_and_reason(
    tmp_path: Path, text: str, key: str, reason: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[[cameras]]\nname = "cam"\nsource = "test:bars"\n\n' + text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == key and reason in info.value.reason, info.value


def test_frames_after_a_gap_past_the_post_roll_stay_out_of_the_clip(tmp_path: Path) -> None:
    # A live stream lost while the event's post-roll runs: the event ends (stream_lost),
    # and the first frame after the reconnect, long after, must not fill the gap.
    clips, stats = _clips(tmp_path, pre_roll_s=0.0, post_roll_s=1.0, fps=10.0)
    for i in range(10):
        clips.show(_frame(i).repeat(2, 0).repeat(2, 1), int(i * 1e8))
    clips.fields("ev", "start", 0.9)
    clips.fields("ev", "end", 0.9)
    clips.show(_frame(99).repeat(2, 0).repeat(2, 1), int(60 * 1e9))  # a minute later
    clips.close()
    frames = clip_slots(tmp_path / "state" / "clips" / "cam" / "ev.webm", 10.0)
    assert frames == 1, frames  # the frame at 0.9 s only
    stats.close(unlink=True)


def test_idle_finishes_an_ended_events_clip_once_its_post_roll_is_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The stream is lost: no frame comes to run the post-roll out; idle() finishes it.
    clips, stats = _clips(tmp_path, pre_roll_s=1.0, post_roll_s=1.0, fps=10.0)
    for i in range(10):
        clips.show(_frame(i).repeat(2, 0).repeat(2, 1), int(i * 1e8))
    clips.fields("ev", "start", 0.5)
    clips.idle()  # not ended: stays open
    clips.fields("ev", "end", 0.9)
    clips.idle()  # its post-roll is not over yet
    assert stats.snapshot()["clips_total"] == 0 and "ev" in clips._open
    later = time.monotonic() + 1.0 + event_clips.IDLE_GRACE_S + 0.1
    monkeypatch.setattr(event_clips.time, "monotonic", lambda: later)
    clips.idle()
    assert "ev" not in clips._open
    monkeypatch.undo()
    clips.close()
    assert stats.snapshot()["clips_total"] == 1
    assert (tmp_path / "state" / "clips" / "cam" / "ev.webm").is_file()
    stats.close(unlink=True)


def test_a_gap_in_the_stream_inside_an_event_is_not_counted_as_the_encoder_behind(
    tmp_path: Path,
) -> None:
    # 3 s without frames in an event (a stalled camera): the next frame stands for 31 slots,
    # more than the queue's 2 s of frames; it is one frame held, so it is queued, not lost,
    # and the clip still covers the event in real time.
    clips, stats = _clips(tmp_path, pre_roll_s=1.0, post_roll_s=0.5, fps=10.0)
    for i in range(10):
        clips.show(_frame(i).repeat(2, 0).repeat(2, 1), int(i * 1e8))
    clips.fields("ev", "start", 0.5)
    for i in range(40, 51):  # 4.0 .. 5.0 s; the event ends at 4.5 s, its post-roll at 5.0
        clips.show(_frame(i).repeat(2, 0).repeat(2, 1), int(i * 1e8))
        if i == 45:
            clips.fields("ev", "end", 4.5)
    clips.close()
    assert stats.snapshot()[event_clips.LOST_QUEUE_FULL.field] == 0
    frames = clip_slots(tmp_path / "state" / "clips" / "cam" / "ev.webm", 10.0)
    assert frames == 51, frames  # slots 0.0 .. 5.0 s at 10 fps
    stats.close(unlink=True)


def test_check_config_refuses_a_pre_roll_too_large_for_memory(tmp_path: Path) -> None:
    # 4K at 25 fps with a 10 s pre-roll: about 8.7 GB of frames for one camera.
    path = tmp_path / "config.toml"
    path.write_text(
        '[[cameras]]\nname = "yard"\nsource = "test:bars"\nwidth = 3840\nheight = 2160\n'
        "fps = 25.0\n\n[clips]\npre_roll_s = 10.0\nfps = 25.0\nmax_width = 3840\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "daemon", "check-config", "-c", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == ExitCode.CONFIG, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "clips.pre_roll_s" in lines[0] and "camera yard (cameras[0])" in lines[0]
    assert "about 8306 MB" in lines[0] and "clips.fps or clips.max_width" in lines[0], lines[0]
    # The defaults, and the same camera scaled down to clips.max_width, pass.
    path.write_text(path.read_text().replace("max_width = 3840", "max_width = 640"))
    config = load_config(path)
    assert clip_memory_bytes(config.clips, config.cameras[0]) == 14 * 25 * 640 * 360 * 3


def test_clips_deleted_by_retention_count_for_their_own_camera(tmp_path: Path) -> None:
    # Camera b's overlay starts and its retention deletes camera a's old clip: a counts it.
    state = tmp_path / "state"
    stats: dict[str, StatsBlock] = {}
    made: dict[str, EventClips] = {}
    fields = [*event_clips.CLIP_FIELDS, *(loss.field for loss in event_clips.CLIP_LOSSES)]
    for name in ("a", "b"):
        stats[name] = StatsBlock.create(f"{name}.stats", fields, None, str(tmp_path))
        if name == "b":
            _clip(state / "clips", "a", "old.webm", 10, 8 * DAY_S, time.time())
        cam = CameraConfig(name=name, source="test:still", width=320, height=240)
        made[name] = EventClips(cam, ClipsConfig(), str(state), stats[name])
    assert not (state / "clips" / "a" / "old.webm").exists()
    for name in ("a", "b"):
        made[name].close()
    assert stats["a"].snapshot()["clips_deleted_total"] == 1
    assert stats["b"].snapshot()["clips_deleted_total"] == 0
    assert clipstore.deleted_count(state / "clips" / "a") == 1
    for block in stats.values():
        block.close(unlink=True)


def test_retention_runs_one_at_a_time(tmp_path: Path) -> None:
    # While one run holds the lock, another waits; it then sees the first one's deletions.
    now = time.time()
    clips = [_clip(tmp_path, "cam", f"{i}.webm", MB, 100.0 - i, now) for i in range(4)]
    results: list[list[tuple[Path, str]]] = []
    with clipstore._retention_lock(tmp_path):
        waiting = threading.Thread(
            target=lambda: results.append(clipstore.enforce_retention(tmp_path, DAY_S, 2.5 * MB))
        )
        waiting.start()
        waiting.join(0.5)
        assert waiting.is_alive() and all(c.exists() for c in clips), "it did not wait"
    waiting.join(10.0)
    assert results == [[(clips[0], "size"), (clips[1], "size")]]
