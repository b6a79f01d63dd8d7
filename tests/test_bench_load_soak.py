"""`actiond bench load` and `actiond bench soak`: short real runs of the real daemon.

Each bench runs as `python -m daemon bench ...` in a subprocess, on a small generated clip
and a tiny generated model (light enough for a 2-core CI box), and must print JSON whose
keys, types and values make sense, and leave no shared memory behind.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from media import make_clip
from models import brightness_model

from daemon.bench.load import LoadPlan, bench_sections, camera_configs, shown_ratio
from daemon.bench.load_report import CameraReport, LoadReport, ProcessReport, render
from daemon.bench.load_stream import latency_report
from daemon.bench.proc import child_pids, read_proc
from daemon.bench.procstats import toml_document
from daemon.config import load_config
from daemon.exitcodes import ExitCode

REPO = Path(__file__).resolve().parent.parent
CLIP_FPS = 10.0
CAMERA_PROCESSES = ("supervisor", "cam0.source", "cam0.motion", "cam0.overlay", "infer.0")


@pytest.fixture
def media(tmp_path: Path) -> list[str]:
    clip = make_clip(tmp_path / "box.mp4", frames=30, size=(160, 120), fps=CLIP_FPS)
    model = brightness_model(tmp_path / "brightness.onnx")
    return ["--clip", str(clip), "--model", str(model)]


def bench(name: str, args: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", "bench", name, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@pytest.mark.slow
@pytest.mark.timeout(100)
def test_bench_load_reports_one_camera(media: list[str]) -> None:
    done = bench(
        "load",
        ["--cameras", "1", "--seconds", "5", "--warmup", "1", "--json", *media],
        timeout_s=90,
    )
    assert done.returncode == ExitCode.OK, done.stderr
    assert "bench load" not in done.stderr  # progress: on a terminal only, never with --json
    report = json.loads(done.stdout)
    assert report["cameras"] == 1 and isinstance(report["holds"], bool)
    assert 5.0 <= report["seconds"] < 8.0
    cam = report["per_camera"]["cam0"]
    assert cam["clip"] == "box.mp4" and cam["native_fps"] == pytest.approx(CLIP_FPS)
    assert 0 < cam["source_fps"] <= 1.2 * CLIP_FPS  # paced at real time, not flat out
    assert 0 < cam["overlay_fps"] <= 1.2 * CLIP_FPS
    assert cam["overlay_ratio"] == pytest.approx(cam["overlay_fps"] / CLIP_FPS, abs=0.01)
    assert set(cam["drops"]) == {"frames", "view", "results"}
    assert cam["drops_total"] == sum(sum(d.values()) for d in cam["drops"].values())
    assert set(report["shared_drops"]) == {"clips"}
    for name in CAMERA_PROCESSES:
        proc = report["processes"][name]
        assert proc["pid"] > 0 and proc["rss_mb"] > 0 and is_number(proc["cpu_pct"])
        assert 0 < proc["pss_mb"] <= proc["rss_mb"]
        assert 0 <= proc["cpu_pct"] <= 100 * (os.cpu_count() or 1)
    assert report["processes"]["cam0.source"]["cpu_pct"] > 0
    totals = report["totals"]
    assert totals["rss_mb"] >= sum(report["processes"][n]["rss_mb"] for n in CAMERA_PROCESSES)
    assert 0 < totals["pss_mb"] < totals["rss_mb"]  # the workers share libraries and rings
    assert totals["overlay_fps"] == pytest.approx(cam["overlay_fps"])
    assert report["machine"]["cores"] == os.cpu_count()
    assert report["restarts"] == 0 and report["exit_code"] == 0 and report["leftovers"] == []


@pytest.mark.slow
@pytest.mark.timeout(110)
def test_bench_soak_reports_growth_and_targets(media: list[str]) -> None:
    done = bench("soak", ["--minutes", "0.3", "--json", *media], timeout_s=100)
    report = json.loads(done.stdout)
    # The exit status is the verdict: OK exactly when every target was met.
    assert done.returncode == (ExitCode.OK if report["all_ok"] else ExitCode.FAILURE), done.stderr
    assert 0.25 <= report["minutes"] < 0.5 and report["samples"] >= 4
    assert 0 < report["baseline_at_s"] < 0.3 * 60
    times = report["sample_times_s"]
    assert len(times) == report["samples"] and times == sorted(times) and times[0] == 0
    assert times[-1] == pytest.approx(report["minutes"] * 60, abs=0.1)
    for name in ("supervisor", "demo.source", "demo.motion", "demo.overlay", "infer.0"):
        proc = report["processes"][name]
        assert 0 < proc["rss_start_mb"] <= proc["rss_max_mb"]
        assert proc["rss_max_mb"] == max(proc["rss_mb_series"])
        assert proc["rss_growth"] == pytest.approx(
            proc["rss_end_mb"] / proc["rss_start_mb"], rel=0.01
        )
        assert proc["fds_start"] > 0 and proc["fds_delta"] == proc["fds_end"] - proc["fds_start"]
        assert len(proc["rss_mb_series"]) == report["samples"]
        assert proc["rss_mb_series"][-1] == proc["rss_end_mb"]
    assert report["shm_entries_start"] > 0 and report["shm_entries_end"] > 0
    assert report["frames_drawn"] > 0 and report["scrapes_ok"] == report["samples"]
    assert isinstance(report["events_total"], int) and report["events_total"] >= 0
    ok = report["ok"]
    assert set(ok) == {
        "rss",
        "fds",
        "shm_entries",
        "restarts",
        "frames_flowing",
        "metrics",
        "clean_exit",
    }
    # Deterministic over a short soak (RSS may still be settling after 4 s of warm-up).
    for target in ("fds", "shm_entries", "restarts", "frames_flowing", "metrics", "clean_exit"):
        assert ok[target], (target, report)
    assert ok["rss"] == (report["rss_growth_max"] < report["rss_growth_limit"])
    assert report["all_ok"] == all(ok.values())
    assert report["leftovers"] == [] and report["exit_code"] == 0


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "name, args",
    [
        ("load", ["--cameras", "0"]),
        ("load", ["--seconds", "0.5"]),
        ("load", ["--analyse-fps", "0"]),
        ("soak", ["--minutes", "0.01"]),
        ("soak", ["--interval", "0"]),
    ],
)
def test_bench_rejects_bad_arguments(name: str, args: list[str]) -> None:
    done = bench(name, args, timeout_s=25)
    assert done.returncode == ExitCode.CONFIG
    assert f"actiond bench {name}: need" in done.stderr and done.stdout == ""


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("name", "args", "says"),
    [
        ("load", ["--clip", "{tmp}/nope.mp4"], "{tmp}/nope.mp4: no such clip or directory"),
        ("load", ["--clip", "{tmp}/text.mp4"], "{tmp}/text.mp4: not a video file"),
        ("load", ["--model", "{tmp}/none.onnx"], "--model {tmp}/none.onnx: no such file"),
        ("load", ["--min-cameras", "3", "--max-cameras", "2"], "--min-cameras 3 is above"),
        ("load", ["--stream", "1080p15", "--clip", "{tmp}"], "--stream 1080p15 replaces --clip"),
        ("soak", ["--clip", "{tmp}/nope.mp4"], "{tmp}/nope.mp4: no such clip or directory"),
        ("soak", ["--model", "{tmp}/none.onnx"], "--model {tmp}/none.onnx: no such file"),
    ],
    ids=["missing-clip", "not-a-video", "missing-model", "min-above-max", "stream-and-clip"]
    + ["soak-missing-clip", "soak-missing-model"],
)
def test_bench_bad_clip_or_model_is_one_line_and_exit_2(
    tmp_path: Path, name: str, args: list[str], says: str
) -> None:
    (tmp_path / "text.mp4").write_text("not a video\n")
    done = bench(name, [a.format(tmp=tmp_path) for a in args], timeout_s=50)
    assert done.returncode == ExitCode.CONFIG, done.stderr
    assert done.stderr.startswith(f"actiond bench {name}: {says.format(tmp=tmp_path)}")
    assert done.stderr.count("\n") == 1 and done.stdout == "", done.stderr


@pytest.mark.timeout(30)
def test_read_proc_samples_a_live_child_and_not_a_dead_one() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        assert child.pid in child_pids(os.getpid())
        sample = read_proc(child.pid)
        assert sample is not None and sample.pid == child.pid
        assert sample.rss_bytes > 0 and sample.fds >= 3 and sample.cpu_s >= 0
        assert 0 < sample.pss_bytes <= sample.rss_bytes
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    assert read_proc(child.pid) is None and child.pid not in child_pids(os.getpid())


def test_latency_quantiles_interpolate_inside_the_histogram_buckets() -> None:
    before = {0.25: 1.0, 0.5: 1.0, 1.0: 1.0, math.inf: 1.0}
    after = {0.25: 3.0, 0.5: 9.0, 1.0: 11.0, math.inf: 11.0}  # 10 events in the window
    report = latency_report(before, after)
    assert report["events"] == 10
    assert report["p50_s"] == pytest.approx(0.25 + 0.25 * (5 - 2) / 6, abs=1e-3)
    assert report["p99_s"] == pytest.approx(0.5 + 0.5 * (9.9 - 8) / 2, abs=1e-3)
    assert latency_report(after, after) == {"events": 0, "p50_s": None, "p99_s": None}


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_bench_load_person_pipeline_on_the_made_1080p_stream() -> None:
    done = bench(
        "load",
        ["--pipeline", "person", "--stream", "1080p15", "--cameras", "1", "--seconds", "4"]
        + ["--warmup", "1", "--json"],
        timeout_s=380,
    )
    assert done.returncode == ExitCode.OK, done.stderr
    report = json.loads(done.stdout)
    assert report["pipeline"] == "person" and report["stream"] == "1080p15"
    cam = report["per_camera"]["cam0"]
    assert cam["native_fps"] == pytest.approx(15.0) and cam["source_fps"] > 0
    assert set(report["shared_drops"]) == {"analysis"}
    assert {"source", "gate", "detect", "overlay"} <= set(report["stage_cpu_pct"])
    assert set(report["latency"]) == {"events", "p50_s", "p99_s"}
    assert report["machine"]["loadavg_1m"] >= 0
    assert report["restarts"] == 0 and report["exit_code"] == 0 and report["leftovers"] == []


def test_person_cameras_watch_a_whole_frame_zone_and_take_the_decode_preset(tmp_path: Path) -> None:
    plan = LoadPlan([], 4.0, 1.0, "", 1, "person", "1080p15", 5.0, "reference")
    (cam,) = camera_configs(1, plan, "tcp://127.0.0.1:1")
    path = tmp_path / "config.toml"
    path.write_text(toml_document(bench_sections("", 1), [cam]))
    loaded = load_config(path).cameras[0]  # what the bench's daemon is given
    assert loaded.decode == "reference" and loaded.pipeline == "person"
    assert [z.name for z in loaded.zones] == ["all"] and len(loaded.zones[0].points) == 4
    clip_cam = camera_configs(1, LoadPlan([], 4.0, 1.0, "", 1), "tcp://127.0.0.1:1")[0]
    assert "zones" not in clip_cam and "decode" not in clip_cam


def test_a_decode_preset_that_skips_frames_holds_on_the_frames_it_decodes() -> None:
    # 8.1 of the 8.2 fps decoded shown holds with "reference"; with "all" it is 0.54 of 15.
    cam = CameraReport("room.mp4", 15.0, 8.2, 8.1, 0.54, {}, 0)
    assert shown_ratio(cam, LoadPlan([], 4.0, 1.0, "", 1, decode="reference")) > 0.98
    assert shown_ratio(cam, LoadPlan([], 4.0, 1.0, "", 1)) == 0.54


def test_the_text_report_reads_as_text_not_python_dicts() -> None:
    drops = {"frames": {"drop_oldest": 2}, "view": {}, "results": {"drop_newest": 1}}
    report = LoadReport(
        *(1, 1, False, 0.95, 5.0, 1.0),
        {"cam0": CameraReport("box.mp4", 10.0, 10.0, 9.0, 0.9, drops, 3)},
        {"clips": {}},
        {"cam0.source": ProcessReport(7, 12.5, 80.0, 40.0)},
        {"cpu_pct": 12.5, "rss_mb": 80.0, "pss_mb": 40.0, "processes": 1, "overlay_fps": 9.0},
        {"cores": 2, "loadavg_1m": 1.5, "system_cpu_pct": 60.0, "other_cpu_pct": 47.5},
        *(0, 0, []),
        {"source": 12.5},
    )
    text = render(report)
    assert "{" not in text and "}" not in text, text
    assert "drops 3 (frames: drop_oldest 2; results: drop_newest 1)" in text
    assert "cpu % by stage: source 12.5" in text
    assert "machine: 2 cores, cpu 60.0 % (47.5 % not the daemon's), load average 1.5" in text
    assert "shared drops 0;" in text
