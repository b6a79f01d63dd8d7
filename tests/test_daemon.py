"""The whole daemon end to end: real worker processes, real rings, real signals."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from daemon_proc import Daemon, wait_for
from media import make_clip, make_corrupt_file

from daemon.exitcodes import ExitCode
from daemon.supervisor.app import SHUTDOWN_BUDGET_S

CLIP_FRAMES = 48
START_S = 60.0  # spawning 4 workers that import cv2 + onnxruntime on 2 busy cores


def camera(name: str, source: str, **kw: object) -> dict[str, object]:
    cam: dict[str, object] = {"name": name, "source": source, "width": 160, "height": 120}
    cam.update(kw)
    return cam


MOTION_SMALL = {"motion": {"width": 64, "height": 64}, "inference": {"stride": 4}}


def new_daemon(
    daemons: list[Daemon],
    tmp: Path,
    cameras: list[dict[str, object]],
    sections: dict[str, dict[str, object]] | None = None,
) -> Daemon:
    merged = {k: dict(v) for k, v in MOTION_SMALL.items()}
    for name, table in (sections or {}).items():
        merged.setdefault(name, {}).update(table)
    d = Daemon(tmp, cameras, merged)
    daemons.append(d)
    return d.start()


@pytest.mark.timeout(180)
def test_file_block_policy_every_frame_in_order_joined_by_id(tmp_path, daemons):
    clip = make_clip(
        tmp_path / "box.mp4", frames=CLIP_FRAMES, size=(160, 120), pattern="moving-box", fps=30
    )
    d = new_daemon(
        daemons, tmp_path, [camera("cam1", str(clip), realtime=False, ring_policy="block")]
    )
    code = d.wait(START_S + 60)
    assert code == ExitCode.OK, d.log()
    frames = d.frames()
    ids = [f["frame_id"] for f in frames]
    assert ids == list(range(CLIP_FRAMES)), "block policy must deliver every frame in order"
    joined = [f for f in frames if f["result_frame_id"] >= 0]
    assert joined, "no inference result reached the overlay"
    assert all(f["result_frame_id"] <= f["frame_id"] for f in frames)
    # every result id is the last frame of a clip: a multiple of the stride after the clip
    assert {f["result_frame_id"] for f in joined} <= set(range(7, CLIP_FRAMES, 4))
    assert d.leftovers() == []


@pytest.mark.timeout(180)
def test_sigkill_each_worker_kind_recovers(tmp_path, daemons):
    d = new_daemon(
        daemons,
        tmp_path,
        [camera("cam1", "test:moving-box", fps=15)],
        {"inference": {"replicas": 2}},
    )
    workers = ["cam1.source", "cam1.motion", "infer.0", "infer.1", "cam1.overlay"]
    wait_for(lambda: all(d.heartbeat_fresh(w) for w in workers), START_S, "all workers up")
    for worker in workers:
        old = d.worker_pid(worker)
        shown = len(d.frames())
        os.kill(old, signal.SIGKILL)
        wait_for(
            lambda w=worker, pid=old: d.worker_pid(w) not in (0, pid) and d.heartbeat_fresh(w),
            START_S,
            f"{worker} restarted",
        )
        wait_for(lambda n=shown: len(d.frames()) > n + 5, START_S, f"frames after killing {worker}")
    assert "died (signal SIGKILL)" in d.log()
    started = time.monotonic()
    assert d.stop() == ExitCode.OK
    assert time.monotonic() - started < SHUTDOWN_BUDGET_S
    assert d.leftovers() == []


@pytest.mark.timeout(180)
def test_hung_worker_is_detected_and_replaced(tmp_path, daemons):
    d = new_daemon(
        daemons,
        tmp_path,
        [camera("cam1", "test:moving-box", fps=15)],
        {"daemon": {"heartbeat_timeout_s": 2.0}},
    )
    wait_for(lambda: d.heartbeat_fresh("cam1.motion"), START_S, "motion up")
    old = d.worker_pid("cam1.motion")
    os.kill(old, signal.SIGSTOP)
    try:
        wait_for(
            lambda: d.worker_pid("cam1.motion") not in (0, old), START_S, "a new motion worker"
        )
    finally:
        try:
            os.kill(old, signal.SIGCONT)
        except ProcessLookupError:
            pass  # the supervisor killed it, as it should
    shown = len(d.frames())
    wait_for(lambda: len(d.frames()) > shown + 5, START_S, "frames after the hang")
    assert "has not beaten" in d.log()
    assert d.stop() == ExitCode.OK


@pytest.mark.timeout(180)
def test_live_source_drop_oldest_stays_fresh(tmp_path, daemons):
    # Farneback at 480x480 is far slower than 60 fps: the frames ring must drop, not grow.
    d = new_daemon(
        daemons,
        tmp_path,
        [camera("cam1", "test:moving-box", fps=60, ring_capacity=3)],
        {"motion": {"method": "farneback", "width": 480, "height": 480}},
    )

    def drops() -> int:
        ring = d.ring("cam1.frames")
        return ring.drops["drop_oldest"] if ring else 0

    wait_for(lambda: drops() > 20, START_S, "drops")
    ring = d.ring("cam1.frames")
    assert ring is not None and ring.occupancy <= ring.capacity
    source_last = d.stats("cam1.source")["last_frame_id"]
    shown = wait_for(
        lambda: [f for f in d.frames() if f["frame_id"] >= source_last],
        START_S,
        "the overlay to show a frame as new as the source's",
    )
    assert shown
    ids = [f["frame_id"] for f in d.frames()]
    assert ids == sorted(ids)
    assert d.stats("cam1.overlay")["lost_frame_gap_total"] > 0
    assert d.stop() == ExitCode.OK


@pytest.mark.timeout(240)
def test_crash_loop_fails_one_camera_others_keep_running(tmp_path, daemons):
    bad = make_corrupt_file(tmp_path / "broken.mp4")
    d = new_daemon(
        daemons, tmp_path, [camera("good", "test:moving-box", fps=10), camera("bad", str(bad))]
    )
    wait_for(lambda: "camera bad is marked failed" in d.log(), START_S, "bad camera failed")
    shown = len(d.frames())
    wait_for(lambda: len(d.frames()) > shown + 5, START_S, "the good camera keeps running")
    assert "cannot start" in d.log()
    assert d.stop() == ExitCode.OK


@pytest.mark.timeout(120)
def test_only_camera_broken_exits_with_named_code(tmp_path, daemons):
    bad = make_corrupt_file(tmp_path / "broken.mp4")
    d = new_daemon(daemons, tmp_path, [camera("bad", str(bad))])
    assert d.wait(START_S) == ExitCode.ALL_CAMERAS_FAILED
    assert "broken.mp4" in d.log()
    assert "Traceback" not in d.log()
    assert d.leftovers() == []


@pytest.mark.timeout(240)
def test_sighup_restarts_only_the_changed_camera(tmp_path, daemons):
    d = new_daemon(
        daemons,
        tmp_path,
        [camera("a", "test:moving-box", fps=10), camera("b", "test:moving-box", fps=10)],
    )
    names = ["a.source", "a.motion", "b.source", "b.motion", "infer.0"]
    wait_for(lambda: all(d.heartbeat_fresh(n) for n in names), START_S, "workers up")
    before = {n: d.worker_pid(n) for n in names}
    text = d.config.read_text().replace(
        'name = "b"\nsource = "test:moving-box"', 'name = "b"\nsource = "test:still"'
    )
    assert text != d.config.read_text()
    d.config.write_text(text)
    d.signal(signal.SIGHUP)
    wait_for(
        lambda: d.worker_pid("b.source") not in (0, before["b.source"]),
        START_S,
        "camera b restarted",
    )
    after = {n: d.worker_pid(n) for n in names}
    assert after["a.source"] == before["a.source"]
    assert after["a.motion"] == before["a.motion"]
    assert after["infer.0"] == before["infer.0"]
    assert d.stop() == ExitCode.OK


@pytest.mark.timeout(60)
def test_bad_config_exits_2_naming_the_key(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[[cameras]]\nname = "x"\nsource = "test:bars"\nring_policy = "drop"\n')
    for command in ("run", "check-config"):
        proc = subprocess.run(
            [sys.executable, "-m", "daemon", command, "-c", str(cfg)],
            capture_output=True,
            text=True,
            timeout=50,
        )
        assert proc.returncode == ExitCode.CONFIG
        assert "cameras[0].ring_policy" in proc.stderr
        assert "Traceback" not in proc.stderr


@pytest.mark.timeout(180)
def test_workers_say_what_they_are_in_ps_and_log_with_timestamps(tmp_path, daemons):
    d = new_daemon(daemons, tmp_path, [camera("cam1", "test:moving-box", fps=15)])
    workers = {
        "cam1.source": "source of camera cam1",
        "cam1.motion": "motion of camera cam1",
        "infer.0": "infer replica 0 for all cameras",
        "cam1.overlay": "overlay of camera cam1",
    }
    wait_for(lambda: all(d.heartbeat_fresh(w) for w in workers), START_S, "all workers up")
    for worker, says in workers.items():
        pid = d.worker_pid(worker)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        assert cmdline.startswith(f"actiond: {says} ({worker})"), cmdline
        assert Path(f"/proc/{pid}/comm").read_text().strip() == worker[:15]
    assert d.stop() == ExitCode.OK
    # Every line a worker logged carries a timestamp, like the supervisor's lines.
    worker_lines = [line for line in d.log().splitlines() if any(f" {w} " in line for w in workers)]
    assert worker_lines, d.log()
    stamped = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")
    assert all(stamped.match(line) for line in worker_lines), worker_lines
